"""Training pairs without labels: two views of one image related by a known homography.

View A is a random crop of the image; view B is the same image under a random rotation,
scale, perspective and crop, plus photometric changes (light, colour, blur, noise, JPEG). The
homography `H` maps pixel coordinates of view A to view B, so every point of A whose image
lands inside B has a known correspondence: supervision for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PairSettings:
    """Ranges of the random changes between the two views of a pair."""

    size: int = 256
    max_rotation_degrees: float = 180.0
    scale_range: tuple[float, float] = (0.5, 2.0)
    perspective: float = 0.12  # largest corner shift, as a fraction of the view size
    crop_fraction: tuple[float, float] = (0.5, 1.0)  # side of view A's crop / shorter image side
    brightness: float = 0.25  # additive, fraction of 255
    contrast: float = 0.3  # multiplicative, 1 ± contrast
    gamma_range: tuple[float, float] = (0.7, 1.4)
    saturation: float = 0.3  # 1 ± saturation
    max_blur_sigma: float = 1.5
    max_noise_std: float = 8.0  # in grey levels
    jpeg_quality: tuple[int, int] = (30, 95)


@dataclass(frozen=True)
class ViewPair:
    """Two views of one image.

    view_a, view_b: (S, S, 3) uint8
    homography: (3, 3) float64 — pixel (x, y, 1) of view A -> view B (projective)
    to_a, to_b: (3, 3) float64 — source image pixels -> view A / view B
    """

    view_a: np.ndarray
    view_b: np.ndarray
    homography: np.ndarray
    to_a: np.ndarray
    to_b: np.ndarray


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """`image` (H, W, C) seen through `matrix` (source pixels -> output pixels), (size, size, C).

    Pixel centres are at integer coordinates on both sides; outside the source is black.
    """
    out = cv2.warpPerspective(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out if out.ndim == 3 else out[..., None]


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (3, 3) projective transform to `points: (N, 2)` -> `(N, 2)`."""
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got {points.shape}")
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def _crop_transform(
    rng: np.random.Generator, height: int, width: int, s: PairSettings
) -> np.ndarray:
    """A random square crop of the image, resized to the view size (source -> view)."""
    side = min(height, width) * rng.uniform(*s.crop_fraction)
    x0 = rng.uniform(0, width - side)
    y0 = rng.uniform(0, height - side)
    scale = (s.size - 1) / max(side - 1, 1e-6)
    return np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale], [0, 0, 1.0]])


def sample_view_change(rng: np.random.Generator, s: PairSettings) -> np.ndarray:
    """A random homography of the view onto itself: rotation about the centre, scale and a
    perspective distortion of the corners (view A pixels -> view B pixels)."""
    c = (s.size - 1) / 2
    angle = np.deg2rad(rng.uniform(-s.max_rotation_degrees, s.max_rotation_degrees))
    log_lo, log_hi = np.log(s.scale_range[0]), np.log(s.scale_range[1])
    scale = float(np.exp(rng.uniform(log_lo, log_hi)))
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    similarity = np.array(
        [[cos, -sin, c - cos * c + sin * c], [sin, cos, c - sin * c - cos * c], [0, 0, 1]]
    )
    corners = np.array([[0, 0], [s.size - 1, 0], [s.size - 1, s.size - 1], [0, s.size - 1]], float)
    moved = corners + rng.uniform(-s.perspective, s.perspective, size=(4, 2)) * s.size
    perspective = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))
    return perspective @ similarity


def photometric(image: np.ndarray, rng: np.random.Generator, s: PairSettings) -> np.ndarray:
    """Random light, colour, blur, noise and JPEG compression of `image: (S, S, 3) uint8`."""
    x = image.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1 - s.saturation, 1 + s.saturation)
    x = (x - 127.5) * rng.uniform(1 - s.contrast, 1 + s.contrast) + 127.5
    x = x + rng.uniform(-s.brightness, s.brightness) * 255
    x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** rng.uniform(*s.gamma_range)
    sigma = rng.uniform(0, s.max_blur_sigma)
    if sigma > 0.3:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    x = x + rng.normal(0, rng.uniform(0, s.max_noise_std), size=x.shape)
    out = np.clip(x, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(
        ".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*s.jpeg_quality))]
    )
    if ok:
        out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    return out


def make_pair(
    image: np.ndarray, rng: np.random.Generator, settings: PairSettings | None = None
) -> ViewPair:
    """Two views of `image: (H, W, 3) uint8` and the homography between them."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    s = settings or PairSettings()
    height, width = image.shape[:2]
    to_a = _crop_transform(rng, height, width, s)
    change = sample_view_change(rng, s)
    to_b = change @ to_a
    view_a = photometric(warp(image, to_a, s.size), rng, s)
    view_b = photometric(warp(image, to_b, s.size), rng, s)
    return ViewPair(view_a=view_a, view_b=view_b, homography=change, to_a=to_a, to_b=to_b)
