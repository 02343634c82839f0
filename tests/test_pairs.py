"""Training pairs: the known homography lands points of view A on the same content in B."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from lookalike.learn.pairs import PairSettings, make_pair, transform_points, warp

NEUTRAL = PairSettings(
    brightness=0.0,
    contrast=0.0,
    gamma_range=(1.0, 1.0),
    saturation=0.0,
    max_blur_sigma=0.0,
    max_noise_std=0.0,
    jpeg_quality=(100, 101),
)


def _inside(points: np.ndarray, size: int, margin: float) -> np.ndarray:
    return np.all((points >= margin) & (points <= size - 1 - margin), axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_homography_maps_view_a_onto_the_same_source_points_in_view_b(seed: int) -> None:
    """Warp a map of source coordinates exactly as the images are warped: the source point
    seen at p in view A must be the one seen at H(p) in view B, to within a pixel."""
    height, width = 300, 420
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    coords = np.stack([xs, ys], axis=2)
    image = np.zeros((height, width, 3), np.uint8)
    pair = make_pair(image, np.random.default_rng(seed), NEUTRAL)
    size = NEUTRAL.size
    map_a = warp(coords, pair.to_a, size)
    rng = np.random.default_rng(100 + seed)
    p = rng.uniform(2, size - 3, size=(400, 2))
    q = transform_points(pair.homography, p)
    keep = _inside(q, size, 2)
    assert keep.sum() > 20
    pi = np.round(p[keep]).astype(int)
    source = map_a[pi[:, 1], pi[:, 0]]
    # points of the source image that view A shows (not the black border)
    shown = np.all(source > 1, axis=1) & (source[:, 0] < width - 2) & (source[:, 1] < height - 2)
    predicted = transform_points(pair.homography, pi[shown].astype(float))
    seen_in_b = transform_points(pair.to_b, source[shown].astype(float))
    np.testing.assert_allclose(seen_in_b, predicted, atol=1.0)


@pytest.mark.parametrize("seed", range(4))
def test_corresponding_pixels_show_the_same_content(seed: int) -> None:
    image = data.astronaut()
    pair = make_pair(image, np.random.default_rng(seed), NEUTRAL)
    size = NEUTRAL.size
    rng = np.random.default_rng(seed)
    p = rng.uniform(8, size - 9, size=(2000, 2)).astype(np.float32)
    q = transform_points(pair.homography, p.astype(float)).astype(np.float32)
    keep = _inside(q, size, 8)
    a = pair.view_a[np.round(p[keep, 1]).astype(int), np.round(p[keep, 0]).astype(int)]
    b = cv2.remap(
        pair.view_b, q[keep, 0][:, None], q[keep, 1][:, None], interpolation=cv2.INTER_LINEAR
    )[:, 0]
    matched = np.abs(a.astype(float) - b).mean()
    shuffled = np.abs(a.astype(float) - np.roll(b, 37, axis=0)).mean()
    assert matched < 0.25 * shuffled, (matched, shuffled)


def test_pairs_are_deterministic_and_photometric_changes_apply() -> None:
    image = data.chelsea()
    one = make_pair(image, np.random.default_rng(7))
    two = make_pair(image, np.random.default_rng(7))
    np.testing.assert_array_equal(one.view_a, two.view_a)
    np.testing.assert_array_equal(one.homography, two.homography)
    assert one.view_a.shape == one.view_b.shape == (256, 256, 3)
    neutral = make_pair(image, np.random.default_rng(7), NEUTRAL)
    assert np.abs(neutral.view_a.astype(int) - one.view_a.astype(int)).mean() > 2


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        make_pair(np.zeros((10, 10), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        transform_points(np.eye(3), np.zeros((3, 3)))
