"""'similar' mode (the same kind of thing): the space, the neighbours, the augmentation and
the query expansion on known vectors; and the demo collection searched by kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.images import load_image
from lookalike.index.similar_index import (
    SimilarIndex,
    SimilarSpace,
    augmented,
    build_similar,
    neighbours,
    save_similar,
)
from lookalike.settings import SimilarSettings


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _kinds(seed: int = 0, kinds: int = 4, each: int = 30, dim: int = 40) -> np.ndarray:
    """`(kinds * each, dim)` raw descriptors: a large offset every image shares, one centre a
    kind, and noise (kind k is rows k*each .. (k+1)*each - 1)."""
    rng = np.random.default_rng(seed)
    shared = 5.0 * rng.normal(size=dim)
    centres = rng.normal(size=(kinds, dim))
    rows = shared + np.repeat(centres, each, axis=0) + 0.6 * rng.normal(size=(kinds * each, dim))
    return rows.astype(np.float32)


def _precision_at(scores: np.ndarray, kind: np.ndarray, query: int, k: int) -> float:
    ranked = [r for r in np.argsort(-scores, kind="stable") if r != query][:k]
    return float(np.mean(kind[ranked] == kind[query]))


def test_the_space_is_centred_projected_and_unit() -> None:
    raw = _kinds()
    space = SimilarSpace.fit(raw, dim=8)
    assert space.components.shape == (8, raw.shape[1])
    np.testing.assert_allclose(space.components @ space.components.T, np.eye(8), atol=1e-5)
    out = space.apply(raw)
    assert out.shape == (len(raw), 8) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # the offset every image shares is gone: the raw cosines say 'alike' for every pair
    raw_cos = _unit(raw) @ _unit(raw).T
    assert raw_cos.min() > 0.8
    cos = out @ out.T
    assert cos[:30, 30:].mean() < 0.2 < cos[:30, :30].mean()
    # asked for more directions than the sample has, it keeps what there is
    assert SimilarSpace.fit(raw[:5], dim=64).dim == 4


def test_neighbours_are_the_exact_nearest_others_best_first() -> None:
    x = _unit(np.random.default_rng(3).normal(size=(57, 6)).astype(np.float32))
    rows, sims = neighbours(x, 4, block=10)
    brute = x @ x.T
    np.fill_diagonal(brute, -np.inf)
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(brute, expected, axis=1), atol=1e-6)
    assert neighbours(x[:1], 4)[0].shape == (1, 0)


def test_augmentation_and_expansion_raise_precision_by_kind() -> None:
    raw = _kinds(seed=1, dim=60)
    kind = np.repeat(np.arange(4), 30)
    space = SimilarSpace.fit(raw, dim=32)
    plain = space.apply(raw)
    rows, sims = neighbours(plain, 10)
    augmented_vectors = augmented(plain, rows, sims, alpha=3.0)
    np.testing.assert_allclose(np.linalg.norm(augmented_vectors, axis=1), 1.0, atol=1e-5)
    before = np.mean([_precision_at(plain @ plain[q], kind, q, 10) for q in range(len(raw))])
    after = np.mean(
        [
            _precision_at(augmented_vectors @ augmented_vectors[q], kind, q, 10)
            for q in range(len(raw))
        ]
    )
    assert after >= before and after > 0.9, (before, after)


def test_built_in_blocks_as_in_one_and_searched_with_its_own_row_left_out(
    tmp_path: Path,
) -> None:
    raw = _kinds(seed=2)
    settings = SimilarSettings(dim=16, neighbours=5)
    blocks = [raw[:50], raw[50:51], raw[51:]]
    space, vectors = build_similar(lambda: iter(blocks), len(raw), raw.shape[1], settings)
    space_one, vectors_one = build_similar(lambda: iter([raw]), len(raw), raw.shape[1], settings)
    np.testing.assert_allclose(space.components, space_one.components, atol=1e-5)
    np.testing.assert_allclose(vectors.astype(np.float32), vectors_one, atol=2e-3)
    assert vectors.dtype == np.float16 and vectors.shape == (len(raw), 16)
    save_similar(tmp_path, space, vectors)
    index = SimilarIndex.load(tmp_path, settings)
    query = 7  # of kind 0
    scores = index.scores(raw[query], leave_out=np.array([query]))
    assert scores.shape == (len(raw),)
    kind = np.repeat(np.arange(4), 30)
    assert _precision_at(scores, kind, query, 10) == 1.0
    with pytest.raises(ValueError, match="query must be"):
        index.scores(raw[query][:5])
    nothing, empty = build_similar(lambda: iter([]), 0, raw.shape[1], settings)
    assert empty.shape[0] == 0 and nothing.apply(raw[:2]).shape == (2, 1)


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="dim"):
        SimilarSettings(dim=0)
    with pytest.raises(ValueError, match="alpha"):
        SimilarSettings(alpha=-1.0)
    assert SimilarSettings().key == "d256-k10-a3-b50000"


@pytest.mark.slow
def test_the_demo_searched_by_kind_finds_a_photographs_copies_unverified(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """Searched in 'similar' mode from its file, a demo photograph's best hits are its own
    copies (the nearest kind of thing there is in the demo), and none is verified."""
    original = sorted(set(demo.originals.values()))[1]
    copies = {c for c, o in demo.originals.items() if o == original} | {original}
    hits = demo_collection.search(load_image(demo.root / original), k=len(copies), mode="similar")
    assert all(h.inliers is None and h.verdict == "similar" for h in hits)
    found = {h.path for h in hits}
    assert len(found & copies) >= len(copies) - 1, (sorted(found), sorted(copies))
    by_id = demo_collection.search(hits[0].id, k=3, mode="similar", exclude_self=True)
    assert hits[0].id not in {h.id for h in by_id}
