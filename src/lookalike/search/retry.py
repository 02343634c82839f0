"""Second looks at a query that verified nothing for sure: read coarser (for blur and heavy
noise) and turned a quarter, three quarters and a half (for a photograph held sideways or upside
down).

The backbone's features are neither blur- nor rotation-invariant. A query whose best image has
fewer inliers than a sure match is described again these ways; positions are mapped back to the
query's own pixels, so verification, boxes and explanations read the same as for an upright
query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lookalike.features import ImageFeatures, LocalFeatures

TURNS = (1, 3, 2)
"""Quarter turns tried (numpy's `rot90`, anticlockwise), the likelier sideways first."""

COARSE = 0.5
"""The coarse look reads the image at this fraction of each of the usual scales."""

POLICY = "until retry_below inliers, verifying retry_verify each; the look with the most inliers"
"""When looks are taken and which one wins (`Collection.search`), in words: changed with it, so
that results logged under another policy can be told apart (`benchmarks/robustness.py`)."""


@dataclass(frozen=True)
class Look:
    """One way of reading the query: `turns` quarter turns anticlockwise, at `scales`
    (None: the settings' scales)."""

    name: str
    turns: int = 0
    scales: tuple[float, ...] | None = None


def second_looks(scales: tuple[float, ...]) -> list[Look]:
    """The looks tried, in order, after the plain one found nothing."""
    coarse = tuple(s * COARSE for s in scales)
    return [Look("coarse", scales=coarse), *(Look(f"turn{k}", turns=k) for k in TURNS)]


def turned(image: np.ndarray, turns: int) -> np.ndarray:
    """`image: (H, W, C)` turned `turns` quarter turns anticlockwise, C-contiguous."""
    return np.ascontiguousarray(np.rot90(image, turns % 4))


def unturn(xy: np.ndarray, turns: int, size: tuple[int, int]) -> np.ndarray:
    """`xy: (N, 2)`, positions in an image turned `turns` quarter turns anticlockwise ->
    `(N, 2)` float32 positions in the unturned image of `size = (width, height)` (continuous
    pixel coordinates: the image spans [0, width] x [0, height])."""
    width, height = size
    x, y = np.asarray(xy, np.float32).T
    k = turns % 4
    if k == 0:
        out = (x, y)
    elif k == 1:
        out = (width - y, x)
    elif k == 2:
        out = (width - x, height - y)
    else:
        out = (y, height - x)
    return np.stack(out, axis=1).astype(np.float32)


def read(
    extract: Callable[[np.ndarray, tuple[float, ...] | None], ImageFeatures],
    image: np.ndarray,
    look: Look,
) -> ImageFeatures:
    """The features of `image: (H, W, 3)` read `look`'s way, positions in `image`'s pixels."""
    features = extract(turned(image, look.turns), look.scales)
    local = features.local
    height, width = image.shape[:2]
    moved = LocalFeatures(
        xy=unturn(local.xy, look.turns, (width, height)),
        scale=local.scale,
        strength=local.strength,
        desc=local.desc,
    )
    return ImageFeatures(moved, features.global_)
