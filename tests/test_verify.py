"""Spatial verification and region queries: RANSAC on synthetic correspondences with known
answers, mutual nearest neighbours against brute force, and region cropping under EXIF
rotation and resizing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lookalike.images import source_size
from lookalike.search.region import clip_region, parse_region, query_pixels
from lookalike.search.verify import (
    Verified,
    fit_model,
    inlier_bonus,
    mutual_nearest,
    mutual_nearest_many,
)
from lookalike.settings import RerankSettings


def _correspondences(
    matrix: np.ndarray, n_in: int, n_out: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n_in` points mapped by `matrix` (with 0.5 px noise) and `n_out` random outliers, shuffled;
    returns (src, dst, is_inlier)."""
    rng = np.random.default_rng(seed)
    src = rng.uniform([0, 0], [1000, 800], size=(n_in + n_out, 2)).astype(np.float32)
    dst = cv2.perspectiveTransform(src[None].astype(np.float64), matrix)[0]
    dst[:n_in] += rng.normal(0, 0.5, size=(n_in, 2))
    dst[n_in:] = rng.uniform([0, 0], [1000, 800], size=(n_out, 2))
    truth = np.arange(n_in + n_out) < n_in
    order = rng.permutation(n_in + n_out)
    return src[order], dst[order].astype(np.float32), truth[order]


def _max_error(found: np.ndarray, truth: np.ndarray) -> float:
    grid = np.stack(np.meshgrid(np.linspace(0, 1000, 6), np.linspace(0, 800, 5)), -1)
    points = grid.reshape(1, -1, 2).astype(np.float64)
    a = cv2.perspectiveTransform(points, found)[0]
    b = cv2.perspectiveTransform(points, truth)[0]
    return float(np.abs(a - b).max())


HOMOGRAPHY = np.array(
    [[0.9, -0.15, 60.0], [0.12, 0.95, -30.0], [1.2e-4, -0.8e-4, 1.0]], dtype=np.float64
)
AFFINE = np.array([[0.0, -0.7, 700.0], [0.7, 0.0, 50.0], [0.0, 0.0, 1.0]])  # 90 deg, 0.7x


@pytest.mark.parametrize(("model", "truth"), [("homography", HOMOGRAPHY), ("affine", AFFINE)])
def test_ransac_recovers_a_known_transform_among_outliers(model: str, truth: np.ndarray) -> None:
    src, dst, is_inlier = _correspondences(truth, n_in=60, n_out=60)
    found = fit_model(src, dst, threshold=3.0, model=model)
    assert found.matrix is not None
    assert _max_error(found.matrix, truth) < 3.0
    # every true inlier is found, and at most a couple of outliers happen to fit
    assert 60 <= found.inliers <= 63
    assert found.query_xy.shape == (found.inliers, 2)
    residual = cv2.perspectiveTransform(found.query_xy[None].astype(np.float64), truth)[0]
    assert np.abs(residual - found.image_xy).max() < 3.0 * 2
    assert is_inlier.sum() == 60


def test_too_few_or_random_correspondences_give_no_model() -> None:
    src, dst, _ = _correspondences(AFFINE, n_in=3, n_out=0)
    assert fit_model(src, dst, 3.0).inliers == 0
    rng = np.random.default_rng(1)
    noise = rng.uniform(0, 1000, size=(2, 40, 2)).astype(np.float32)
    assert fit_model(noise[0], noise[1], 3.0).inliers < 8  # chance agreement stays small


def test_a_mirror_image_is_not_a_match() -> None:
    flip = np.array([[-1.0, 0, 1000], [0, 1, 0], [0, 0, 1]])
    src, dst, _ = _correspondences(flip, n_in=40, n_out=0)
    assert fit_model(src, dst, 3.0).matrix is None


def test_unknown_model_names_the_allowed() -> None:
    with pytest.raises(ValueError, match="affine"):
        fit_model(np.zeros((10, 2), np.float32), np.zeros((10, 2), np.float32), 3.0, "similarity")


def brute_mutual_nearest(q: np.ndarray, d: np.ndarray, min_similarity: float) -> list:
    """Mutual nearest neighbours the slow, obvious way: a list of (i, j)."""
    expected = []
    for i in range(len(q)):
        j = int(np.argmax([q[i] @ d[m] for m in range(len(d))]))
        back = int(np.argmax([q[n] @ d[j] for n in range(len(q))]))
        if back == i and q[i] @ d[j] >= min_similarity:
            expected.append((i, j))
    return expected


def test_mutual_nearest_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(2)
    q = rng.normal(size=(70, 16)).astype(np.float32)
    d = np.concatenate([q[:30] + rng.normal(0, 0.2, size=(30, 16)), rng.normal(size=(50, 16))])
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    pairs = mutual_nearest(q, d, min_similarity=0.5)
    expected = brute_mutual_nearest(q, d, 0.5)
    assert [tuple(p) for p in pairs.tolist()] == expected
    assert {(i, i) for i in range(30)} <= set(expected)  # the perturbed copies match


def test_shortlist_matching_handles_empty_and_uneven_images() -> None:
    rng = np.random.default_rng(3)

    def unit(n: int) -> np.ndarray:
        x = rng.normal(size=(n, 24)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q = unit(90)
    images = [unit(n) for n in (40, 0, 120, 7, 90)]
    images[2][:30] = q[10:40] + 0.05 * unit(30)  # some true partners
    images[2] /= np.linalg.norm(images[2], axis=1, keepdims=True)
    matched = mutual_nearest_many(q, images, 0.2)
    for d, pairs in zip(images, matched, strict=True):
        assert pairs.shape[1] == 2 and pairs.dtype == np.int64
        if len(d):
            assert [tuple(p) for p in pairs.tolist()] == brute_mutual_nearest(q, d, 0.2)
    assert len(matched[2]) >= 30 and len(matched[1]) == 0
    assert all(len(p) == 0 for p in mutual_nearest_many(q[:0], images, 0.2))


def test_map_box_follows_the_model() -> None:
    match = Verified(0, AFFINE, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
    corners = match.map_box((0, 0, 100, 50))
    assert corners is not None
    np.testing.assert_allclose(corners, [[700, 50], [700, 120], [665, 120], [665, 50]], atol=1e-4)
    assert Verified.none().map_box((0, 0, 1, 1)) is None


def test_inlier_bonus_starts_at_the_minimum_and_saturates() -> None:
    s = RerankSettings(min_inliers=6, saturation=30, weight=1.0)
    bonus = inlier_bonus(np.array([0, 5, 6, 18, 30, 300]), s)
    assert bonus[0] == bonus[1] == 0
    assert 0 < bonus[2] < bonus[3] < bonus[4] == bonus[5] == pytest.approx(1.0)


# --------------------------------------------------------------------------- regions


def test_parse_and_clip_regions() -> None:
    assert parse_region("10, 20,30.5,40") == (10.0, 20.0, 30.5, 40.0)
    for bad in ("1,2,3", "a,b,c,d", ""):
        with pytest.raises(ValueError, match="x,y,w,h"):
            parse_region(bad)
    for bad in ("0,0,0,5", "0,0,5,-1", "nan,0,5,5", "0,inf,5,5"):
        with pytest.raises(ValueError, match="finite numbers with a positive size"):
            parse_region(bad)
    # reaching past an edge, left and top as right and bottom, is clipped with the image's size
    assert parse_region("-10,5,50,500") == (-10.0, 5.0, 50.0, 500.0)
    assert clip_region((-10, 5, 50, 500), (100, 80)) == (0.0, 5.0, 40.0, 75.0)
    with pytest.raises(ValueError, match="outside"):
        clip_region((200, 0, 10, 10), (100, 80))
    with pytest.raises(ValueError, match="positive"):
        clip_region((0, 0, 0, 10), (100, 80))


def _target_picture() -> np.ndarray:
    """A 900x600 grey picture with a red block at x 600..750, y 100..220."""
    picture = np.full((600, 900, 3), 128, np.uint8)
    picture[100:220, 600:750] = (220, 20, 20)
    return picture


@pytest.mark.parametrize("orientation", [1, 6, 8, 3])
@pytest.mark.parametrize("decode_size", [1000, 200])
def test_region_crop_maps_coordinates_under_exif_rotation_and_resizing(
    tmp_path: Path, orientation: int, decode_size: int
) -> None:
    """The box is given in upright original pixels; whatever the stored orientation and the
    decoding size, the cut-out shows the red block, and its pixels map back onto it."""
    upright = _target_picture()
    stored = Image.fromarray(upright)
    rotate = {1: None, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    rotate[3] = Image.Transpose.ROTATE_180
    if rotate[orientation] is not None:
        stored = stored.transpose(rotate[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    stored.save(path, exif=exif)

    size = source_size(path)
    assert size == (900, 600)
    box = (600.0, 100.0, 150.0, 120.0)
    pixels = query_pixels(path, size, decode_size, box)
    crop = pixels.image.astype(int)
    assert max(crop.shape[:2]) <= max(decode_size, 150) + 1
    red = (crop[..., 0] > 180) & (crop[..., 1] < 80)
    assert red.mean() > 0.9  # the cut-out is the block (a resampled edge at most)
    h, w = crop.shape[:2]
    corners = pixels.to_query(np.array([[0, 0], [w, h]], np.float32))
    tolerance = 1.5 * pixels.factor + 1
    np.testing.assert_allclose(corners, [[600, 100], [750, 220]], atol=tolerance)
    whole = query_pixels(path, size, decode_size, None)
    assert whole.origin == (0.0, 0.0)
    assert max(whole.image.shape[:2]) == min(decode_size, 900)
    np.testing.assert_allclose(whole.to_query(np.array([[whole.image.shape[1], 0]])), [[900, 0]])
