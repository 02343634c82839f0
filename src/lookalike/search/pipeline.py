"""The `Searcher`: a query image -> ranked hits, over one generation snapshot.

describe (decode, crop, CNN features, classic descriptors) -> first stage (`query.score`) ->
spatial verification and expansion (`rerank.rerank`) -> second looks at a query that verifies
nothing for sure (`retry`) -> fingerprints: the minutiae matcher re-ranks the best
(`fingerprint`) -> hits. A search takes one `Snapshot` when it starts and reads only
it, so a generation published meanwhile changes nothing in its hits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from lookalike.catalog import ImageRecord
from lookalike.features import Extractor, ImageFeatures, LocalFeatures
from lookalike.features.classic import describe, rootsift
from lookalike.features.detail import detail
from lookalike.features.minutiae import Minutiae, PrintScores, grey, paired
from lookalike.features.minutiae import extract as extract_minutiae
from lookalike.images import ImageError, ImageSource, load_image, source_size
from lookalike.index import sift_store
from lookalike.index.generation import Generation, Snapshot, stored_features
from lookalike.index.minutiae_store import MinutiaeReader
from lookalike.search.dedup import candidate_pairs
from lookalike.search.explain import save_png, side_by_side
from lookalike.search.fingerprint import check_prints, print_matches, ranked_by_prints, ranking
from lookalike.search.mirror import mirrored, unmirror
from lookalike.search.query import QueryScores, score, top_rows
from lookalike.search.region import Box, QueryPixels, clip_region, query_pixels
from lookalike.search.rerank import Reranked, VerifyMemo, rerank, verify_shortlist
from lookalike.search.retry import Look, best_turn, probes, read, second_looks
from lookalike.search.verdict import (
    at_least,
    below_match,
    matches_first,
    print_similarity,
    similarity,
    verdict,
)
from lookalike.search.verify import Verified
from lookalike.settings import (
    CNN_MODES,
    DEDUP_GATE,
    DEDUP_NEIGHBOURS,
    VERIFIED_MODES,
    MinutiaeSettings,
    RerankSettings,
    SearchOptions,
    SearchSettings,
    Settings,
)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    id: int
    path: str  # relative to the collection root
    score: float
    asmk_score: float | None
    global_score: float | None
    root: Path
    match: Verified | None = None
    """Spatial verification against the query (None when the hit was not verified)."""
    box: np.ndarray | None = None
    """(4, 2) corners, in the hit's pixels, of the query (or its region) mapped by the match."""
    size: tuple[int, int] | None = None
    """The image's (width, height) as seen (EXIF orientation applied)."""
    similarity: float | None = None
    """How alike the two images are on a fixed scale in [0, 1): 0.5 and up a match, 0.25 and
    up similar (`search.verdict`). Unlike `score`, which ranks this search's hits, it does not
    depend on how the query was given or on the other hits. None in a classic mode."""
    verdict: str = "similar"
    """'match' (the same object or scene, verified), 'similar' or 'none'."""
    print_score: float | None = None
    """The minutiae matcher's score against the query (Bozorth3; fingerprints), when it
    compared the two."""
    fused_print_score: float | None = None
    """The fused minutiae matcher's score (LEADER minutiae, geometric matcher), when the
    settings fuse one."""

    def __repr__(self) -> str:
        """One line: rank, id, path, verdict, similarity, score and inliers (not the arrays
        of the match)."""
        alike = None if self.similarity is None else round(self.similarity, 3)
        return (
            f"Hit(rank={self.rank}, id={self.id}, path={self.path!r}, verdict={self.verdict!r}, "
            f"similarity={alike}, score={self.score:.4g}, inliers={self.inliers})"
        )

    @property
    def abspath(self) -> Path:
        return self.root / self.path

    @property
    def inliers(self) -> int | None:
        return None if self.match is None else self.match.inliers

    def as_dict(self) -> dict[str, Any]:
        matrix = None if self.match is None else self.match.matrix
        return {
            "rank": self.rank,
            "id": self.id,
            "path": self.path,
            "score": round(self.score, 6),
            "asmk_score": None if self.asmk_score is None else round(self.asmk_score, 6),
            "global_score": None if self.global_score is None else round(self.global_score, 6),
            "inliers": self.inliers,
            "verdict": self.verdict,
            "similarity": None if self.similarity is None else round(self.similarity, 6),
            "minutiae_score": self.print_score,
            "fused_minutiae_score": self.fused_print_score,
            "homography": None if matrix is None else np.round(matrix, 6).tolist(),
            "box": None if self.box is None else np.round(self.box, 1).tolist(),
            "width": None if self.size is None else self.size[0],
            "height": None if self.size is None else self.size[1],
        }


@dataclass(frozen=True)
class SearchResult(Sequence[Hit]):
    """The hits of one search, best first (a sequence: index it, iterate it, take its len),
    with the query's (width, height) as seen and the generation they come from."""

    hits: tuple[Hit, ...]
    query_size: tuple[int, int]
    generation: int

    @overload
    def __getitem__(self, index: int) -> Hit: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Hit]: ...
    def __getitem__(self, index: int | slice) -> Hit | Sequence[Hit]:
        return self.hits[index]

    def __len__(self) -> int:
        return len(self.hits)


@dataclass(frozen=True)
class QueryDescription:
    """A query image described once, to be searched many ways (`Searcher.search` takes it as
    its query): CNN features with positions in the query's pixels, classic descriptors by name,
    and the query's (width, height). Spatial verification outcomes are kept in `memo`, so that
    searching it again verifies only images not verified before, and its second looks (see
    `RerankSettings.retry`) are described once."""

    features: ImageFeatures | None
    classic: dict[str, np.ndarray]
    size: tuple[int, int]
    memo: VerifyMemo = field(default_factory=dict, compare=False, repr=False)
    # the pixels described, kept for second looks; None for an indexed image searched with
    # its stored features
    pixels: QueryPixels | None = field(default=None, compare=False, repr=False)
    # second looks described so far, by name: each one a description of its own
    looks: dict[str, QueryDescription] = field(default_factory=dict, compare=False, repr=False)
    # how much fine detail the query holds (`features.detail`); None when unknown
    detail: float | None = None
    # its fingerprint minutiae, when the index compares them (`MinutiaeSettings`)
    minutiae: Minutiae | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class _Wanted:
    """What a query must be described with: CNN features (`cnn`), the `classic` descriptors,
    RootSIFT (`sift`), the classic descriptors a blurred query may use (`optional`), and
    fingerprint minutiae (`minutiae`)."""

    cnn: bool
    classic: tuple[str, ...]
    sift: bool
    optional: tuple[str, ...] = ()
    minutiae: bool = False

    @classmethod
    def of(cls, settings: SearchSettings, minutiae: bool = False) -> _Wanted:
        return cls(
            settings.mode in CNN_MODES,
            settings.classic,
            settings.sift,
            settings.blurred,
            minutiae and settings.mode in VERIFIED_MODES,
        )


Query = ImageSource | int | np.integer | QueryDescription
"""What a search takes: an image (`ImageSource`), an indexed image's id (searched with its
stored features) or a `QueryDescription`."""


class Searcher:
    """Searches the snapshots `snapshot()` gives, under the collection's `settings`.

    `index_dir`: where an indexed image searched by id has its stored features; `root`: the
    collection folder (hits' paths are relative to it); `extractor`: the network, built on
    first use."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        settings: Settings,
        extractor: Callable[[], Extractor],
        index_dir: Path,
        root: Path,
        check: Callable[[SearchSettings], None] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.settings = settings
        self.extractor = extractor
        self.index_dir = index_dir
        self.root = root
        self._check = check

    def search(
        self,
        query: Query,
        options: SearchOptions = SearchOptions(),
        *,
        region: Box | None = None,
        exclude_self: bool = False,
        exclude: Collection[int] = (),
    ) -> SearchResult:
        """The best images for `query`: a path, bytes, PIL image, (H, W, 3) array, the id (int)
        of an indexed image (searched with its stored features; `exclude_self` drops it from
        the hits), or a `QueryDescription`; `region` `(x, y, w, h)` in pixels of the query as
        seen (full size, upright). `options` over the collection's settings (`SearchOptions`).

        `exclude`: ids of indexed images searched around, as if they were not in the index: no
        hit, and no influence on the others (the scaling of scores, the verification shortlist,
        the decision to take second looks, query expansion); the model learned from the
        collection stays as it is. An indexed copy of a query file is excluded so: the search
        then ranks the rest as it would without the copy (with a shortlist ASMK index, at
        millions of images, the copy may still take one of the global candidates)."""
        resolved = options.apply(self.settings)
        settings, second = resolved.search, resolved.rerank
        if self._check is not None:
            self._check(settings)
        snapshot = self.snapshot()
        prints = self.settings.minutiae
        wanted = _Wanted.of(settings, prints.enabled and prints.verify > 0)
        described, own_rows = self._query(snapshot, query, region, wanted)
        excluded = _rows_of(snapshot, exclude)
        dropped = _union(excluded, own_rows if exclude_self else None)
        self_rows = _union(own_rows, excluded)
        scores = score(
            snapshot.loaded,
            described.features,
            settings,
            self_rows,
            described.classic,
            described.detail,
        )
        final, verified = scores.final, {}
        if second.verify > 0 and described.features is not None and settings.mode != "similar":
            scores, reranked = self._second_stage(
                snapshot, described, scores, settings, second, self_rows, dropped
            )
            final, verified = reranked.final, reranked.verified
        cosines = scores.global_ if described.features is not None else None
        match_rows = np.array(
            [r for r, v in verified.items() if _is_match(v.inliers, cosines, r)], np.int64
        )
        checked: dict[int, PrintScores] | None = None
        if wanted.minutiae and described.minutiae is not None:
            reader = MinutiaeReader(self.index_dir, prints)

            def stored(row: int) -> Minutiae | None:
                record = snapshot.records.get(int(snapshot.loaded.ids[row]))
                return None if record is None else reader.read(record)

            checked = check_prints(described.minutiae, final, stored, prints, dropped)
            final = ranked_by_prints(final, ranking(checked))
            match_rows = print_matches(checked, prints)  # photographs' rules do not judge prints
        rows = top_rows(matches_first(final, match_rows), resolved.k, dropped)
        size = described.size
        # the part searched: a box reaching past the edges would map to points at infinity
        query_box = (
            clip_region(region, size) if region else (0.0, 0.0, float(size[0]), float(size[1]))
        )
        hits = tuple(
            self._hit(
                snapshot, rank, int(row), final, scores, verified.get(int(row)), query_box, cosines
            )
            for rank, row in enumerate(rows, start=1)
        )
        if checked is not None:
            hits = tuple(
                self._as_print(hit, checked.get(int(row)))
                for hit, row in zip(hits, rows, strict=True)
            )
        listed = tuple(h for h in hits if at_least(h.verdict, resolved.min_verdict))
        return SearchResult(listed, size, snapshot.number)

    def _second_stage(
        self,
        snapshot: Snapshot,
        described: QueryDescription,
        scores: QueryScores,
        settings: SearchSettings,
        second: RerankSettings,
        self_rows: np.ndarray | None,
        dropped: np.ndarray | None,
    ) -> tuple[QueryScores, Reranked]:
        """Verification (and expansion) of the first stage's best, leaving out the `dropped`
        rows; then, when nothing verifies for sure, second looks at the query, keeping the look
        with the most inliers."""
        assert described.features is not None
        loaded, stored = snapshot.loaded, snapshot.stored
        reranked = rerank(
            loaded, described.features, scores, stored, settings, second, self_rows,
            described.memo, dropped,
        )  # fmt: skip
        best = _most_inliers(reranked.verified, self_rows)
        if not second.retry or best >= second.retry_below:
            return scores, reranked
        second = replace(second, verify=min(second.verify, second.retry_verify))
        closest = None if second.turn_margin is None else _closest(loaded, self_rows)
        for look in self._second_looks(described, closest, second.turn_margin):
            assert look.features is not None
            look_scores = score(
                loaded, look.features, settings, self_rows, look.classic, look.detail
            )
            again = rerank(
                loaded, look.features, look_scores, stored, settings, second, self_rows,
                look.memo, dropped,
            )  # fmt: skip
            most = _most_inliers(again.verified, self_rows)
            if most >= second.min_inliers and most > best:
                scores, reranked, best = look_scores, again, most
            if best >= second.retry_below:
                break
        return scores, reranked

    def _hit(
        self,
        snapshot: Snapshot,
        rank: int,
        row: int,
        final: np.ndarray,
        scores: QueryScores,
        match: Verified | None,
        query_box: Box,
        cosines: np.ndarray | None,
    ) -> Hit:
        image_id = int(snapshot.loaded.ids[row])
        record = snapshot.records.get(image_id)
        alike = similarity(
            None if match is None else match.inliers,
            None if cosines is None else float(cosines[row]),
        )
        return Hit(
            rank=rank,
            id=image_id,
            path=record.path if record else f"<removed image {image_id}>",
            score=float(final[row]),
            asmk_score=None if scores.asmk is None else float(scores.asmk[row]),
            global_score=None if scores.global_ is None else float(scores.global_[row]),
            root=self.root,
            match=match,
            box=None if match is None else match.map_box(query_box),
            size=None if record is None else (record.width or 0, record.height or 0),
            similarity=alike,
            verdict=verdict(alike),
        )

    def _as_print(self, hit: Hit, found: PrintScores | None) -> Hit:
        """`hit` judged as a fingerprint: by its minutiae matcher's score when it was compared,
        else never a match (the photographs' rules do not judge prints)."""
        if found is None:
            alike = below_match(hit.similarity)
            return replace(hit, similarity=alike, verdict=verdict(alike))
        alike = print_similarity(found.score, self.settings.minutiae.match_score)
        return replace(
            hit,
            similarity=alike,
            verdict=verdict(alike),
            print_score=found.score,
            fused_print_score=found.fused,
        )

    def describe(
        self,
        query: ImageSource,
        *,
        region: Box | None = None,
        classic: tuple[str, ...] | None = None,
        cnn: bool = True,
        sift: bool | None = None,
    ) -> QueryDescription:
        """Describe a query image (a path, bytes, PIL image or (H, W, 3) array) once, to search
        it in several modes without describing it again: its CNN features (unless not `cnn`),
        the `classic` descriptors (default: those the index stores) and its RootSIFT features
        (`sift`; default: when the index has them)."""
        snapshot = self.snapshot()
        wanted = _Wanted(
            cnn,
            tuple(self.settings.classic.descriptors if classic is None else classic),
            snapshot.loaded.sift is not None if sift is None else sift,
            self.settings.search.blurred,
            cnn and self.settings.minutiae.enabled,
        )
        described, _ = self._query(snapshot, query, region, wanted)
        return described

    def _query(
        self, snapshot: Snapshot, query: Query, region: Box | None, wanted: _Wanted
    ) -> tuple[QueryDescription, np.ndarray | None]:
        """(The query described as `wanted` asks: CNN features with positions in query pixels,
        classic descriptors, RootSIFT as 'rootsift'; its (width, height), pixels and detail;
        its rows in the snapshot when it is an indexed image). The classic descriptors a
        blurred query may use (`wanted.optional`) are described, and its detail measured, only
        for those the index stores and when its pixels are read for CNN features."""
        if isinstance(query, QueryDescription):
            return _described(query, region, wanted), None
        if isinstance(query, int | np.integer):
            record = snapshot.records.get(int(query))
            if record is None:
                raise KeyError(f"no indexed image with id {int(query)}")
            self_rows = np.flatnonzero(snapshot.loaded.ids == int(query))
            stored = (
                None if region is not None else self._stored(snapshot, record, self_rows, wanted)
            )
            if stored is not None:
                return stored, self_rows
            return self._read(snapshot, self.root / record.path, region, wanted), self_rows
        return self._read(snapshot, query, region, wanted), None

    def _stored(
        self, snapshot: Snapshot, record: ImageRecord, self_rows: np.ndarray, wanted: _Wanted
    ) -> QueryDescription | None:
        """An indexed image described from what is stored, when everything `wanted` is."""
        loaded = snapshot.loaded
        stored = [n for n in wanted.classic if n in loaded.classic]
        sift_settings = self.settings.sift
        has_sift = record.shard is not None and sift_store.has_sift(
            self.index_dir, sift_settings, record.shard
        )
        if (
            not len(self_rows)
            or len(stored) != len(wanted.classic)
            or (wanted.sift and not has_sift)
        ):
            return None
        described = {n: np.asarray(loaded.classic[n][self_rows[0]]) for n in stored}
        if wanted.sift:
            assert record.shard is not None
            described["rootsift"] = sift_store.read_sift(
                self.index_dir, sift_settings, record.shard, record.row or 0
            )
        minutiae = None
        if wanted.minutiae:
            minutiae = MinutiaeReader(self.index_dir, self.settings.minutiae).read(record)
            if minutiae is None:
                return None
        features = stored_features(self.index_dir, record) if wanted.cnn else None
        size = (record.width or 0, record.height or 0)
        return QueryDescription(features, described, size, minutiae=minutiae)

    def _read(
        self, snapshot: Snapshot, query: ImageSource, region: Box | None, wanted: _Wanted
    ) -> QueryDescription:
        """A query image decoded (its `region` only, when given) and described."""
        size = source_size(query)
        box = None if region is None else clip_region(region, size)
        described: dict[str, np.ndarray] = {}
        pixels = None
        blurred: list[str] = []
        if wanted.cnn or wanted.classic:
            pixels = query_pixels(query, size, self.settings.features.decode_size, box)
            loaded = snapshot.loaded
            blurred = [n for n in wanted.optional if n in loaded.classic] if wanted.cnn else []
            names = (*wanted.classic, *(n for n in blurred if n not in wanted.classic))
            described = describe(pixels.image, names, self.settings.classic)
        if wanted.sift:
            sharp = query_pixels(query, size, self.settings.sift.max_side, box)
            described["rootsift"] = rootsift(sharp.image, self.settings.sift).desc
        if not wanted.cnn or pixels is None:
            return QueryDescription(None, described, size)
        features = _in_query(self.extractor().extract(pixels.image), pixels)
        # the detail matters only where colour may weigh in for a blurred query
        sharpness = detail(pixels.image) if blurred else None
        minutiae = None
        if wanted.minutiae:
            prints = self.settings.minutiae
            print_pixels = query_pixels(query, size, prints.max_side, box)
            minutiae = extract_minutiae(grey(print_pixels.image, prints.max_side), prints)
        return QueryDescription(
            features, described, size, pixels=pixels, detail=sharpness, minutiae=minutiae
        )

    def _second_looks(
        self,
        described: QueryDescription,
        closest: Callable[[np.ndarray], float] | None = None,
        margin: float | None = None,
    ) -> Iterator[QueryDescription]:
        """`described` read again each way of `search.retry.second_looks`, each described only
        the first time it is asked for. With `closest` (a raw global descriptor -> its
        similarity to the nearest indexed image) and a `margin`, the turns are probed after the
        coarse look and only the one `retry.best_turn` picks is read (none when it picks
        none)."""
        if described.pixels is None:
            return
        coarse, *turns = second_looks(self.settings.features.scales)
        yield self._look(described, coarse)
        if closest is not None and margin is not None:
            similarity = {p.turns: closest(_global(self._look(described, p))) for p in probes()}
            chosen = best_turn(similarity, margin)
            turns = [look for look in turns if look.turns == chosen]
        for look in turns:
            yield self._look(described, look)

    def _look(self, described: QueryDescription, look: Look) -> QueryDescription:
        """`described` read `look`'s way (kept in `described.looks`: read once)."""
        pixels = described.pixels
        assert pixels is not None
        if look.name not in described.looks:
            features = read(self.extractor().extract, pixels.image, look)
            described.looks[look.name] = QueryDescription(
                _in_query(features, pixels),
                described.classic,
                described.size,
                detail=described.detail,  # the query's, however the look reads it
            )
        return described.looks[look.name]


def _described(query: QueryDescription, region: Box | None, wanted: _Wanted) -> QueryDescription:
    """A described query as a search `wanted` reads it (ValueError when it lacks something)."""
    if region is not None:
        raise ValueError("a described query is searched whole: describe the region")
    needed = (*wanted.classic, *(("rootsift",) if wanted.sift else ()))
    missing = [n for n in needed if n not in query.classic]
    if missing:
        raise ValueError(f"the described query has no {missing[0]!r} descriptor")
    return query if wanted.cnn else replace(query, features=None, pixels=None)


def _in_query(features: ImageFeatures, pixels: QueryPixels) -> ImageFeatures:
    """`features` read off `pixels`, with positions moved to the query's own pixels."""
    local = features.local
    moved = LocalFeatures(
        xy=pixels.to_query(local.xy), scale=local.scale, strength=local.strength, desc=local.desc
    )
    return ImageFeatures(moved, features.global_)


def _global(described: QueryDescription) -> np.ndarray:
    assert described.features is not None
    return described.features.global_


def _closest(loaded: Generation, self_rows: np.ndarray | None) -> Callable[[np.ndarray], float]:
    """A raw global descriptor `(G,)` -> the similarity (whitened cosine) of the indexed image
    closest to it, the `self_rows` left out (-1 for an empty collection)."""

    left_out = np.zeros(0, np.int64) if self_rows is None else np.asarray(self_rows, np.int64)

    def closest(descriptor: np.ndarray) -> float:
        query = loaded.model.global_whitening.apply(descriptor[None].astype(np.float32))[0]
        # the nearest rows only (not a pass over every row's score, slow at millions)
        rows, similarity = loaded.global_.search(query, len(left_out) + 1)
        others = similarity[~np.isin(rows, left_out)]
        return float(others[0]) if len(others) else -1.0

    return closest


def _rows_of(snapshot: Snapshot, ids: Collection[int]) -> np.ndarray | None:
    """The rows of the snapshot holding the images `ids` (None for no ids)."""
    if not len(ids):
        return None
    return np.flatnonzero(np.isin(snapshot.loaded.ids, np.fromiter(ids, np.int64, len(ids))))


def _union(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """The rows of `a` and `b` (None when neither has any)."""
    if a is None or not len(a):
        return b
    if b is None or not len(b):
        return a
    return np.union1d(a, b)


def _is_match(inliers: int, cosines: np.ndarray | None, row: int) -> bool:
    """Whether a verified row with `inliers` and global cosine `cosines[row]` is a match."""
    cosine = None if cosines is None else float(cosines[row])
    return verdict(similarity(inliers, cosine)) == "match"


def _most_inliers(verified: dict[int, Verified], self_rows: np.ndarray | None) -> int:
    """The most inliers of any verified row other than `self_rows` (0 when none)."""
    own = set() if self_rows is None else {int(r) for r in self_rows}
    return max((v.inliers for row, v in verified.items() if row not in own), default=0)


logger = logging.getLogger("lookalike")


def verified_pairs(
    searcher: Searcher,
    *,
    neighbours: int = DEDUP_NEIGHBOURS,
    gate: float = DEDUP_GATE,
    min_inliers: int = 1,
    sure: int | None = None,
    looks: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[tuple[int, int], int]:
    """Verified pairs of indexed images: `{(id_a, id_b): inliers}` (id_a < id_b) for the
    pairs with at least `min_inliers`, without comparing every image with every other.

    Candidates are each image's `neighbours` nearest images in the global index whose
    similarity is at least `gate` (`dedup.candidate_pairs`). Each pair is verified as
    `search` verifies a hit (`verify_shortlist` under the collection's `RerankSettings`),
    from the stored features of its first image.

    With `looks`, an image none of whose candidates reaches `sure` inliers (default:
    `min_inliers`), or that has none, is looked at again as `search` looks again at a query
    that verifies nothing for sure: decoded and described coarser and turned
    (`retry.second_looks`, when `retry` is on), and, last, mirrored (`mirror`), each look
    adding the nearest images to its own global descriptor (above `gate`: a copy turned a
    quarter is far from its original by the upright descriptors) and verifying the
    candidates still below `sure`, until one is sure; a pair keeps its most inliers. That
    costs up to five descriptions of each image without a sure copy; without `looks` only
    the stored features are compared (copies turned a quarter or mirrored are missed).

    Progress is reported as ('candidates', done, total), ('dedup', done, total), then
    ('second looks', done, total)."""
    if min_inliers < 1 or neighbours < 1:
        raise ValueError("the inlier threshold and neighbours must be positive")
    sure = min_inliers if sure is None else sure
    snapshot = searcher.snapshot()
    loaded, stored = snapshot.loaded, snapshot.stored
    second = searcher.settings.rerank

    def found(done: int, total: int) -> None:
        if progress is not None:
            progress("candidates", done, total)

    pairs, _ = candidate_pairs(loaded.global_, neighbours, gate, progress=found)
    inliers = np.zeros(len(pairs), np.int64)
    # every pair verified once, from its first row's stored features
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]] if len(pairs) else [])
    stops = [*starts[1:], len(pairs)] if len(pairs) else []
    for done, (begin, stop) in enumerate(zip(starts, stops, strict=True), start=1):
        row, partners = int(pairs[begin, 0]), pairs[begin:stop, 1]
        query = stored.local(row, second.features)
        verified = verify_shortlist(loaded, query, partners, stored, second)
        inliers[begin:stop] = [verified[int(r)].inliers for r in partners]
        if progress is not None:
            progress("dedup", done, len(starts))
    # images none of whose candidates verify for sure, looked at again
    best = np.zeros(loaded.n_images, np.int64)
    np.maximum.at(best, pairs[:, 0], inliers)
    np.maximum.at(best, pairs[:, 1], inliers)
    again = np.flatnonzero(best < sure) if looks else np.zeros(0, np.int64)
    # each pair listed under both its rows: the pairs of a row are a slice of `by_row`
    ends = np.concatenate([pairs[:, 0], pairs[:, 1]])
    by_row = np.argsort(ends, kind="stable") % max(len(pairs), 1)
    bounds = np.searchsorted(np.sort(ends), np.stack([again, again + 1]))
    found_again: dict[tuple[int, int], int] = {}
    for done, (row, begin, stop) in enumerate(zip(again, *bounds, strict=True), start=1):
        mine = by_row[begin:stop]
        partners = np.where(pairs[mine, 0] == row, pairs[mine, 1], pairs[mine, 0])
        looked = _looked_again(searcher, snapshot, int(row), partners, neighbours, gate, sure)
        at = dict(zip(partners.tolist(), mine.tolist(), strict=True))
        for partner, count in looked.items():
            if partner in at:
                inliers[at[partner]] = max(int(inliers[at[partner]]), count)
            else:  # a candidate only a look's own global descriptor found
                key = (min(int(row), partner), max(int(row), partner))
                found_again[key] = max(found_again.get(key, 0), count)
        if progress is not None:
            progress("second looks", done, len(again))
    ids = np.asarray(loaded.ids, np.int64)
    near: dict[tuple[int, int], int] = {}
    kept = inliers >= min_inliers
    rows_inliers = [*zip(map(tuple, pairs[kept].tolist()), inliers[kept].tolist(), strict=True)]
    for (a, b), n in [*rows_inliers, *found_again.items()]:
        if n >= min_inliers:
            id_a, id_b = int(ids[a]), int(ids[b])
            pair = (min(id_a, id_b), max(id_a, id_b))
            near[pair] = max(near.get(pair, 0), int(n))
    return near


def _looked_again(
    searcher: Searcher,
    snapshot: Snapshot,
    row: int,
    rows: np.ndarray,
    neighbours: int,
    gate: float,
    sure: int,
) -> dict[int, int]:
    """The most inliers of the image at `row`, read again, against its candidates `rows` and
    those its looks find: each look (the second looks when the settings' `retry` is on, then
    the mirrored look) adds its own global descriptor's `neighbours` nearest rows at least
    `gate` similar, and verifies the candidates still below `sure`; the looks stop at the
    first that verifies one for sure, as a search's do. `{row: inliers}`; an image that
    cannot be read is logged and skipped: `{}`."""
    loaded, stored = snapshot.loaded, snapshot.stored
    second = searcher.settings.rerank
    record = snapshot.records.get(int(loaded.ids[row]))
    if record is None:
        return {}
    path = searcher.root / record.path
    try:
        described = searcher._read(snapshot, path, None, _Wanted(True, (), False))
    except (ImageError, OSError) as exc:
        logger.warning("dedup: cannot read %s again (%s); its plain look stands", path, exc)
        return {}
    best = {int(r): 0 for r in rows}

    def verify(features: ImageFeatures, mirrored_width: float | None = None) -> None:
        query = loaded.model.global_whitening.apply(features.global_[None].astype(np.float32))[0]
        near, sims = loaded.global_.search(query, neighbours + 1)
        for r in near[(sims >= gate) & (near != row)]:
            best.setdefault(int(r), 0)
        todo = np.array([r for r, n in best.items() if n < sure], np.int64)
        for r, outcome in verify_shortlist(loaded, features.local, todo, stored, second).items():
            if mirrored_width is not None:
                outcome = unmirror(outcome, mirrored_width)
            best[r] = max(best[r], outcome.inliers)

    if second.retry:
        for look in searcher._second_looks(described):
            assert look.features is not None
            verify(look.features)
            if max(best.values(), default=0) >= sure:  # found for sure: as a search stops
                return best
    flipped = mirrored_look(searcher, described)
    if flipped is not None:
        verify(flipped, described.size[0])
    return best


def mirrored_look(searcher: Searcher, described: QueryDescription) -> ImageFeatures | None:
    """The features of `described`'s pixels flipped left to right, positions in the pixels of
    the flipped query (verify against them, then `mirror.unmirror` the outcome with the
    query's width); None when its pixels were not kept (a query described from stored
    features)."""
    pixels = described.pixels
    if pixels is None:
        return None
    return _in_query(searcher.extractor().extract(mirrored(pixels.image)), pixels)


def explain(
    searcher: Searcher,
    query: ImageSource | int | np.integer,
    hits: Sequence[Hit],
    out_dir: str | os.PathLike[str],
    *,
    region: Box | None = None,
    height: int = 480,
) -> list[Path]:
    """Write one side-by-side PNG per verified hit into `out_dir`: the query (its region
    boxed) and the hit, with the inlier correspondences and the matched region drawn; for a
    fingerprint the minutiae matcher compared, the paired minutiae. Returns the files written,
    in rank order."""
    if isinstance(query, int | np.integer):
        record = searcher.snapshot().records.get(int(query))
        if record is None:
            raise KeyError(f"no indexed image with id {int(query)}")
        query = searcher.root / record.path
    size = source_size(query)
    picture = load_image(query, max_side=2 * height)
    prints = searcher.settings.minutiae
    query_minutiae = None
    written = []
    for hit in hits:
        match, label, box = hit.match, "inliers", hit.box
        if hit.print_score is not None:
            if query_minutiae is None:
                query_minutiae = _minutiae_as_seen(query, size, region, prints)
            hit_size = source_size(hit.abspath)
            match = _paired(query_minutiae, _minutiae_as_seen(hit.abspath, hit_size, None, prints))
            label, box = "paired minutiae", None
        if match is None:
            continue
        drawn = side_by_side(
            picture,
            size,
            load_image(hit.abspath, max_side=2 * height),
            source_size(hit.abspath),
            match,
            query_box=region,
            hit_box=box,
            height=height,
            label=label,
        )
        name = f"{hit.rank:02d}-{hit.id}-{_safe_stem(hit.path)}.png"
        text = {"query": str(query), "hit": hit.path, label: str(match.inliers)}
        written.append(save_png(drawn, Path(out_dir) / name, text))
    return written


def _minutiae_as_seen(
    source: ImageSource, size: tuple[int, int], region: Box | None, settings: MinutiaeSettings
) -> Minutiae:
    """The minutiae of an image (its `region` only, when given), as a search reads them, with
    positions moved to the image's own pixels (`size`: (width, height) as seen)."""
    box = None if region is None else clip_region(region, size)
    pixels = query_pixels(source, size, settings.max_side, box)
    found = extract_minutiae(grey(pixels.image, settings.max_side), settings)
    return found.moved(pixels.to_query, size)


def _paired(query: Minutiae, image: Minutiae) -> Verified:
    """The paired minutiae of two prints as a `Verified` (no geometric model), to be drawn."""
    query_xy, image_xy = paired(query, image)
    return Verified(len(query_xy), None, query_xy, image_xy)


def _safe_stem(path: str, limit: int = 60) -> str:
    """A file-name-safe short form of an image's name."""
    stem = Path(path).stem
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:limit] or "image"
