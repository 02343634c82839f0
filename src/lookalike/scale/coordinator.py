"""Search served from shards: one generation of an index split into N parts of contiguous rows
(`scale.split`), each part held by a Ray actor (`scale.part.ShardServer`, on any node of a
cluster), a query fanned out to them all.

    lookalike shard PHOTOS --shards 3                 # write the parts (skipped when written)
    lookalike search q.jpg --index PHOTOS --ray HEAD:6379 --shards 3

    with ShardedCollection.start("PHOTOS", shards=3, address="HEAD:6379") as photos:
        hits = photos.search("q.jpg", k=10)

The coordinator (the `ShardedCollection`, on the machine with the index folder) runs the
unsharded `search.pipeline.Searcher` over a snapshot of the sharded generation: it describes
the query, encodes it, scores the global index (a copy in the set folder), and runs the query
pipeline (`search.query.score`) over ASMK scores gathered from the parts. For the inverted kind
every part returns the raw ASMK similarities of all its rows, joined in row order and fused
exactly as the unsharded search does (scores are scaled by the best over *all* rows, so the
parts return raw scores, not their own top k). For the shortlist kind the coordinator takes the
global index's best `candidates` rows as the unsharded search does (`global_candidates`), sends
each part the candidates it holds (as its own row numbers), each part scores those from its
codes (`ShortlistAsmk.scores`), and the coordinator puts them in place, 0 elsewhere, and caps
every other row below the candidates as the unsharded search does. Verification runs on the
part that holds each shortlisted image, given the query's local features; query expansion
fetches the few codes it needs and scores them as the first stage does. Every per-row number is
computed by the same code on the same data as in one process, so the hits, scores and their
order are those of `Collection.search` on the unsharded index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog import Catalog
from lookalike.collection import Collection
from lookalike.features import Extractor, LocalFeatures
from lookalike.index.asmk_index import ImageCode, Vocabulary
from lookalike.index.asmk_postings import Postings
from lookalike.index.asmk_shortlist import OFFSETS
from lookalike.index.generation import Manifest, Snapshot, generation_records, load_classic
from lookalike.index.global_index import load_global
from lookalike.learn.model import Model
from lookalike.scale import connect, disconnect, import_ray
from lookalike.scale.part import ShardServer
from lookalike.scale.split import GLOBAL_DIR, MODEL_DIR, ShardSet, split_generation
from lookalike.search.facade import SearchFacade
from lookalike.search.pipeline import Searcher
from lookalike.search.verify import Verified
from lookalike.settings import RerankSettings, SearchSettings

SHARDED_MODES = ("fused", "asmk", "global")
"""The first stages a sharded search serves (the classic and RootSIFT ones are not sharded)."""


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
        self.sift = None
        self.similar = None  # the 'similar' mode is not sharded
        parts = self.ray.get([a.ids.remote() for a in actors])
        self.ids = np.concatenate(parts).astype(np.int64)
        self.bounds = np.asarray(shard_set.bounds, np.int64)
        if len(self.ids) != self.bounds[-1]:
            raise RuntimeError(f"the shards of {shard_set.folder} hold {len(self.ids)} rows")
        self.sides = np.concatenate(self.ray.get([a.sides.remote() for a in actors]))
        self.asmk = _ShardedAsmk(self, Vocabulary(model.codebook), shard_set)
        global_dir = shard_set.folder / GLOBAL_DIR
        manifest = Manifest.read(global_dir)
        if manifest is None:
            raise RuntimeError(f"{global_dir} has no readable manifest: run `lookalike shard`")
        self.global_ = load_global(global_dir, manifest.global_index)
        # scored here, as the global index is (2.4 kB an image, mapped)
        self.classic = load_classic(global_dir, manifest)
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
        self.word_candidates = shard_set.word_candidates
        self._postings: tuple[Postings, np.ndarray] | None = None
        if self.word_candidates:  # the generation's postings, copied beside its global index
            folder = shard_set.folder / GLOBAL_DIR
            postings = Postings.open(folder, shard_set.word_bits, vocabulary.size)
            self._postings = postings, np.load(folder / f"{OFFSETS}.npy").astype(np.int64)

    def word_rows(self, code: ImageCode) -> np.ndarray:
        """The generation's word candidates for `code` (`ShortlistAsmk.word_rows`), picked
        here over all rows as the unsharded index picks them."""
        if self._postings is None:
            return np.zeros(0, np.int64)
        postings, offsets = self._postings
        return postings.candidates(code, offsets, self.word_candidates)

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


def check_sharded(settings: SearchSettings) -> None:
    """ValueError unless a sharded search serves `settings`."""
    if settings.mode not in SHARDED_MODES or settings.sift:
        raise ValueError(
            f"a sharded search serves the modes {', '.join(SHARDED_MODES)}, without RootSIFT; "
            "search the index unsharded for the classic modes and RootSIFT"
        )


class ShardedCollection(SearchFacade):
    """A collection searched through shard actors: `search`, `describe`, `images`,
    `verified_pairs` and `explain` work as on the unsharded index (`Collection`), with the same
    hits in the same order, for the first stages in `SHARDED_MODES`, classic descriptors fused
    or not (the coordinator holds them, as it holds the global index; RootSIFT is not sharded).

    It serves the generation that was current when it started; `close` (or leaving a `with`
    block) ends its actors.
    """

    def __init__(
        self, base: Collection, shard_set: ShardSet, actors: list[Any], connected: bool
    ) -> None:
        self.root = base.root
        self.index_dir = base.index_dir
        self.settings = base.settings
        self.shard_set = shard_set
        self.actors = actors
        self._connected = connected
        self._base = base
        self._snapshot: Snapshot | None = None
        self._extractor: Extractor | None = None

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

    def snapshot(self) -> Snapshot:
        """The sharded generation with its images' records, the same for every search."""
        if self._snapshot is None:
            model = Model.load(self.shard_set.folder / MODEL_DIR)
            sharded = ShardedGeneration(self.shard_set, model, self.actors)
            folder = self.shard_set.folder / GLOBAL_DIR
            with Catalog.open(self.index_dir, readonly=True) as catalog:
                records = generation_records(folder, Manifest.read(folder), sharded.ids, catalog)
            self._snapshot = Snapshot(sharded, records, sharded.images)
        return self._snapshot

    def extractor(self) -> Extractor:
        if self._extractor is None:
            model = Model.load(self.shard_set.folder / MODEL_DIR)
            self._extractor = Extractor(self.settings.features, weights=model.weights, threads=1)
        return self._extractor

    @property
    def searcher(self) -> Searcher:
        return Searcher(
            self.snapshot,
            self.settings,
            self.extractor,
            self.index_dir,
            self.root,
            check=check_sharded,
        )

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
