"""Search served from shards: one generation of an index split into N parts of contiguous rows,
each part held by a Ray actor (on any node of a cluster), a query fanned out to them all.

    lookalike shard PHOTOS --shards 3                 # write the parts (skipped when written)
    lookalike search q.jpg --index PHOTOS --ray HEAD:6379 --shards 3

    with ShardedCollection.start("PHOTOS", shards=3, address="HEAD:6379") as photos:
        hits = photos.search("q.jpg", k=10)

What grows with the collection is sharded: the ASMK index and the local features that
verification reads. A part (`shard-000/`, ...) is self-contained, so it can live on the node
that serves it: its rows' ASMK index, their whitened global descriptors (`codes/global.npy`),
local features (`features/shard-000001/`), image ids and longer sides. The ASMK index is of
the generation's kind (`asmk_shortlist`): the inverted file of the part's rows (`asmk/`, in
RAM) with their codes (`codes/`); or, for a generation of the shortlist kind, the codes alone
in that kind's layout (`asmk-codes/`, a `CodeBlock` memory-mapped when served: the rows
`bounds[i]:bounds[i + 1]` of the generation's, copied as they are). The set folder holds what
the coordinator needs: the model (whitening and codebook), a copy of the generation's global
index (`global/`: small, about 1 kB an image exact and some 50 bytes compressed, and whichever
kind the generation has, so that its scores are the unsharded index's) with its classic
descriptors (colour for blurred queries, and `--fuse`; 2.4 kB an image, mapped), and
`shards.json`, written last, with the ASMK kind under `asmk_index`. Sets written by older
versions (no ASMK kind recorded, or no classic descriptors copied) are written again.

The coordinator (the `ShardedCollection`, on the machine with the index folder) describes the
query, encodes it, scores the global index, and runs the unsharded query pipeline
(`search.query.score`) over ASMK scores gathered from the parts. For the inverted kind every
part returns the raw ASMK similarities of all its rows, joined in row order and fused exactly
as the unsharded search does (scores are scaled by the best over *all* rows, so the parts
return raw scores, not their own top k). For the shortlist kind the coordinator takes the
global index's best `candidates` rows as the unsharded search does (`global_candidates`),
sends each part the candidates it holds (as its own row numbers), each part scores those from
its codes (`ShortlistAsmk.scores`), and the coordinator puts them in place, 0 elsewhere, and
caps every other row below the candidates as the unsharded search does. Verification runs on
the part that holds each shortlisted image, given the query's local features; query expansion
fetches the few codes it needs and scores them as the first stage does (on its candidates,
for the shortlist kind). Every per-row number is computed by the same code on the same data as
in one process, so the hits, scores and their order are those of `Collection.search` on the
unsharded index.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog import Catalog, CatalogError, ImageRecord
from lookalike.collection import Collection
from lookalike.features import ImageFeatures, LocalFeatures
from lookalike.index import build
from lookalike.index.asmk_index import INVERTED, AsmkIndex, ImageCode, Vocabulary, packed_width
from lookalike.index.asmk_shortlist import (
    SHORTLIST,
    SHORTLIST_DIR,
    CodeBlock,
    ShortlistAsmk,
    as_shortlist,
    asmk_params,
    word_dtype,
    write_blocks,
)
from lookalike.index.atomic import atomic_dir, save_npy, write_json_atomic
from lookalike.index.global_index import GlobalIndex, load_global
from lookalike.index.store import open_shard, write_shard
from lookalike.learn.model import Model
from lookalike.scale import connect, disconnect, import_ray
from lookalike.search.query import LoadedGeneration, load_classic
from lookalike.search.rerank import verify_shortlist
from lookalike.search.verify import Verified
from lookalike.settings import RerankSettings, SearchSettings

logger = logging.getLogger("lookalike")

SHARDS_DIR = "shards"
SET_META = "shards.json"
GLOBAL_DIR = "global"
PART_FEATURES_SHARD = 1
SHARDED_MODES = ("fused", "asmk", "global")
"""The first stages a sharded search serves (the classic and RootSIFT ones are not sharded)."""


# --- splitting ---------------------------------------------------------------------------


def shard_bounds(n_rows: int, n: int) -> tuple[int, ...]:
    """`n + 1` row bounds of `n` contiguous parts of `n_rows` rows, sizes differing by <= 1."""
    if n < 1:
        raise ValueError(f"the number of shards must be at least 1, got {n}")
    if n > max(n_rows, 1):
        raise ValueError(f"{n} shards for {n_rows} images: at most one shard per image")
    return tuple((i * n_rows) // n for i in range(n + 1))


@dataclass(frozen=True)
class ShardSet:
    """A generation split into parts: part i holds rows `bounds[i]:bounds[i + 1]`; `asmk_kind`:
    the generation's ASMK kind (`INVERTED` or `SHORTLIST`), `candidates` the shortlist kind's
    (None for the inverted file)."""

    folder: Path
    generation: int
    model_id: str
    bounds: tuple[int, ...]
    asmk_kind: str = INVERTED
    candidates: int | None = None

    @property
    def n(self) -> int:
        return len(self.bounds) - 1

    def part(self, i: int) -> Path:
        return self.folder / f"shard-{i:03d}"

    @classmethod
    def load(cls, folder: Path) -> ShardSet:
        """The set in `folder` (sets written before the shortlist kind record no `asmk_index`:
        their parts hold inverted files)."""
        meta = json.loads((Path(folder) / SET_META).read_text())
        asmk = asmk_params(meta)
        shortlist = asmk["kind"] == SHORTLIST
        return cls(
            Path(folder),
            int(meta["generation"]),
            str(meta["model_id"]),
            tuple(meta["bounds"]),
            str(asmk["kind"]),
            int(asmk["candidates"]) if shortlist else None,
        )


def shard_set_dir(base: Path, generation: int, n: int) -> Path:
    """Where the `n` parts of `generation` go under `base`."""
    return base / f"gen-{generation:06d}-n{n}"


def split_generation(index_dir: Path, n: int, out: Path | None = None) -> ShardSet:
    """Split the index's current generation into `n` parts, written under `out` (default
    `index_dir/shards`, which keeps only the current generation's sets); skipped when written
    already. Returns the set."""
    index_dir = Path(index_dir)
    with Catalog.open(index_dir, readonly=True) as catalog, catalog.snapshot():
        generation = catalog.generation
        records = {r.id: r for r in catalog.records("ok")}
    source = build.generation_dir(index_dir, generation)
    if generation == 0 or not (source / "global.json").is_file():
        raise CatalogError(f"{index_dir} has no index yet: run `lookalike index` first")
    base = Path(out) if out is not None else index_dir / SHARDS_DIR
    final = shard_set_dir(base, generation, n)
    meta = json.loads((source / "global.json").read_text())
    asmk = asmk_params(meta)
    classic = [f"classic-{name}.npy" for name in meta.get("classic_descriptors", [])]
    if (final / SET_META).is_file():
        written = ShardSet.load(final)
        copied = all((final / GLOBAL_DIR / name).is_file() for name in classic)
        if written.asmk_kind == asmk["kind"] and copied:
            return written
        # written before parts of the shortlist kind were (its parts hold inverted files), or
        # before the classic descriptors were copied for the coordinator
        logger.info("rewriting %s, written by an older version", final)
        shutil.rmtree(final)
    model = Model.load(index_dir / build.MODEL_DIR)
    if meta.get("model_id") != model.id:
        raise CatalogError(f"{source} was built with another model: run `lookalike index` again")
    ids = np.load(source / "ids.npy")
    if not len(ids):
        raise CatalogError(f"{index_dir} holds no searchable image: there is nothing to shard")
    bounds = shard_bounds(len(ids), n)
    base.mkdir(parents=True, exist_ok=True)
    with atomic_dir(final) as tmp:
        model.save(tmp / "model")
        (tmp / GLOBAL_DIR).mkdir()
        for file in source.glob("global*"):  # the index, its parameters (and refine vectors)
            shutil.copy2(file, tmp / GLOBAL_DIR / file.name)
        for name in classic:  # colour for blurred queries, and whatever --fuse adds
            shutil.copy2(source / name, tmp / GLOBAL_DIR / name)
        vocabulary = Vocabulary(model.codebook)
        shortlist = asmk["kind"] == SHORTLIST
        for i in range(n):
            part, part_ids = tmp / f"shard-{i:03d}", ids[bounds[i] : bounds[i + 1]]
            _write_part(
                part, index_dir, model, vocabulary, part_ids, records, inverted=not shortlist
            )
            if shortlist:
                _write_part_block(part, source, vocabulary, bounds[i], bounds[i + 1])
        recorded = (
            {"kind": SHORTLIST, "candidates": int(asmk["candidates"])}
            if shortlist
            else {"kind": INVERTED}
        )
        write_json_atomic(
            tmp / SET_META,
            {
                "generation": generation,
                "model_id": model.id,
                "bounds": list(bounds),
                "n": n,
                "asmk_index": recorded,
            },
        )
    if out is None:
        _remove_older_sets(base, generation)
    logger.info("split generation %d into %d shards in %s", generation, n, final)
    return ShardSet.load(final)


def _write_part(
    folder: Path,
    index_dir: Path,
    model: Model,
    vocabulary: Vocabulary,
    ids: np.ndarray,
    records: dict[int, ImageRecord],
    *,
    inverted: bool,
) -> None:
    """One part: the local features, sizes, whitened globals (`codes/global.npy`) of the images
    `ids`, and with `inverted` their codes (`codes/`) and inverted file (`asmk/`); a part of a
    shortlist generation holds its codes in `asmk-codes/` instead (`_write_part_block`)."""
    rows = [records[int(i)] for i in ids]
    features_dir = index_dir / build.FEATURES_DIR
    codes_dir = index_dir / build.CODES_DIR / model.id
    codes: list[ImageCode] = []
    globals_: list[np.ndarray] = []
    features: list[ImageFeatures] = []
    for record in rows:
        shard, row = record.shard or 0, record.row or 0
        (code,), vector = build.load_codes(codes_dir / f"shard-{shard:06d}", [row])
        if inverted:
            codes.append(code)
        globals_.append(vector[0])
        stored = open_shard(features_dir, shard)
        features.append(ImageFeatures(stored.local(row), np.asarray(stored.global_[row])))
    folder.mkdir(parents=True)
    save_npy(folder, "ids", ids.astype(np.int64))
    sides = [float(max(r.width or 0, r.height or 0)) for r in rows]
    save_npy(folder, "sides", np.asarray(sides, np.float32))
    (folder / "codes").mkdir()
    if inverted:
        AsmkIndex.build(vocabulary, codes).save(folder / "asmk")
        save_npy(folder / "codes", "word_offsets", np.cumsum([0] + [len(c.words) for c in codes]))
        save_npy(folder / "codes", "words", np.concatenate([c.words for c in codes]))
        save_npy(folder / "codes", "residuals", np.concatenate([c.residuals for c in codes]))
    save_npy(folder / "codes", "global", np.stack(globals_).astype(np.float32))
    write_shard(folder / build.FEATURES_DIR, PART_FEATURES_SHARD, features, {"part": folder.name})


def _write_part_block(
    folder: Path, generation: Path, vocabulary: Vocabulary, start: int, stop: int
) -> None:
    """A part of a shortlist generation: the codes of its rows `start:stop`, copied from the
    generation's (`asmk-codes/`, streamed) into the part's `asmk-codes/` as they are, so that
    the part scores the very codes the unsharded index scores."""
    rows = np.arange(stop - start, dtype=np.int64)
    width = packed_width(vocabulary.codebook.centroids.shape[1])

    def source() -> CodeBlock:
        return CodeBlock.open(generation / SHORTLIST_DIR)

    parts = [(rows, rows + start, source)]
    write_blocks(folder / SHORTLIST_DIR, len(rows), parts, width, word_dtype(vocabulary.size))


def _remove_older_sets(base: Path, generation: int) -> None:
    """Shard sets of generations before `generation` under `base` (written by default)."""
    for folder in base.glob("gen-*-n*"):
        number = folder.name[len("gen-") :].split("-")[0]
        if number.isdigit() and int(number) < generation:
            shutil.rmtree(folder, ignore_errors=True)


# --- serving one part --------------------------------------------------------------------


class _PartImages:
    """The second stage's view of a part's images, by row of the part; `block`: a shortlist
    part's codes (else they are read from `codes/`)."""

    def __init__(self, folder: Path, sides: np.ndarray, block: CodeBlock | None) -> None:
        self.features_dir = folder / build.FEATURES_DIR
        self.codes_dir = folder / "codes"
        self.sides = sides
        self.block = block

    def local(self, row: int, limit: int) -> LocalFeatures:
        return open_shard(self.features_dir, PART_FEATURES_SHARD).local(row, limit)

    def side(self, row: int) -> float:
        return float(self.sides[row])

    def code(self, row: int) -> ImageCode:
        if self.block is not None:
            return self.block.code(row)
        return build.load_codes(self.codes_dir, [row])[0][0]


class ShardServer:
    """One part of a shard set opened for searching (what a Ray actor holds). Rows are the
    part's own, 0..m-1; the coordinator maps them to the generation's. Its ASMK index is the
    inverted file of its rows, or for a shortlist generation their codes (memory-mapped), of
    which it scores the candidate rows it is given."""

    def __init__(self, folder: str) -> None:
        part = Path(folder)
        model = Model.load(part.parent / build.MODEL_DIR)
        shard_set = ShardSet.load(part.parent)
        vocabulary = Vocabulary(model.codebook)
        ids = np.load(part / "ids.npy")
        asmk: AsmkIndex | ShortlistAsmk
        block = None
        if shard_set.asmk_kind == SHORTLIST:
            block = CodeBlock.open(part / SHORTLIST_DIR)
            assert shard_set.candidates is not None  # recorded with the shortlist kind
            asmk = ShortlistAsmk(block, vocabulary, shard_set.candidates)
        else:
            asmk = AsmkIndex.load(part / "asmk", vocabulary)
        self.loaded = LoadedGeneration(
            generation=shard_set.generation,
            ids=ids,
            asmk=asmk,
            # the coordinator scores the global index; this one (exact, of the part's rows)
            # only completes the `LoadedGeneration` that verification is given
            global_=GlobalIndex.build(np.load(part / "codes" / "global.npy")),
            model=model,
            meta={"part": part.name},
        )
        self.images = _PartImages(part, np.load(part / "sides.npy"), block)

    def ids(self) -> np.ndarray:
        """`(m,)` int64 catalog ids of the part's rows."""
        return np.asarray(self.loaded.ids)

    def asmk_scores(
        self, code: ImageCode, alpha: float, threshold: float, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """`(m,)` float32 ASMK similarities of the query `code` to the part's rows; with
        `rows: (k,)` (the part's own, of a shortlist generation) only theirs -> `(k,)`, in
        their order (`ShortlistAsmk.scores`)."""
        # arrays that come through Ray are read-only; asmk's kernel wants writable buffers
        code = ImageCode(np.array(code.words), np.array(code.residuals))
        if rows is None:
            return self.loaded.asmk.scores(code, alpha=alpha, threshold=threshold)
        shortlist = as_shortlist(self.loaded.asmk)
        if shortlist is None:
            raise ValueError("the part holds an inverted file, which scores every row")
        return shortlist.scores(code, alpha=alpha, threshold=threshold, candidates=np.array(rows))

    def codes(self, rows: Sequence[int]) -> list[ImageCode]:
        """The ASMK codes of the part's `rows`."""
        return [self.images.code(int(r)) for r in rows]

    def local(self, rows: Sequence[int], limit: int) -> list[LocalFeatures]:
        """The `limit` strongest local features of each of the part's `rows`, as stored."""
        return [self.images.local(int(r), limit) for r in rows]

    def sides(self) -> np.ndarray:
        """`(m,)` float32 longer sides in pixels of the part's images."""
        return np.asarray(self.images.sides)

    def verify(
        self, query: LocalFeatures, rows: np.ndarray, settings: RerankSettings
    ) -> dict[int, Verified]:
        """Spatial verification of the part's `rows: (k,)` against the query's local features
        (positions in query pixels) -> outcome by part row."""
        query = LocalFeatures(
            xy=np.array(query.xy),
            scale=np.array(query.scale),
            strength=np.array(query.strength),
            desc=np.array(query.desc),
        )
        return verify_shortlist(self.loaded, query, np.array(rows), self.images, settings)


# --- the coordinator ---------------------------------------------------------------------


class ShardedGeneration:
    """A generation whose rows are held by shard actors, seen as a `LoadedGeneration` by the
    query pipeline (`search.query.score`, `search.rerank.rerank`): ASMK scores are gathered
    from every part and joined in row order; the global index is the generation's own (a copy
    in the set folder), verification runs on the parts (`_ShardedImages.verify`)."""

    def __init__(self, shard_set: ShardSet, model: Model, actors: list[Any]) -> None:
        self.ray = import_ray()
        self.shard_set = shard_set
        self.generation = shard_set.generation
        self.model = model
        self.actors = actors
        self.meta: dict[str, object] = {"shards": shard_set.n, "folder": str(shard_set.folder)}
        self.sift = None
        parts = self.ray.get([a.ids.remote() for a in actors])
        self.ids = np.concatenate(parts).astype(np.int64)
        self.bounds = np.asarray(shard_set.bounds, np.int64)
        if len(self.ids) != self.bounds[-1]:
            raise RuntimeError(f"the shards of {shard_set.folder} hold {len(self.ids)} rows")
        self.sides = np.concatenate(self.ray.get([a.sides.remote() for a in actors]))
        self.asmk = _ShardedAsmk(self, Vocabulary(model.codebook), shard_set)
        global_dir = shard_set.folder / GLOBAL_DIR
        meta = json.loads((global_dir / "global.json").read_text())
        self.global_ = load_global(global_dir, meta)
        # scored here, as the global index is (2.4 kB an image, mapped)
        self.classic = load_classic(global_dir, meta)
        if self.global_.n_images != self.n_images:
            raise RuntimeError(f"the global index of {shard_set.folder} disagrees with its shards")
        self.images = _ShardedImages(self)

    @property
    def n_images(self) -> int:
        return len(self.ids)

    def gather(self, method: str, *args: Any) -> np.ndarray:
        """`method(*args)` on every part, its `(m_i,)` results joined in row order."""
        refs = [getattr(actor, method).remote(*args) for actor in self.actors]
        return np.concatenate(self.ray.get(refs))

    def owners(self, rows: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """`rows: (k,)` of the generation grouped by part: part -> (positions in `rows`, the
        part's own rows)."""
        rows = np.asarray(rows, np.int64)
        part = np.searchsorted(self.bounds, rows, side="right") - 1
        return {
            int(p): (np.flatnonzero(part == p), rows[part == p] - self.bounds[p])
            for p in np.unique(part)
        }


class _ShardedAsmk:
    """The generation's ASMK index over its parts (`AsmkSearch`, and of a shortlist generation
    `ShortlistSearch`): the parts of an inverted one score all their rows, those of a shortlist
    one the candidate rows each holds."""

    def __init__(
        self, sharded: ShardedGeneration, vocabulary: Vocabulary, shard_set: ShardSet
    ) -> None:
        self.sharded = sharded
        self.vocabulary = vocabulary
        self.kind = shard_set.asmk_kind
        self.candidates = shard_set.candidates

    @property
    def n_images(self) -> int:
        return self.sharded.n_images

    def scores(
        self,
        code: ImageCode,
        *,
        alpha: float,
        threshold: float,
        candidates: np.ndarray | None = None,
    ) -> np.ndarray:
        """Every row's scores `(n,)` float32 joined in row order; or (a shortlist generation)
        those of the generation's rows `candidates: (k,)` -> `(k,)`, in their order, each part
        given the candidates it holds."""
        if candidates is None:
            return self.sharded.gather("asmk_scores", code, alpha, threshold)
        sharded = self.sharded
        rows = np.asarray(candidates, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_images):
            raise ValueError(f"candidate rows must be in [0, {self.n_images})")
        groups = sharded.owners(rows)
        shared = sharded.ray.put(code)
        refs = {
            p: sharded.actors[p].asmk_scores.remote(shared, alpha, threshold, own)
            for p, (_, own) in groups.items()
        }
        out = np.zeros(len(rows), np.float32)
        for p, ref in refs.items():
            out[groups[p][0]] = sharded.ray.get(ref)
        return out


class _ShardedImages:
    """`search.rerank.StoredImages` over the parts; `verify` runs on the parts themselves."""

    def __init__(self, sharded: ShardedGeneration) -> None:
        self.sharded = sharded

    def _one(self, method: str, row: int, *args: Any) -> Any:
        sharded = self.sharded
        ((p, (_, own)),) = sharded.owners(np.array([row])).items()
        return sharded.ray.get(getattr(sharded.actors[p], method).remote(own, *args))[0]

    def local(self, row: int, limit: int) -> LocalFeatures:
        return self._one("local", row, limit)

    def side(self, row: int) -> float:
        return float(self.sharded.sides[row])

    def code(self, row: int) -> ImageCode:
        return self._one("codes", row)

    def verify(
        self, query: LocalFeatures, rows: np.ndarray, settings: RerankSettings
    ) -> dict[int, Verified]:
        """Verify generation `rows: (k,)`, each on its part, all parts at once."""
        sharded = self.sharded
        rows = np.asarray(rows, np.int64)
        groups = sharded.owners(rows)
        shared = sharded.ray.put(query)
        refs = {
            p: sharded.actors[p].verify.remote(shared, own, settings)
            for p, (_, own) in groups.items()
        }
        out: dict[int, Verified] = {}
        for p, ref in refs.items():
            for own_row, outcome in sharded.ray.get(ref).items():
                out[int(own_row + sharded.bounds[p])] = outcome
        return {int(r): out[int(r)] for r in rows}


def start_servers(shard_set: ShardSet, *, cpus: float = 1.0) -> list[Any]:
    """One `ShardServer` actor per part of `shard_set`, spread over the cluster's nodes (this
    process must be connected to it); each reads its part folder, which must be at the same
    path on its node (a shared file system)."""
    ray = import_ray()
    server = ray.remote(ShardServer)
    return [
        server.options(num_cpus=cpus, scheduling_strategy="SPREAD").remote(str(shard_set.part(i)))
        for i in range(shard_set.n)
    ]


class ShardedCollection(Collection):
    """A `Collection` searched through shard actors: `search`, `describe`, `images`,
    `verified_pairs` and `explain` work as on the unsharded index, with the same hits in the
    same order, for the first stages in `SHARDED_MODES`, classic descriptors fused or not (the
    coordinator holds them, as it holds the global index; RootSIFT is not sharded).

    It serves the generation that was current when it started; `close` (or leaving a `with`
    block) ends its actors.
    """

    def __init__(
        self,
        base: Collection,
        shard_set: ShardSet,
        actors: list[Any],
        connected: bool,
    ) -> None:
        super().__init__(base.root, base.index_dir, base.settings)
        self.shard_set = shard_set
        self.actors = actors
        self._connected = connected

    @classmethod
    def start(
        cls,
        path: str | Path,
        *,
        shards: int,
        address: str,
        index: str | Path | None = None,
        out: str | Path | None = None,
        cpus: float = 1.0,
    ) -> ShardedCollection:
        """Open the indexed collection at `path`, split its current generation into `shards`
        parts (under `out`; see `split_generation`) and start one actor per part on the Ray
        cluster at `address` ('HOST:PORT' or 'auto'), each reserving `cpus` CPUs."""
        base = Collection.open(path, index=index)
        shard_set = split_generation(base.index_dir, shards, Path(out) if out else None)
        connected = connect(address)
        try:
            actors = start_servers(shard_set, cpus=cpus)
        except BaseException:
            disconnect(connected)
            raise
        return cls(base, shard_set, actors, connected)

    @cached_property
    def _sharded(self) -> ShardedGeneration:
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            self._records = {r.id: r for r in catalog.records("ok")}
        return ShardedGeneration(
            self.shard_set, Model.load(self.shard_set.folder / "model"), self.actors
        )

    def _generation(self) -> Any:
        with self._lock:
            return self._sharded

    def _current_model(self) -> Any:
        return Model.load(self.shard_set.folder / build.MODEL_DIR)

    def _stored_images(self, loaded: Any) -> Any:
        return loaded.images

    def _search_settings(self, mode: str | None, fuse: tuple[str, ...] | None) -> SearchSettings:
        settings = super()._search_settings(mode, fuse)
        if settings.mode not in SHARDED_MODES or settings.sift:
            raise ValueError(
                f"a sharded search serves the modes {', '.join(SHARDED_MODES)}, without RootSIFT; "
                "search the index unsharded for the classic modes and RootSIFT"
            )
        return settings

    def close(self) -> None:
        """End the shard actors and leave the cluster (if `start` joined it)."""
        ray = import_ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        disconnect(self._connected)

    def __enter__(self) -> ShardedCollection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
