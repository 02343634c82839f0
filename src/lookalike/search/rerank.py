"""Second stage: spatial verification of the shortlist, then query expansion.

Verification reads the shortlisted images' local features as stored (positions and
descriptors in the feature shards); it never decodes or re-describes a database image.
Expansion reads their stored ASMK codes and whitened global descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lookalike.features import ImageFeatures, LocalFeatures
from lookalike.index.generation import Generation, StoredImages
from lookalike.learn.whitening import l2_normalize
from lookalike.search.query import (
    QueryScores,
    asmk_row_scores,
    below_candidates,
    fuse,
    top_rows,
)
from lookalike.search.verify import Verified, inlier_bonus, mutual_nearest_many, verify_pair
from lookalike.settings import RerankSettings, SearchSettings

VerifyMemo = dict[tuple[tuple[object, ...], int], Verified]
"""Verification outcomes of one query: (generation and matching settings, row) -> outcome."""


def _memo_key(loaded: Generation, settings: RerankSettings) -> tuple[object, ...]:
    """What a row's verification outcome depends on besides the query and the row: which
    collection's generation the row is of (its number, model and the state of the images it
    was built over, so that a description searched in two collections never takes one's
    outcome for the other's row) and the matching settings."""
    s = settings
    manifest = getattr(loaded, "manifest", None)
    return (
        loaded.generation,
        loaded.model.id,
        None if manifest is None else manifest.catalog_state,
        loaded.n_images,
        s.features,
        s.match_dims,
        s.min_similarity,
        s.model,
        s.inlier_threshold,
    )


@dataclass(frozen=True)
class Reranked:
    """`final: (n,)` float32 scores after the second stage; `verified`: the outcome for each
    shortlisted row; `expanded_from`: rows whose descriptors expanded the query."""

    final: np.ndarray
    verified: dict[int, Verified]
    expanded_from: list[int]


def verify_shortlist(
    loaded: Generation,
    query: LocalFeatures,
    rows: np.ndarray,
    stored: StoredImages,
    settings: RerankSettings,
    memo: VerifyMemo | None = None,
) -> dict[int, Verified]:
    """Verify each of `rows` against the query's local features (positions in query pixels).

    Descriptors are compared over the `settings.match_dims` strongest whitened directions: on
    Holidays as many positives pass as with all of them, and the products cost half as much.

    memo: outcomes of earlier calls for the same query; rows found there are not verified
    again, and new outcomes are added (RANSAC is seeded, so an outcome never changes).

    A `stored` with a `verify(query, rows, settings)` method (the shards of
    `lookalike.scale.coordinator`) verifies the rows itself, each where its features are.
    """
    if memo is not None:
        key = _memo_key(loaded, settings)
        known = {int(r): memo[(key, int(r))] for r in rows if (key, int(r)) in memo}
        todo = np.array([r for r in rows if int(r) not in known], dtype=np.int64)
        fresh = verify_shortlist(loaded, query, todo, stored, settings) if len(todo) else {}
        memo.update({(key, row): outcome for row, outcome in fresh.items()})
        return {int(r): known[int(r)] if int(r) in known else fresh[int(r)] for r in rows}
    elsewhere = getattr(stored, "verify", None)
    if elsewhere is not None:  # images held by shards are verified where they are
        return dict(elsewhere(query, rows, settings))
    whitening = loaded.model.local_whitening
    if settings.match_dims:
        whitening = whitening.leading(settings.match_dims)
    whiten = whitening.apply
    limit = settings.features
    if len(query) == 0:
        return {int(r): Verified.none() for r in rows}
    q_desc = whiten(np.asarray(query.desc[:limit], dtype=np.float32))
    q_xy = np.asarray(query.xy[:limit], dtype=np.float32)
    images = [stored.local(int(row), limit) for row in rows]
    bounds = np.cumsum([0] + [len(image) for image in images])
    if bounds[-1] == 0:
        return {int(r): Verified.none() for r in rows}
    # one whitening product for the whole shortlist
    descs = whiten(np.concatenate([np.asarray(image.desc, np.float32) for image in images]))
    per_image = [descs[bounds[i] : bounds[i + 1]] for i in range(len(images))]
    matches = mutual_nearest_many(q_desc, per_image, settings.min_similarity)
    return {
        int(row): verify_pair(q_xy, np.asarray(image.xy), pairs, stored.side(int(row)), settings)
        for row, image, pairs in zip(rows, images, matches, strict=True)
    }


def rerank(
    loaded: Generation,
    query: ImageFeatures,
    first: QueryScores,
    stored: StoredImages,
    search: SearchSettings,
    settings: RerankSettings,
    self_rows: np.ndarray | None = None,
    memo: VerifyMemo | None = None,
    dropped: np.ndarray | None = None,
) -> Reranked:
    """Verify the top `settings.verify` rows of `first` (leaving out `dropped`, the rows the
    search will not list), add the inlier bonus, and (with `settings.expand`) expand the query
    with the best verified images and score again.

    Scores are first scaled so that the best first-stage score (leaving out `self_rows`) is 1;
    a verified image then gains up to `settings.weight`. `memo`: see `verify_shortlist`.
    """
    shortlist = top_rows(first.final, settings.verify, dropped)
    verified = verify_shortlist(loaded, query.local, shortlist, stored, settings, memo)
    inliers = np.array([verified[int(r)].inliers for r in shortlist], dtype=np.int64)
    bonus = inlier_bonus(inliers, settings)

    def with_bonus(scores: np.ndarray) -> np.ndarray:
        out = _scaled(scores, self_rows)
        out[shortlist] += bonus
        return out

    final = with_bonus(first.final)
    expanded_from: list[int] = []
    if settings.expand:
        excluded = set() if self_rows is None else {int(r) for r in self_rows}
        # the verified rows, best first: a dropped row can outscore them but was not verified
        by_score = sorted((int(r) for r in shortlist), key=lambda r: (-final[r], r))
        good = [
            r for r in by_score if verified[r].inliers >= settings.min_inliers and r not in excluded
        ]
        expanded_from = good[: settings.expand_top]
        if expanded_from:
            final = with_bonus(
                _expanded_scores(
                    loaded, query, first, stored, search, settings, expanded_from, self_rows
                )
            )
    return Reranked(final=final, verified=verified, expanded_from=expanded_from)


def _expanded_scores(
    loaded: Generation,
    query: ImageFeatures,
    first: QueryScores,
    stored: StoredImages,
    search: SearchSettings,
    settings: RerankSettings,
    rows: list[int],
    self_rows: np.ndarray | None,
) -> np.ndarray:
    """First-stage scores of the query expanded by `rows`: alpha-QE of the whitened global
    descriptor, and the mean of the (scaled) ASMK scores of the query and of each row.

    With a shortlist ASMK index the first stage scored only its candidates (`first.candidates`,
    the global index's best rows for the query): each row's code is scored on those same rows
    (0 elsewhere, as the query's), so expansion reads as many codes per row as the first stage
    does, and every other row's score is capped below the candidates' again, as in the first
    stage: expansion reorders the candidates, no row outside them outranks one inside. With the
    inverted file every row is scored, as in the first stage."""
    asmk = global_ = None
    if first.global_ is not None:
        q = loaded.model.global_whitening.apply(query.global_[None].astype(np.float32))[0]
        neighbours = loaded.global_.vectors(np.asarray(rows))
        weights = np.maximum(neighbours @ q, 0.0) ** settings.expand_alpha
        expanded = l2_normalize((q + weights @ neighbours)[None])[0]
        global_ = loaded.global_.scores(expanded)
    if first.asmk is not None:
        parts = [np.minimum(_scaled(first.asmk, self_rows), 1.0)]
        for row in rows:
            scores = asmk_row_scores(
                loaded.asmk,
                stored.code(row),
                first.candidates,
                alpha=search.alpha,
                threshold=search.similarity_threshold,
            )
            own = np.array([row], np.int64)
            leave_out = own if self_rows is None else np.concatenate([own, self_rows])
            parts.append(np.minimum(_scaled(scores, leave_out), 1.0))
        asmk = np.mean(parts, axis=0).astype(np.float32)
    if asmk is not None and global_ is not None:
        result = fuse(asmk, global_, search.global_weight, self_rows)
    elif asmk is not None:
        result = asmk
    else:
        assert global_ is not None
        result = global_
    if first.candidates is not None:
        result = below_candidates(result, first.candidates)
    return result


def _scaled(scores: np.ndarray, leave_out: np.ndarray | None) -> np.ndarray:
    """`scores` divided by the best of them outside `leave_out` (unchanged if that is <= 0)."""
    others = scores
    if leave_out is not None and len(leave_out):
        others = scores.copy()
        others[leave_out] = -np.inf
    best = float(others.max()) if len(others) else 0.0
    out = scores.astype(np.float32, copy=True)
    if np.isfinite(best) and best > 0:
        out /= best
    return out
