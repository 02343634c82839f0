"""Whitening and codebook fitting on seeded synthetic data, checked against numpy."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lookalike.learn.codebook import MIN_POINTS_PER_CENTROID, fit_codebook
from lookalike.learn.whitening import Whitening, fit_whitening, l2_normalize

# Projected covariance is identity up to float32 rounding of the stored mean and projection.
COV_TOL = 1e-3


def correlated_gaussian(n: int, d: int, seed: int) -> np.ndarray:
    """`(n, d)` float32 samples with an offset mean and a strongly anisotropic covariance."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) * np.geomspace(10.0, 0.1, d)[:, None]
    return (rng.standard_normal((n, d)) @ mixing + rng.normal(3.0, 1.0, d)).astype(np.float32)


def projected(w: Whitening, x: np.ndarray) -> np.ndarray:
    """The whitened data before L2 normalisation, in float64."""
    return (x.astype(np.float64) - w.mean) @ w.projection.astype(np.float64)


def covariance(y: np.ndarray) -> np.ndarray:
    centred = y - y.mean(axis=0)
    return centred.T @ centred / len(y)


def test_whitening_gives_identity_covariance() -> None:
    x = correlated_gaussian(4000, 16, seed=0)
    w = fit_whitening(x, 16)
    assert (w.input_dim, w.output_dim) == (16, 16)
    assert w.mean.dtype == np.float32 and w.projection.dtype == np.float32
    np.testing.assert_allclose(w.mean, x.astype(np.float64).mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(covariance(projected(w, x)), np.eye(16), atol=COV_TOL)


def test_whitening_keeps_strongest_directions() -> None:
    x = correlated_gaussian(4000, 16, seed=1)
    w = fit_whitening(x, 5)
    assert w.output_dim == 5
    np.testing.assert_allclose(covariance(projected(w, x)), np.eye(5), atol=COV_TOL)
    # The projection spans the top-5 eigenvectors of the data covariance (brute force eigh).
    eigval, eigvec = np.linalg.eigh(covariance(x.astype(np.float64)))
    top = eigvec[:, np.argsort(eigval)[::-1][:5]]
    basis, _ = np.linalg.qr(w.projection.astype(np.float64))
    np.testing.assert_allclose(top @ (top.T @ basis), basis, atol=1e-4)


def test_leading_directions_are_the_strongest_of_a_full_whitening() -> None:
    x = correlated_gaussian(4000, 16, seed=1)
    full, five = fit_whitening(x, 16), fit_whitening(x, 5)
    leading = full.leading(5)
    assert leading.output_dim == 5 and full.leading(99).output_dim == 16
    # the same subspace as fitting 5 directions outright (up to signs)
    np.testing.assert_allclose(np.abs(leading.apply(x[:50])), np.abs(five.apply(x[:50])), atol=1e-4)
    with pytest.raises(ValueError, match="positive"):
        full.leading(0)


def test_whitening_shrinkage_softens_weak_directions() -> None:
    x = correlated_gaussian(4000, 8, seed=2)
    w = fit_whitening(x, 8, shrinkage=0.5)
    eigval = np.sort(np.linalg.eigvalsh(covariance(x.astype(np.float64))))[::-1]
    expected = eigval / (eigval + 0.5 * eigval.mean())
    got = np.diag(covariance(projected(w, x)))
    np.testing.assert_allclose(got, expected, rtol=1e-3)


@pytest.mark.parametrize(
    ("n", "d", "dim", "expected"),
    [(5, 16, 16, 4), (100, 6, 10, 6), (2, 3, 3, 1), (50, 8, 0, 1)],
    ids=["capped-by-N-1", "capped-by-D", "two-points", "at-least-one"],
)
def test_whitening_dim_capped_by_rank(n: int, d: int, dim: int, expected: int) -> None:
    x = correlated_gaussian(n, d, seed=3)
    w = fit_whitening(x, dim)
    assert w.output_dim == expected
    assert np.isfinite(w.projection).all()


@pytest.mark.parametrize("shape", [(10,), (1, 4), (0, 4), (2, 3, 4)])
def test_fit_whitening_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="N >= 2"):
        fit_whitening(np.zeros(shape, np.float32), 2)


def test_whitening_checks_its_own_shapes() -> None:
    with pytest.raises(ValueError, match="disagree"):
        Whitening(mean=np.zeros(3, np.float32), projection=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="disagree"):
        Whitening(mean=np.zeros((3, 1), np.float32), projection=np.zeros((3, 2), np.float32))
    w = fit_whitening(correlated_gaussian(50, 4, seed=4), 2)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        w.apply(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        w.apply(np.zeros(4, np.float32))


def test_apply_is_normalised_projection() -> None:
    x = correlated_gaussian(500, 12, seed=5)
    w = fit_whitening(x, 6)
    y = w.apply(x)
    assert y.shape == (500, 6) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    expected = projected(w, x)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_l2_normalize_leaves_zero_rows_zero() -> None:
    y = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    assert y.dtype == np.float32


# --- codebook ----------------------------------------------------------------------------------


def separated_clusters(k: int, per: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`k` true centres ~ N(0, 25 I) (pairwise distances ~ 28) and `per` points each, sigma 0.1."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * 5.0
    points = centres[:, None] + 0.1 * rng.standard_normal((k, per, d))
    return centres, points.reshape(-1, d).astype(np.float32)


def test_codebook_recovers_two_separated_clusters() -> None:
    """With two well-separated clusters Lloyd's k-means converges to the true centres from any
    initialisation, so this holds for every seed, not a lucky one."""
    for seed in range(5):
        centres, x = separated_clusters(2, 100, 16, seed)
        codebook = fit_codebook(x, 2, seed=seed)
        assert codebook.shape == (2, 16) and codebook.dtype == np.float32
        nearest = np.linalg.norm(centres[:, None] - codebook[None], axis=-1).min(axis=1)
        # Error of a mean of 100 points with sigma 0.1 in 16-D: about 0.04.
        assert nearest.max() < 0.1


def test_codebook_is_a_kmeans_fixed_point() -> None:
    """With 8 clusters k-means may settle in a local optimum (FAISS uses one random
    initialisation), but every centroid is the mean of the points nearest to it (brute force)."""
    centres, x = separated_clusters(8, 100, 16, seed=1)
    codebook = fit_codebook(x, 8, iterations=25, seed=0)
    assert codebook.shape == (8, 16)
    d2 = ((x[:, None, :].astype(np.float64) - codebook[None]) ** 2).sum(-1)
    nearest = d2.argmin(axis=1)
    for j in range(len(codebook)):
        members = x[nearest == j]
        assert len(members) > 0
        np.testing.assert_allclose(codebook[j], members.mean(axis=0), atol=1e-3)
    # No true cluster is torn apart: its points all go to centroids within 1.0 of its centre
    # or to one centroid shared with other clusters (a merged cell), never to a stray one.
    for c in range(8):
        cells = np.unique(nearest[c * 100 : (c + 1) * 100])
        near = np.linalg.norm(codebook[cells] - centres[c], axis=1) < 1.0
        assert near.all() or len(cells) == 1


def test_codebook_size_reduced_for_few_points(caplog: pytest.LogCaptureFixture) -> None:
    _, x = separated_clusters(4, 100, 8, seed=2)  # 400 points -> at most 400 // 39 = 10 words
    with caplog.at_level(logging.INFO, logger="lookalike"):
        codebook = fit_codebook(x, 64)
    assert len(x) // MIN_POINTS_PER_CENTROID == 10
    assert codebook.shape == (10, 8)
    assert "10 words" in caplog.text


def test_codebook_not_reduced_with_enough_points() -> None:
    _, x = separated_clusters(4, 100, 8, seed=3)
    assert fit_codebook(x, 6).shape == (6, 8)


def test_codebook_minimum_points() -> None:
    _, x = separated_clusters(2, 39, 4, seed=4)  # 78 points -> k = 2, the minimum
    assert fit_codebook(x, 16).shape == (2, 4)
    with pytest.raises(ValueError, match="too few descriptors \\(77\\)"):
        fit_codebook(x[:77], 16)
    with pytest.raises(ValueError, match="too few"):
        fit_codebook(x, 1)


def test_codebook_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        fit_codebook(np.zeros(1000, np.float32), 4)
