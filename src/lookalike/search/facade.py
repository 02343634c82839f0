"""The search methods a collection offers, over the `Searcher` it gives: `Collection` (one
index folder) and `scale.coordinator.ShardedCollection` (its shards) share them, so that both
are searched, described, deduplicated and explained the same way."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from lookalike.catalog import ImageRecord
from lookalike.images import ImageSource, content_hash
from lookalike.index.generation import Snapshot
from lookalike.index.update import ProgressCallback
from lookalike.search import pipeline
from lookalike.search.dedup import DuplicateGroup, build_groups
from lookalike.search.pipeline import Hit, Query, QueryDescription, Searcher, SearchResult
from lookalike.search.region import Box
from lookalike.settings import (
    DEDUP_GATE,
    DEDUP_NEIGHBOURS,
    DEDUP_SUPPORT,
    DEDUP_THRESHOLD,
    SearchOptions,
)


class SearchFacade(ABC):
    """Searching a collection through `searcher`, over the snapshots `snapshot` gives."""

    @abstractmethod
    def snapshot(self) -> Snapshot:
        """The generation searches read now, with its images' records."""

    @property
    @abstractmethod
    def searcher(self) -> Searcher:
        """The `Searcher` over this collection's snapshots and settings."""

    def search(
        self,
        query: Query,
        *,
        k: int | None = None,
        mode: str | None = None,
        fuse: tuple[str, ...] | None = None,
        verify: int | None = None,
        expand: bool | None = None,
        retry: bool | None = None,
        region: Box | None = None,
        exclude_self: bool = False,
        exclude: Collection[int] = (),
        min_verdict: str | None = None,
    ) -> SearchResult:
        """The `k` images most like `query`: a path, bytes, PIL image, (H, W, 3) array, the
        id (int) of an indexed image (searched with its stored features; `exclude_self` drops
        it from the hits), or a `QueryDescription` from `describe`.

        Every option left None takes the collection's setting (see `SearchOptions`):
        k: hits (20). mode: 'fused' (default), 'asmk' or 'global' first stage; or 'colour',
            'texture', 'shape' or 'rootsift' to rank by that descriptor alone.
        fuse: classic descriptors whose scores are added to the first stage's.
        verify: how many of the first stage's best to verify spatially (100; 0: none).
        expand: query expansion from the best verified hits (off).
        retry: when nothing verifies for sure, look again at the query image coarser and
            turned (on; see `RerankSettings.retry`).
        region: `(x, y, w, h)` in pixels of the query as seen (EXIF orientation applied, full
            size): search for what lies inside this box only.
        exclude: ids of indexed images to search around, as if they were not indexed (see
            `Searcher.search`); `copies(path)` gives those of a query file's exact copies.
        min_verdict: list only hits of this verdict or a stronger one ('match', 'similar' or
            'none', the default: every hit). Matches always come first.
        """
        options = SearchOptions(
            k=k,
            mode=mode,
            fuse=fuse,
            verify=verify,
            expand=expand,
            retry=retry,
            min_verdict=min_verdict,
        )
        return self.searcher.search(
            query, options, region=region, exclude_self=exclude_self, exclude=exclude
        )

    def copies(self, path: str | os.PathLike[str]) -> list[int]:
        """Ids of the searchable images whose content is byte for byte that of the file at
        `path` (same content hash), in id order."""
        digest = content_hash(Path(path))
        records = self.snapshot().records
        return sorted(i for i, r in records.items() if r.hash == digest)

    def describe(
        self,
        query: ImageSource,
        *,
        region: Box | None = None,
        classic: tuple[str, ...] | None = None,
        cnn: bool = True,
        sift: bool | None = None,
    ) -> QueryDescription:
        """Describe a query once, to search it several ways (see `Searcher.describe`)."""
        return self.searcher.describe(query, region=region, classic=classic, cnn=cnn, sift=sift)

    def images(self) -> list[tuple[int, str]]:
        """`(id, path)` of every searchable image, in the order of the index's rows."""
        return self.snapshot().images()

    def dedup(
        self,
        *,
        threshold: int = DEDUP_THRESHOLD,
        neighbours: int = DEDUP_NEIGHBOURS,
        gate: float = DEDUP_GATE,
        looks: bool = True,
        progress: ProgressCallback | None = None,
    ) -> list[DuplicateGroup]:
        """Groups of exact copies (same content hash) and near duplicates: images whose spatial
        verification finds at least `threshold` inliers, among each image's `neighbours`
        nearest images by global descriptor that are at least `gate` similar; with `looks`,
        an image none of whose candidates reaches `threshold` is looked at again coarser,
        turned and mirrored (see `pipeline.verified_pairs`). A pair below `DEDUP_SUPPORT` times
        `threshold` joins two groups only with support (`dedup.supported_pairs`). Memory grows
        with the number of images times `neighbours`, never with its square. Returns
        `DuplicateGroup`s ordered by their first path."""
        snapshot = self.snapshot()
        near = self.verified_pairs(
            neighbours=neighbours,
            gate=gate,
            min_inliers=threshold,
            sure=threshold,
            looks=looks,
            progress=progress,
        )
        paths = {i: r.path for i, r in snapshot.records.items()}
        hashes = {i: r.hash for i, r in snapshot.records.items()}
        return build_groups(paths, hashes, near, sure=DEDUP_SUPPORT * threshold)

    def verified_pairs(
        self,
        *,
        neighbours: int = DEDUP_NEIGHBOURS,
        gate: float = DEDUP_GATE,
        min_inliers: int = 1,
        sure: int | None = None,
        looks: bool = True,
        progress: ProgressCallback | None = None,
    ) -> dict[tuple[int, int], int]:
        """Verified pairs among each image's nearest images (see `pipeline.verified_pairs`)."""
        return pipeline.verified_pairs(
            self.searcher,
            neighbours=neighbours,
            gate=gate,
            min_inliers=min_inliers,
            sure=sure,
            looks=looks,
            progress=progress,
        )

    def explain(
        self,
        query: ImageSource | int | np.integer,
        hits: Sequence[Hit],
        out_dir: str | os.PathLike[str],
        *,
        region: Box | None = None,
        height: int = 480,
    ) -> list[Path]:
        """One side-by-side PNG per verified hit in `out_dir` (see `pipeline.explain`)."""
        return pipeline.explain(self.searcher, query, hits, out_dir, region=region, height=height)

    @property
    def generation(self) -> int:
        """The index generation searches read now (a newer one published is loaded first)."""
        return self.snapshot().number

    def record(self, image_id: int) -> ImageRecord | None:
        """The catalog record of a searchable image (in the generation being searched)."""
        return self.snapshot().records.get(int(image_id))
