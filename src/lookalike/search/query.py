"""The query pipeline: features of a query -> scores over the collection -> ranked rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from lookalike.features import ImageFeatures
from lookalike.features.classic import SIFT_DIM
from lookalike.features.detail import blurred_share
from lookalike.index.asmk_index import AsmkSearch, ImageCode
from lookalike.index.asmk_shortlist import ShortlistSearch, as_shortlist
from lookalike.index.generation import Generation
from lookalike.index.global_index import GlobalSearch, floored
from lookalike.settings import CLASSIC_DESCRIPTORS, SearchSettings


@dataclass(frozen=True)
class QueryScores:
    """Per-row scores of one query: `asmk` and `global_` `(n,)` float32, `final` as ranked;
    `candidates: (k,)` int64 ascending, the only rows scored by ASMK with a shortlist ASMK index
    (None when every row was: the inverted file, or a mode without ASMK)."""

    asmk: np.ndarray | None
    global_: np.ndarray | None
    final: np.ndarray
    candidates: np.ndarray | None = None


def score(
    loaded: Generation,
    features: ImageFeatures | None,
    settings: SearchSettings,
    self_rows: np.ndarray | None = None,
    classic: Mapping[str, np.ndarray] | None = None,
    detail: float | None = None,
) -> QueryScores:
    """Score every indexed image against a query's raw features (None for a classic mode) and
    its `classic` descriptors (those `settings.classic` names).

    `detail`: the query's fine detail (`features.detail`; None when unknown). A blurred query
    in 'fused' mode gets `settings.blurred_fuse`'s scores added (those of its `classic`
    descriptors the index stores), weighted by `blurred_weight` times `blurred_share(detail)`.

    `self_rows`: rows holding the query itself (a query by id), left out of score normalisation.

    'similar' mode scores the images' kind (`index.similar_index`), not the same object.

    With a shortlist ASMK index (`ShortlistAsmk` or its shards, millions of images), a CNN mode
    that uses ASMK ('fused', and 'asmk' alone too) takes the global index's best `candidates`
    rows (see `global_candidates`) and scores only those by ASMK: the others get an ASMK score
    of 0 and, in 'fused', the lowest candidate's global similarity; every non-candidate's final
    score (classic scores added too) is then capped just below the lowest candidate's, so that
    no row outside the candidates outranks one inside. The candidates are returned with the
    scores: the second stage's query expansion scores the same rows (`rerank.rerank`).
    """
    if settings.mode in CLASSIC_DESCRIPTORS:
        final = classic_scores(loaded, settings.mode, classic)
        return QueryScores(asmk=None, global_=None, final=final)
    if settings.mode == "rootsift":
        return QueryScores(
            asmk=None, global_=None, final=rootsift_scores(loaded, settings, classic)
        )
    if features is None:
        raise ValueError(f"mode {settings.mode!r} needs the query's CNN features")
    if settings.mode == "similar":
        first = QueryScores(None, None, similar_scores(loaded, features.global_, self_rows))
    else:
        first = _cnn_scores(loaded, features, settings, self_rows)
    final = first.final
    if settings.fuse:
        added = [
            _stretched(
                rootsift_scores(loaded, settings, classic)
                if n == "rootsift"
                else classic_scores(loaded, n, classic),
                self_rows,
            )
            for n in settings.fuse
        ]
        final = (final + settings.fuse_weight * np.mean(added, axis=0)).astype(np.float32)
    blurred = settings.blurred_weight * blurred_share(detail)
    present = [n for n in settings.blurred if n in loaded.classic and n in (classic or {})]
    if blurred > 0 and present:
        added = [_stretched(classic_scores(loaded, n, classic), self_rows) for n in present]
        final = (final + blurred * np.mean(added, axis=0)).astype(np.float32)
    if first.candidates is not None:
        final = below_candidates(final, first.candidates)
    return replace(first, final=final)


def _cnn_scores(
    loaded: Generation,
    features: ImageFeatures,
    settings: SearchSettings,
    self_rows: np.ndarray | None,
) -> QueryScores:
    """The 'fused', 'asmk' or 'global' scores of a query's CNN `features`, before any classic
    descriptor is added (see `score`)."""
    model = loaded.model
    asmk_scores = global_scores = candidates = None
    query = model.global_whitening.apply(features.global_[None].astype(np.float32))[0]
    if settings.mode in ("asmk", "fused"):
        desc = model.local_whitening.apply(np.asarray(features.local.desc, dtype=np.float32))
        code = loaded.asmk.vocabulary.encode(desc, settings.query_assignments)
        shortlist = as_shortlist(loaded.asmk)
        if shortlist is not None:
            candidates, floored = global_candidates(loaded.global_, query, shortlist.candidates)
            candidates = with_word_candidates(
                shortlist, code, candidates, loaded.global_, query, floored
            )
            global_scores = floored if settings.mode == "fused" else None
        asmk_scores = asmk_row_scores(
            loaded.asmk,
            code,
            candidates,
            alpha=settings.alpha,
            threshold=settings.similarity_threshold,
        )
    if settings.mode in ("global", "fused") and global_scores is None:
        global_scores = loaded.global_.scores(query)
    if settings.mode == "asmk":
        assert asmk_scores is not None
        final = asmk_scores
    elif settings.mode == "global":
        assert global_scores is not None
        final = global_scores
    else:
        assert asmk_scores is not None and global_scores is not None
        final = fuse(asmk_scores, global_scores, settings.global_weight, self_rows)
    return QueryScores(asmk=asmk_scores, global_=global_scores, final=final, candidates=candidates)


def similar_scores(
    loaded: Generation, raw_global: np.ndarray, self_rows: np.ndarray | None
) -> np.ndarray:
    """`(n,)` float32: every image's similarity in kind to the query whose raw global
    descriptor is `raw_global: (G,)` (`index.similar_index`); `self_rows` (the query's own)
    do not expand the query."""
    if loaded.similar is None:
        raise ValueError(
            "this index has no 'similar' vectors (a shard set, or a generation built before "
            "the mode existed): run `lookalike index` on the collection to build them"
        )
    return loaded.similar.scores(np.asarray(raw_global, np.float32), self_rows)


def asmk_row_scores(
    index: AsmkSearch,
    code: ImageCode,
    candidates: np.ndarray | None,
    *,
    alpha: float,
    threshold: float,
) -> np.ndarray:
    """`(n,)` float32 ASMK similarities of a query `code` to the rows of `index`: every row's
    when `candidates` is None (the inverted file); else, with a shortlist index, those of the
    rows `candidates: (k,)` int (`ShortlistSearch.scores`) and 0 on every other row."""
    if candidates is None:
        return index.scores(code, alpha=alpha, threshold=threshold)
    shortlist = as_shortlist(index)
    if shortlist is None:
        raise ValueError(f"an ASMK index of the {index.kind} kind scores every row, not candidates")
    out = np.zeros(index.n_images, np.float32)
    out[candidates] = shortlist.scores(
        code, alpha=alpha, threshold=threshold, candidates=candidates
    )
    return out


def global_candidates(
    global_: GlobalSearch, query: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates of a shortlist ASMK index: the `k` best rows of `global_` for the whitened
    `query: (d,)` -> (those rows `(k',)` int64, ascending; `(n,)` float32 global similarities:
    the search's on them, their lowest on every other row, as `CompressedGlobalIndex.scores`)."""
    rows, sims = global_.search(query, k)
    return np.sort(rows).astype(np.int64), floored(global_.n_images, rows, sims)


def with_word_candidates(
    shortlist: ShortlistSearch,
    code: ImageCode,
    candidates: np.ndarray,
    global_: GlobalSearch,
    query: np.ndarray,
    floored: np.ndarray,
) -> np.ndarray:
    """`candidates: (k,)` ascending, joined by the shortlist index's word candidates (the rows
    the query `code`'s fine words point at, `index.asmk_postings`; none where the index has no
    postings, or is held by shards): `(k',)` int64 ascending. The global similarity of each
    row added is written into `floored: (n,)` (the whitened `query`'s, as the global index
    scores its own candidates), in place."""
    word_rows = getattr(shortlist, "word_rows", None)
    found = np.zeros(0, np.int64) if word_rows is None else word_rows(code)
    added = np.setdiff1d(found, candidates, assume_unique=True)
    if len(added) == 0:
        return candidates
    floored[added] = global_.vectors(added) @ np.asarray(query, np.float32)
    return np.union1d(candidates, added).astype(np.int64)


def below_candidates(final: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """`final: (n,)` float32 with every row outside `candidates: (k,)` capped at the largest
    float32 below the candidates' lowest score (ties among the capped broken by row)."""
    if len(candidates) == 0 or len(candidates) == len(final):
        return final
    cap = np.nextafter(final[candidates].min(), np.float32(-np.inf))
    outside = np.ones(len(final), dtype=bool)
    outside[candidates] = False
    capped = final.copy()
    capped[outside] = np.minimum(final[outside], cap)
    return capped


def rootsift_scores(
    loaded: Generation, settings: SearchSettings, classic: Mapping[str, np.ndarray] | None
) -> np.ndarray:
    """`(n,)` float32 ASMK similarities of the query's RootSIFT features (`classic['rootsift']:
    (N, 128)`) to the collection's, through RootSIFT's own codebook and inverted file."""
    if loaded.sift is None:
        raise ValueError(
            "this index has no RootSIFT features: run `lookalike index FOLDER --sift` to add them"
        )
    if classic is None or "rootsift" not in classic:
        raise ValueError("the query has no RootSIFT features")
    desc = np.asarray(classic["rootsift"], np.float32).reshape(-1, SIFT_DIM)
    code = loaded.sift.vocabulary.encode(desc, settings.query_assignments)
    return loaded.sift.scores(code, alpha=settings.alpha, threshold=settings.similarity_threshold)


def classic_scores(
    loaded: Generation, name: str, classic: Mapping[str, np.ndarray] | None
) -> np.ndarray:
    """`(n,)` float32 inner products of the query's classic descriptor `name` with the
    collection's (Bhattacharyya coefficients of the histograms)."""
    if name not in loaded.classic:
        raise ValueError(
            f"this index stores no {name!r} descriptors: add it to the classic settings' "
            "descriptors and run `lookalike index` again"
        )
    if classic is None or name not in classic:
        raise ValueError(f"the query has no {name!r} descriptor")
    matrix = loaded.classic[name]
    query = np.asarray(classic[name], np.float32)
    if query.shape != (matrix.shape[1],):
        raise ValueError(f"{name} descriptor {query.shape} vs the index's {matrix.shape[1]}")
    return np.asarray(matrix @ query, np.float32)


def _stretched(scores: np.ndarray, self_rows: np.ndarray | None) -> np.ndarray:
    """`scores` mapped so that their median is 0 and the best (leaving out `self_rows`) is 1,
    clipped to [0, 1]: histogram similarities crowd near 1, so their raw values say little."""
    others = scores
    if self_rows is not None and len(self_rows):
        others = np.delete(scores, self_rows)
    if not len(others):
        return np.zeros_like(scores)
    middle, best = float(np.median(others)), float(others.max())
    if best <= middle:
        return np.zeros_like(scores)
    return np.clip((scores - middle) / (best - middle), 0.0, 1.0).astype(np.float32)


def fuse(
    asmk: np.ndarray,
    global_: np.ndarray,
    weight: float,
    self_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Late fusion of `(n,)` score arrays: `asmk / max(asmk) + weight * max(global, 0)`.

    ASMK scores of one query share a scale that varies from query to query (with multiple
    assignment a query's self-similarity is well below 1), so they are divided by the best
    score over the collection, leaving out `self_rows` (the query itself, when it is indexed).
    Whitened global cosines are in [-1, 1]; negative ones carry no evidence of a match.
    """
    if asmk.shape != global_.shape:
        raise ValueError(f"score arrays disagree: {asmk.shape} vs {global_.shape}")
    others = asmk
    if self_rows is not None and len(self_rows):
        others = asmk.copy()
        others[self_rows] = 0.0
    best = float(others.max()) if len(others) else 0.0
    scaled = asmk / best if best > 0 else asmk
    return (scaled + weight * np.maximum(global_, 0.0)).astype(np.float32)


def top_rows(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Rows of the `k` highest scores, best first (ties broken by row), skipping `exclude`."""
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.zeros(0, np.int64)
    if k < len(scores):
        kth = np.partition(-scores, k - 1)[k - 1]
        part = np.flatnonzero(-scores <= kth)  # every row tied with the k-th too
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))][:k]
