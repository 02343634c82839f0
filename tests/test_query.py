"""Score fusion and ranking on hand-built arrays, settings, and the global index vs brute force."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.index.global_index import GlobalIndex
from lookalike.search.query import fuse, top_rows
from lookalike.settings import (
    DEFAULT_K,
    PRESETS,
    FeatureSettings,
    LearnSettings,
    RerankSettings,
    SearchOptions,
    SearchSettings,
    Settings,
    from_dict,
)

# --- fuse: asmk / max(asmk, leaving out self_rows) + weight * max(global, 0) -----------------
# Dyadic values, so the expected results are exact in float32.
ASMK = np.array([0.25, 0.5, 1.0, 0.0], np.float32)
GLOBAL = np.array([0.5, -0.25, 0.125, 1.0], np.float32)


def test_fuse_exact_values() -> None:
    fused = fuse(ASMK, GLOBAL, 0.5)
    assert fused.dtype == np.float32
    np.testing.assert_array_equal(fused, [0.5, 0.5, 1.0625, 0.5])


def test_fuse_leaves_self_rows_out_of_normalisation() -> None:
    fused = fuse(ASMK, GLOBAL, 0.5, self_rows=np.array([2]))
    np.testing.assert_array_equal(fused, [0.75, 1.0, 2.0625, 0.5])
    # An empty self_rows is the same as none.
    np.testing.assert_array_equal(
        fuse(ASMK, GLOBAL, 0.5, np.zeros(0, np.int64)), fuse(ASMK, GLOBAL, 0.5)
    )
    # The inputs are not modified.
    np.testing.assert_array_equal(ASMK, [0.25, 0.5, 1.0, 0.0])


def test_fuse_weight() -> None:
    np.testing.assert_array_equal(fuse(ASMK, GLOBAL, 0.0), [0.25, 0.5, 1.0, 0.0])
    np.testing.assert_array_equal(fuse(ASMK, GLOBAL, 2.0), [1.25, 0.5, 1.25, 2.0])


def test_fuse_all_zero_asmk_is_global_only() -> None:
    zeros = np.zeros(4, np.float32)
    np.testing.assert_array_equal(fuse(zeros, GLOBAL, 0.5), [0.25, 0.0, 0.0625, 0.5])
    # Only the query itself matches: nothing else to normalise by, so scores are left as they are.
    only_self = np.array([0.0, 0.0, 3.0, 0.0], np.float32)
    np.testing.assert_array_equal(
        fuse(only_self, GLOBAL, 0.5, self_rows=np.array([2])), [0.25, 0.0, 3.0625, 0.5]
    )


def test_fuse_empty_and_mismatched() -> None:
    empty = np.zeros(0, np.float32)
    assert fuse(empty, empty, 0.5).shape == (0,)
    with pytest.raises(ValueError, match="disagree"):
        fuse(ASMK, GLOBAL[:3], 0.5)


# --- top_rows ----------------------------------------------------------------------------------


def brute_top(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Best first, ties by row, excluded and -inf rows left out (the documented order)."""
    keep = np.isfinite(scores)
    if exclude is not None:
        keep[exclude] = False
    rows = np.flatnonzero(keep)
    return rows[np.lexsort((rows, -scores[rows]))][:k]


def test_top_rows_exact() -> None:
    # Ties inside the selection are ordered by row (ties across the k-th score: below).
    scores = np.array([0.5, 0.9, 0.3, 0.1, 0.9], np.float32)
    original = scores.copy()
    np.testing.assert_array_equal(top_rows(scores, 3), [1, 4, 0])
    np.testing.assert_array_equal(top_rows(scores, 2), [1, 4])
    np.testing.assert_array_equal(top_rows(scores, 5), [1, 4, 0, 2, 3])
    np.testing.assert_array_equal(top_rows(scores, 2, exclude=np.array([1])), [4, 0])
    np.testing.assert_array_equal(top_rows(scores, 5, exclude=np.array([4, 0])), [1, 2, 3])
    np.testing.assert_array_equal(top_rows(scores, 3, exclude=np.zeros(0, np.int64)), [1, 4, 0])
    np.testing.assert_array_equal(scores, original)  # not modified
    # All rows returned (no partition needed): full order with ties by row.
    np.testing.assert_array_equal(top_rows(np.array([0.5, 0.9, 0.5, 0.9]), 4), [1, 3, 0, 2])


def test_top_rows_k_larger_than_n_and_zero() -> None:
    scores = np.array([0.2, 0.7, 0.4], np.float32)
    np.testing.assert_array_equal(top_rows(scores, 100), [1, 2, 0])
    assert top_rows(scores, 0).shape == (0,)
    assert top_rows(np.zeros(0, np.float32), 5).shape == (0,)
    assert top_rows(scores, 3, exclude=np.arange(3)).dtype == np.int64


def test_top_rows_drops_minus_inf() -> None:
    scores = np.array([-np.inf, 0.2, -np.inf, 0.3], np.float32)
    np.testing.assert_array_equal(top_rows(scores, 5), [3, 1])
    np.testing.assert_array_equal(top_rows(scores, 1), [3])
    assert top_rows(np.full(3, -np.inf), 2).shape == (0,)


def test_top_rows_matches_brute_force_without_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 300))
        scores = rng.standard_normal(n).astype(np.float32)
        scores[rng.random(n) < 0.1] = -np.inf
        exclude = rng.choice(n, int(rng.integers(0, n + 1)), replace=False)
        k = int(rng.integers(0, n + 5))
        np.testing.assert_array_equal(top_rows(scores, k, exclude), brute_top(scores, k, exclude))


def test_top_rows_breaks_ties_at_the_cut_by_row() -> None:
    # Smallest case: the two best tie and k = 1 -> row 2, not row 3.
    np.testing.assert_array_equal(top_rows(np.array([0.0, 0.0, 1.0, 1.0]), 1), [2])
    np.testing.assert_array_equal(top_rows(np.array([0.5, 0.9, 0.5, 0.1, 0.9]), 3), [1, 4, 0])
    # Typical in ASMK mode: most rows score exactly 0 and k reaches into them.
    rng = np.random.default_rng(1)
    scores = np.zeros(500, np.float32)
    scores[rng.choice(500, 3, replace=False)] = [0.9, 0.5, 0.2]
    np.testing.assert_array_equal(top_rows(scores, 10), brute_top(scores, 10))


# --- settings ----------------------------------------------------------------------------------


def test_from_dict_unknown_key_names_allowed() -> None:
    with pytest.raises(ValueError, match="bogus") as info:
        from_dict(SearchSettings, {"mode": "asmk", "bogus": 1})
    message = str(info.value)
    assert "SearchSettings" in message
    for name in ("alpha", "global_weight", "mode", "query_assignments", "fuse"):
        assert name in message


def test_search_options_go_onto_the_stored_settings() -> None:
    stored = Settings(
        search=SearchSettings(mode="global", fuse=("colour",)), rerank=RerankSettings(verify=30)
    )
    kept = SearchOptions().apply(stored)  # nothing given: the index's settings, k's default
    assert (kept.k, kept.search, kept.rerank) == (DEFAULT_K, stored.search, stored.rerank)
    given = SearchOptions(k=5, mode="asmk", fuse=(), verify=0, expand=True, retry=False)
    resolved = given.apply(stored)
    assert (resolved.k, resolved.search.mode, resolved.search.fuse) == (5, "asmk", ())
    assert (resolved.rerank.verify, resolved.rerank.expand, resolved.rerank.retry) == (
        0,
        True,
        False,
    )
    assert resolved.search.alpha == stored.search.alpha  # what is not given stays
    # a stored fusion does not fit a classic mode asked for: said when applied
    with pytest.raises(ValueError, match="CNN mode"):
        SearchOptions(mode="texture").apply(stored)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "nope"}, "allowed: fused, asmk, global"),
        ({"verify": -1}, "verify must be 0"),
        ({"k": 0}, "k must be at least 1"),
        ({"fuse": ("bogus",)}, "cannot fuse 'bogus'"),
        ({"mode": "colour", "fuse": ("texture",)}, "CNN mode"),
    ],
)
def test_search_options_are_checked_before_any_work(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchOptions(**options)


def test_settings_stored_by_older_versions_load() -> None:
    """The verify count was `rerank.shortlist`, and `search.shortlist` was never read."""
    values = Settings().as_dict()
    values["search"]["shortlist"] = 1000
    del values["rerank"]["verify"]
    values["rerank"]["shortlist"] = 40
    settings = Settings.from_dict(values)
    assert settings.rerank.verify == 40 and settings.search == SearchSettings()


def test_from_dict_builds_and_converts_lists() -> None:
    settings = from_dict(FeatureSettings, {"scales": [1.0, 0.5], "image_size": 448})
    assert settings == FeatureSettings(scales=(1.0, 0.5), image_size=448)
    assert from_dict(LearnSettings, {}) == LearnSettings()


def test_settings_unknown_section_names_allowed() -> None:
    with pytest.raises(ValueError, match="nope") as info:
        Settings.from_dict({"nope": {}})
    for name in ("features", "learn", "search"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="allowed"):
        Settings.from_dict({"search": {"alpah": 3.0}})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_settings_round_trip(name: str) -> None:
    settings = PRESETS[name]
    assert Settings.from_dict(settings.as_dict()) == settings
    # Through JSON, as stored in an index folder (tuples come back as lists).
    assert Settings.from_dict(json.loads(json.dumps(settings.as_dict()))) == settings


def test_settings_partial_sections_take_defaults() -> None:
    settings = Settings.from_dict({"search": {"mode": "global"}})
    assert settings.search == SearchSettings(mode="global")
    assert settings.features == FeatureSettings() and settings.learn == LearnSettings()


def test_invalid_settings_raise() -> None:
    with pytest.raises(ValueError, match=r"'x'.*allowed.*fused.*asmk.*global.*colour"):
        SearchSettings(mode="x")
    with pytest.raises(ValueError, match="scales"):
        FeatureSettings(scales=())
    with pytest.raises(ValueError, match="scales"):
        FeatureSettings(scales=(1.0, 0.0))
    with pytest.raises(ValueError, match="image_size"):
        FeatureSettings(image_size=16)
    with pytest.raises(ValueError, match="max_features"):
        FeatureSettings(max_features=0)


def test_feature_settings_key_and_decode_size() -> None:
    assert FeatureSettings().key == "lite0-s16-head-r566-n1000"
    custom = FeatureSettings(local_layer="s8", image_size=448, max_features=500, scales=(1.5, 1))
    assert custom.key == "lite0-s8-head-r448-n500"
    assert custom.decode_size == 672
    assert FeatureSettings(backbone="efficientnet_lite2").key.startswith("lite2-")


# --- GlobalIndex vs brute-force dot products -------------------------------------------------
# FAISS IndexFlatIP is exact up to float32 rounding: similarities agree within 1e-5.


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_rows(np.random.default_rng(3), 200, 32)


def test_global_search_matches_brute_force(vectors: np.ndarray) -> None:
    index = GlobalIndex.build(vectors)
    assert index.n_images == 200
    for query in unit_rows(np.random.default_rng(4), 10, 32):
        sims = vectors.astype(np.float64) @ query
        expected = np.argsort(-sims, kind="stable")[:10]
        rows, got = index.search(query, 10)
        assert rows.dtype == np.int64 and got.dtype == np.float32
        np.testing.assert_array_equal(rows, expected)
        np.testing.assert_allclose(got, sims[expected], atol=1e-5)
        np.testing.assert_allclose(index.scores(query), sims, atol=1e-5)


def test_global_search_k_beyond_n(vectors: np.ndarray) -> None:
    index = GlobalIndex.build(vectors[:5])
    rows, sims = index.search(vectors[0], 50)
    assert sorted(rows.tolist()) == [0, 1, 2, 3, 4]
    assert rows[0] == 0 and sims[0] == pytest.approx(1.0, abs=1e-6)
    assert index.search(vectors[0], 0)[0].shape == (0,)


def test_global_empty_index() -> None:
    index = GlobalIndex.build(np.zeros((0, 8), np.float32))
    assert index.n_images == 0
    rows, sims = index.search(np.ones(8, np.float32), 3)
    assert rows.shape == (0,) and sims.shape == (0,)
    assert index.scores(np.ones(8, np.float32)).shape == (0,)


def test_global_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        GlobalIndex.build(np.zeros(8, np.float32))


def test_global_save_load_round_trip(vectors: np.ndarray, tmp_path: Path) -> None:
    index = GlobalIndex.build(vectors)
    folder = tmp_path / "índex, global"
    folder.mkdir()
    index.save(folder / "global v1.faiss")
    loaded = GlobalIndex.load(folder / "global v1.faiss")
    assert loaded.n_images == 200
    for query in unit_rows(np.random.default_rng(5), 5, 32):
        np.testing.assert_array_equal(loaded.scores(query), index.scores(query))
        for a, b in zip(loaded.search(query, 7), index.search(query, 7), strict=True):
            np.testing.assert_array_equal(a, b)


def test_fuse_settings_name_classic_descriptors_for_cnn_modes() -> None:
    assert SearchSettings(fuse=("colour", "shape")).classic == ("colour", "shape")
    assert SearchSettings(mode="texture").classic == ("texture",)
    with pytest.raises(ValueError, match="cannot fuse 'sift'"):
        SearchSettings(fuse=("sift",))
    with pytest.raises(ValueError, match="CNN mode"):
        SearchSettings(mode="colour", fuse=("texture",))
    with pytest.raises(ValueError, match="fuse_weight"):
        SearchSettings(fuse=("colour",), fuse_weight=-1.0)


def test_stretched_scores_put_the_median_at_0_and_the_best_other_at_1() -> None:
    from lookalike.search.query import _stretched

    scores = np.array([0.99, 0.5, 0.6, 0.7, 0.9, 0.2], np.float32)  # row 0 is the query
    out = _stretched(scores, np.array([0]))
    others = np.delete(scores, 0)
    middle = np.median(others)
    np.testing.assert_allclose(out[1:], np.clip((others - middle) / (0.9 - middle), 0, 1))
    assert out[0] == 1.0 and out[4] == 1.0 and out[5] == 0.0
    assert not _stretched(np.full(4, 0.5, np.float32), None).any()  # nothing stands out
