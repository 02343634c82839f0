"""Region queries: a box `(x, y, w, h)` in pixels of the query image as it is seen (EXIF
orientation applied, original size), decoded at the resolution the extractor wants."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.images import load_image

Box = tuple[float, float, float, float]


def parse_region(text: str) -> Box:
    """`"x,y,w,h"` (pixels of the query as seen) -> a box; raises ValueError saying what is
    wrong: not four finite numbers, or not a positive size. (A box that reaches past the
    image's edges is clipped later, by `clip_region`, which knows the image's size.)"""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError(f"a region is x,y,w,h (four numbers), got {text!r}")
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"a region is x,y,w,h (four numbers), got {text!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ValueError(f"region {text!r} must be finite numbers with a positive size")
    return x, y, w, h


def clip_region(box: Box, size: tuple[int, int]) -> Box:
    """`box` clipped to an image of `size = (width, height)`; an empty result is an error."""
    x, y, w, h = box
    width, height = size
    if not all(math.isfinite(v) for v in box) or w <= 0 or h <= 0:
        raise ValueError(f"region {box} must have a positive width and height")
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"region {box} lies outside the {width}x{height} image")
    return x0, y0, x1 - x0, y1 - y0


@dataclass(frozen=True)
class QueryPixels:
    """Pixels to describe and how they map back: a pixel (u, v) of `image` is the point
    `(origin[0] + u * factor, origin[1] + v * factor)` of the query image as seen."""

    image: np.ndarray  # (H, W, 3) uint8
    factor: float
    origin: tuple[float, float]

    def to_query(self, xy: np.ndarray) -> np.ndarray:
        """`xy: (N, 2)` in `image` pixels -> `(N, 2)` float32 in query pixels."""
        out = np.asarray(xy, np.float32) * np.float32(self.factor)
        return out + np.asarray(self.origin, np.float32)


def query_pixels(
    source: Any, size: tuple[int, int], decode_size: int, box: Box | None
) -> QueryPixels:
    """Decode `source` (of upright `size = (width, height)`) for description.

    Without a box the whole image is decoded with its longer side at most `decode_size`. With
    one, the image is decoded so that the box's longer side gets about `decode_size` pixels
    (never more than the original has), and the box is cut out of that.
    """
    width, height = size
    longer = max(width, height)
    if box is None:
        image = load_image(source, max_side=decode_size)
        return QueryPixels(image, longer / max(image.shape[:2]), (0.0, 0.0))
    x, y, w, h = clip_region(box, size)
    side = min(longer, math.ceil(decode_size * longer / max(w, h)))
    image = load_image(source, max_side=side)
    factor = longer / max(image.shape[:2])
    x0, y0 = math.floor(x / factor), math.floor(y / factor)
    x1 = min(image.shape[1], max(x0 + 1, math.ceil((x + w) / factor)))
    y1 = min(image.shape[0], max(y0 + 1, math.ceil((y + h) / factor)))
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    return QueryPixels(crop, factor, (x0 * factor, y0 * factor))
