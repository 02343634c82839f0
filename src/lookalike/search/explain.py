"""Match explanations: the query and a hit side by side, with the inlier correspondences and
the matched region (the query box mapped through the fitted model) drawn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from lookalike.search.region import Box
from lookalike.search.verify import Verified

QUERY_COLOUR = (255, 196, 0)
HIT_COLOUR = (0, 220, 120)
LINE_COLOUR = (40, 160, 255)


def side_by_side(
    query: np.ndarray,
    query_size: tuple[int, int],
    hit: np.ndarray,
    hit_size: tuple[int, int],
    match: Verified,
    query_box: Box | None = None,
    hit_box: np.ndarray | None = None,
    height: int = 480,
    gap: int = 12,
    label: str = "inliers",
) -> np.ndarray:
    """One `(height, W, 3)` uint8 picture: `query` left, `hit` right, both `(H, W, 3)` uint8
    decoded at any resolution of originals of `query_size` and `hit_size` (width, height).

    Match positions and boxes are in original pixels; `hit_box: (4, 2)` is a quadrilateral.
    `label`: what the correspondences are, written under their number.
    """
    for name, image in (("query", query), ("hit", hit)):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{name} must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    left, q_scale = _fit_height(query, query_size, height)
    right, h_scale = _fit_height(hit, hit_size, height)
    offset = left.shape[1] + gap
    canvas = np.full((height, offset + right.shape[1], 3), 255, np.uint8)
    canvas[:, : left.shape[1]] = left
    canvas[:, offset:] = right
    thickness = max(1, height // 240)
    if query_box is not None:
        x, y, w, h = query_box
        corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)
        _polygon(canvas, corners * q_scale, QUERY_COLOUR, thickness + 1)
    if hit_box is not None:
        quad = np.asarray(hit_box, np.float64) * h_scale + [offset, 0]
        _polygon(canvas, quad, HIT_COLOUR, thickness + 1)
    for (qx, qy), (hx, hy) in zip(match.query_xy, match.image_xy, strict=True):
        a = (round(qx * q_scale), round(qy * q_scale))
        b = (round(hx * h_scale) + offset, round(hy * h_scale))
        cv2.line(canvas, a, b, LINE_COLOUR, thickness, cv2.LINE_AA)
        cv2.circle(canvas, a, 2 * thickness + 1, LINE_COLOUR, -1, cv2.LINE_AA)
        cv2.circle(canvas, b, 2 * thickness + 1, LINE_COLOUR, -1, cv2.LINE_AA)
    label = f"{match.inliers} {label}"
    cv2.putText(canvas, label, (8, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3)
    cv2.putText(canvas, label, (8, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    return canvas


def save_png(picture: np.ndarray, path: Path, text: dict[str, str] | None = None) -> Path:
    """Write `picture` as a PNG with `text` as its text chunks (read back with PIL's `.text`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    Image.fromarray(picture).save(path, format="PNG", pnginfo=info)
    return path


def _fit_height(image: np.ndarray, size: tuple[int, int], height: int) -> tuple[np.ndarray, float]:
    """`image` resized to `height` rows, and the factor from original pixels to its pixels."""
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return resized, height / size[1]


def _polygon(canvas: np.ndarray, corners: np.ndarray, colour: tuple[int, int, int], t: int) -> None:
    points = np.round(corners).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(canvas, [points], True, colour, t, cv2.LINE_AA)
