"""Second looks at a query that verified nothing for sure: read coarser (for blur and heavy
noise) and turned a quarter, three quarters and a half (for a photograph held sideways or upside
down).

The backbone's features are neither blur- nor rotation-invariant. A query whose best image has
fewer inliers than a sure match is described again these ways; positions are mapped back to the
query's own pixels, so verification, boxes and explanations read the same as for an upright
query.

Turns are costly (a full look each), so by default a query is first *probed* turned each way: its
global descriptor read at one small scale (`PROBE_SCALE`), about a sixth of a look. Only the
turn whose probe comes closest to something in the collection is looked at, and only when it
comes closer than the upright probe does, give or take `RerankSettings.turn_margin`.
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

PROBE_SCALE = 0.5
"""A probe reads the turned query at this one scale, for its global descriptor."""

POLICY = (
    "until retry_below inliers, verifying retry_verify each; the look with the most inliers; "
    "turns probed at one scale, only the best turn looked at (turn_margin)"
)
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


def probes() -> list[Look]:
    """The probes: upright, then each of `TURNS`, at `PROBE_SCALE` alone."""
    return [Look(f"probe{k}", turns=k, scales=(PROBE_SCALE,)) for k in (0, *TURNS)]


def best_turn(closest: dict[int, float], margin: float) -> int | None:
    """The quarter turn to look at, from each probe's similarity to its closest indexed image
    (`closest`: quarter turns -> similarity, 0 for upright): the turn with the highest, when it
    beats upright's by more than `margin` (negative: a turn slightly behind is looked at too,
    for copies turned between quarters); None when none does. Ties go to the earlier of
    `TURNS`."""
    turn = max(TURNS, key=lambda k: closest[k])
    return turn if closest[turn] - closest[0] > margin else None


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
