"""Search served from shards: one generation of an index split into N parts of contiguous rows,
each part held by a Ray actor (on any node of a cluster), a query fanned out to them all.

    lookalike shard PHOTOS --shards 3                 # write the parts (skipped when written)
    lookalike search q.jpg --index PHOTOS --ray HEAD:6379 --shards 3

    with ShardedCollection.start("PHOTOS", shards=3, address="HEAD:6379") as photos:
        hits = photos.search("q.jpg", k=10)

What grows with the collection is sharded: the ASMK inverted file and the local features
that verification reads. A part (`shard-000/`, ...) is self-contained, so it can live on the
node that serves it: its rows' inverted file (`asmk/`) and codes (`codes/`), their local
features (`features/shard-000001/`), their image ids and longer sides. The set folder holds
what the coordinator needs: the model (whitening and codebook), a copy of the generation's
global index (`global/`: small, about 1 kB an image exact and some 50 bytes compressed, and
whichever kind the generation has, so that its scores are the unsharded index's), and
`shards.json`, written last.

The coordinator (the `ShardedCollection`, on the machine with the index folder) describes the
query, encodes it, scores the global index, and asks every part for the raw ASMK similarities
of its rows; it joins them in row order and fuses them exactly as the unsharded search does
(scores are scaled by the best over *all* rows, so the parts return raw scores, not their own
top k). Verification runs on the part that holds each shortlisted image, given the query's
local features; query expansion fetches the few codes it needs. Every per-row number is
computed by the same code on the same data as in one process, so the hits, scores and their
order are those of `Collection.search` on the unsharded index.
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
from lookalike.index.asmk_index import AsmkIndex, ImageCode, Vocabulary
from lookalike.index.atomic import atomic_dir, save_npy, write_json_atomic
from lookalike.index.global_index import GlobalIndex, load_global
from lookalike.index.store import open_shard, write_shard
from lookalike.learn.model import Model
from lookalike.scale import connect, disconnect, import_ray
from lookalike.search.query import LoadedGeneration
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
    """A generation split into parts: part i holds rows `bounds[i]:bounds[i + 1]`."""

    folder: Path
    generation: int
    model_id: str
    bounds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.bounds) - 1

    def part(self, i: int) -> Path:
        return self.folder / f"shard-{i:03d}"

    @classmethod
    def load(cls, folder: Path) -> ShardSet:
        meta = json.loads((Path(folder) / SET_META).read_text())
        return cls(
            Path(folder), int(meta["generation"]), str(meta["model_id"]), tuple(meta["bounds"])
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
    if (final / SET_META).is_file():
        return ShardSet.load(final)
    model = Model.load(index_dir / build.MODEL_DIR)
    built_with = json.loads((source / "global.json").read_text()).get("model_id")
    if built_with != model.id:
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
        vocabulary = Vocabulary(model.codebook)
        for i in range(n):
            part_ids = ids[bounds[i] : bounds[i + 1]]
            _write_part(tmp / f"shard-{i:03d}", index_dir, model, vocabulary, part_ids, records)
        write_json_atomic(
            tmp / SET_META,
            {"generation": generation, "model_id": model.id, "bounds": list(bounds), "n": n},
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
) -> None:
    """One part: the codes, inverted file, local features and sizes of the images `ids`."""
    rows = [records[int(i)] for i in ids]
    features_dir = index_dir / build.FEATURES_DIR
    codes_dir = index_dir / build.CODES_DIR / model.id
    codes: list[ImageCode] = []
    globals_: list[np.ndarray] = []
    features: list[ImageFeatures] = []
    for record in rows:
        shard, row = record.shard or 0, record.row or 0
        (code,), vector = build.load_codes(codes_dir / f"shard-{shard:06d}", [row])
        codes.append(code)
        globals_.append(vector[0])
        stored = open_shard(features_dir, shard)
        features.append(ImageFeatures(stored.local(row), np.asarray(stored.global_[row])))
    folder.mkdir(parents=True)
    save_npy(folder, "ids", ids.astype(np.int64))
    sides = [float(max(r.width or 0, r.height or 0)) for r in rows]
    save_npy(folder, "sides", np.asarray(sides, np.float32))
    AsmkIndex.build(vocabulary, codes).save(folder / "asmk")
    (folder / "codes").mkdir()
    save_npy(folder / "codes", "word_offsets", np.cumsum([0] + [len(c.words) for c in codes]))
    save_npy(folder / "codes", "words", np.concatenate([c.words for c in codes]))
    save_npy(folder / "codes", "residuals", np.concatenate([c.residuals for c in codes]))
    save_npy(folder / "codes", "global", np.stack(globals_).astype(np.float32))
    write_shard(folder / build.FEATURES_DIR, PART_FEATURES_SHARD, features, {"part": folder.name})


def _remove_older_sets(base: Path, generation: int) -> None:
    """Shard sets of generations before `generation` under `base` (written by default)."""
    for folder in base.glob("gen-*-n*"):
        number = folder.name[len("gen-") :].split("-")[0]
        if number.isdigit() and int(number) < generation:
            shutil.rmtree(folder, ignore_errors=True)


# --- serving one part --------------------------------------------------------------------


class _PartImages:
    """The second stage's view of a part's images, by row of the part."""

    def __init__(self, folder: Path, sides: np.ndarray) -> None:
        self.features_dir = folder / build.FEATURES_DIR
        self.codes_dir = folder / "codes"
        self.sides = sides

    def local(self, row: int, limit: int) -> LocalFeatures:
        return open_shard(self.features_dir, PART_FEATURES_SHARD).local(row, limit)

    def side(self, row: int) -> float:
        return float(self.sides[row])

    def code(self, row: int) -> ImageCode:
        return build.load_codes(self.codes_dir, [row])[0][0]


class ShardServer:
    """One part of a shard set opened for searching (what a Ray actor holds). Rows are the
    part's own, 0..m-1; the coordinator maps them to the generation's."""

    def __init__(self, folder: str) -> None:
        part = Path(folder)
        model = Model.load(part.parent / build.MODEL_DIR)
        meta = json.loads((part.parent / SET_META).read_text())
        vocabulary = Vocabulary(model.codebook)
        ids = np.load(part / "ids.npy")
        self.loaded = LoadedGeneration(
            generation=int(meta["generation"]),
            ids=ids,
            asmk=AsmkIndex.load(part / "asmk", vocabulary),
            # the coordinator scores the global index; this one (exact, of the part's rows)
            # only completes the `LoadedGeneration` that verification is given
            global_=GlobalIndex.build(np.load(part / "codes" / "global.npy")),
            model=model,
            meta={"part": part.name},
        )
        self.images = _PartImages(part, np.load(part / "sides.npy"))

    def ids(self) -> np.ndarray:
        """`(m,)` int64 catalog ids of the part's rows."""
        return np.asarray(self.loaded.ids)

    def asmk_scores(self, code: ImageCode, alpha: float, threshold: float) -> np.ndarray:
        """`(m,)` float32 ASMK similarities of the query `code` to the part's rows."""
        # arrays that come through Ray are read-only; asmk's kernel wants writable buffers
        code = ImageCode(np.array(code.words), np.array(code.residuals))
        return self.loaded.asmk.scores(code, alpha=alpha, threshold=threshold)

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
        self.classic: dict[str, np.ndarray] = {}
        self.sift = None
        parts = self.ray.get([a.ids.remote() for a in actors])
        self.ids = np.concatenate(parts).astype(np.int64)
        self.bounds = np.asarray(shard_set.bounds, np.int64)
        if len(self.ids) != self.bounds[-1]:
            raise RuntimeError(f"the shards of {shard_set.folder} hold {len(self.ids)} rows")
        self.sides = np.concatenate(self.ray.get([a.sides.remote() for a in actors]))
        self.asmk = _ShardedAsmk(self, Vocabulary(model.codebook))
        global_dir = shard_set.folder / GLOBAL_DIR
        self.global_ = load_global(global_dir, json.loads((global_dir / "global.json").read_text()))
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
    def __init__(self, sharded: ShardedGeneration, vocabulary: Vocabulary) -> None:
        self.sharded = sharded
        self.vocabulary = vocabulary

    @property
    def n_images(self) -> int:
        return self.sharded.n_images

    def scores(self, code: ImageCode, *, alpha: float, threshold: float) -> np.ndarray:
        return self.sharded.gather("asmk_scores", code, alpha, threshold)


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
    same order, for the first stages in `SHARDED_MODES` (without classic descriptors fused).

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
        if settings.mode not in SHARDED_MODES or settings.fuse:
            raise ValueError(
                f"a sharded search serves the modes {', '.join(SHARDED_MODES)} without --fuse; "
                "search the index unsharded for the classic and RootSIFT ones"
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
