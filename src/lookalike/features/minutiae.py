"""Fingerprint minutiae, the conventional features of fingerprint matching (search with
`MinutiaeSettings.enabled`, the 'fingerprints' preset): extracted from the grey image with NIST
MINDTCT and compared with NIST Bozorth3, both from the `afis` package and its native NBIS
library (`tools/build-afis-native`, which `make install` runs).

A print's `Minutiae` are `points: (N, 5)` float32 rows (x, y in pixels of the image as
decoded, direction in radians, kind, quality) with the image's (width, height): Bozorth3
needs both. With `MinutiaeSettings.fuse_extractor` (the 'fingerprints' preset: the LEADER
network's minutiae) they also carry `fused: (F, 5)`, that extractor's minutiae of the same
pixels, which `fuse_matcher` compares: two extractor-matcher pairs err on different prints,
and their scores together rank better than either (`search.fingerprint`). `afis` serialises
its extractors and matchers behind one lock, so they are thread-safe but not parallel within
a process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.images import ImageSource, load_image
from lookalike.settings import MinutiaeSettings

POINT_COLUMNS = 5
"""x, y, direction (radians), kind, quality."""

INSTALL = "tools/build-afis-native .venv/bin/python"
"""How to install what fingerprint matching needs (`make install` runs it)."""


class MinutiaeUnavailable(ValueError):
    """The `afis` package, or its native NBIS library, is not installed: settings that compare
    minutiae cannot be used in this installation (a ValueError, as a bad setting is)."""


@dataclass(frozen=True)
class Minutiae:
    """`points: (N, 5)` float32 (x, y, direction, kind, quality) of one print, in the pixels of
    an image `size` (width, height) as decoded; `fused: (F, 5)` the same from the fused
    extractor, when the settings name one."""

    points: np.ndarray
    size: tuple[int, int]
    fused: np.ndarray | None = None

    def __post_init__(self) -> None:
        for points in (self.points, self.fused):
            if points is not None and (points.ndim != 2 or points.shape[1] != POINT_COLUMNS):
                raise ValueError(f"minutiae must be (N, {POINT_COLUMNS}), got {points.shape}")

    def moved(self, move: Callable[[np.ndarray], np.ndarray], size: tuple[int, int]) -> Minutiae:
        """These minutiae with positions `move`d (`(N, 2)` -> `(N, 2)`) into an image `size`."""

        def apply(points: np.ndarray) -> np.ndarray:
            out = points.copy()
            out[:, :2] = move(points[:, :2])
            return out

        fused = None if self.fused is None else apply(self.fused)
        return Minutiae(apply(self.points), size, fused)

    def __len__(self) -> int:
        return len(self.points)


@dataclass(frozen=True)
class PrintScores:
    """Two prints compared by the settings' matcher (`score`, which judges a match) and, with
    a fused extractor, by the fused matcher on the fused minutiae (`fused`)."""

    score: float
    fused: float | None = None


@dataclass(frozen=True)
class MinutiaeMatch:
    """Two prints compared: the matcher's `score` (Bozorth3: the size of the largest
    consistent cluster of minutia pairs; 40 and up is NIST's usual 'same finger'), and
    `pairs: (K, 2)` int64 rows of paired minutiae (query row, image row) where the matcher
    names them (Bozorth3 does not: see `paired`)."""

    score: float
    pairs: np.ndarray


def _afis() -> Any:
    """The `afis` module with its native library, or MinutiaeUnavailable saying how to get it."""
    try:
        import afis
    except ImportError as exc:
        raise MinutiaeUnavailable(
            f"fingerprint minutiae need the afis package: run `{INSTALL}`"
        ) from exc
    if not afis.available_native():
        raise MinutiaeUnavailable(
            "fingerprint minutiae need afis's native NBIS library (MINDTCT, Bozorth3), which "
            f"pip's afis lacks: run `{INSTALL}`"
        )
    return afis


def check_available() -> None:
    """Raise MinutiaeUnavailable, saying how to install it, unless minutiae can be used."""
    _afis()


@functools.cache
def _extractor(name: str) -> Any:
    # no NFIQ2 quality score: it costs several times the extraction and no matcher reads it
    return _afis().NbisExtractor(extractor=name, quality_mode="off")


def grey(source: ImageSource, max_side: int) -> np.ndarray:
    """`(H, W)` uint8 grey pixels of an image (ImageError when it cannot be read)."""
    rgb = load_image(source, max_side=max_side)
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(rgb.astype(np.float32) @ weights + 0.5, 0, 255).astype(np.uint8)


def extract(image: np.ndarray, settings: MinutiaeSettings) -> Minutiae:
    """The minutiae of `image: (H, W)` uint8 grey pixels (and the fused extractor's)."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"a print must be (H, W) uint8, got {image.shape} {image.dtype}")

    def points(extractor: str) -> np.ndarray:
        template = _extractor(extractor).extract_minutiae(image)
        return np.asarray(template.minutiae, np.float32).reshape(-1, POINT_COLUMNS)

    fused = None if settings.fuse_extractor is None else points(settings.fuse_extractor)
    return Minutiae(points(settings.extractor), (int(image.shape[1]), int(image.shape[0])), fused)


def extract_file(source: ImageSource, settings: MinutiaeSettings) -> Minutiae:
    """The minutiae of an image file (or any `ImageSource`), decoded at most `max_side`."""
    return extract(grey(source, settings.max_side), settings)


def match(query: Minutiae, image: Minutiae, matcher: str, fused: bool = False) -> MinutiaeMatch:
    """Compare two prints with `matcher` (an afis method: 'nbis_bozorth3', 'geometric', ...),
    on their `fused` minutiae when asked (ValueError when either has none)."""
    afis = _afis()
    a, b = (query.fused, image.fused) if fused else (query.points, image.points)
    if a is None or b is None:
        raise ValueError("fused minutiae asked for but not extracted (no fuse_extractor)")
    if not len(a) or not len(b):
        return MinutiaeMatch(0.0, np.zeros((0, 2), np.int64))
    result = afis.match_templates(
        a.astype(np.float64),
        b.astype(np.float64),
        method=matcher,
        width_a=query.size[0],
        height_a=query.size[1],
        width_b=image.size[0],
        height_b=image.size[1],
    )
    raw = result.raw_score if result.raw_score is not None else result.score
    pairs = np.array([(int(i), int(j)) for i, j, *_ in result.pairs], np.int64).reshape(-1, 2)
    return MinutiaeMatch(float(raw), pairs)


def compare(query: Minutiae, image: Minutiae, settings: MinutiaeSettings) -> PrintScores:
    """Two prints compared as `settings` say: by the matcher, and by the fused matcher on the
    fused minutiae when both prints have them."""
    score = match(query, image, settings.matcher).score
    if settings.fuse_extractor is None or query.fused is None or image.fused is None:
        return PrintScores(score)
    return PrintScores(score, match(query, image, settings.fuse_matcher, fused=True).score)


PAIRING_MATCHER = "geometric"
"""The matcher that names the pairs it finds (Bozorth3 only scores): used to draw them."""


def paired(query: Minutiae, image: Minutiae) -> tuple[np.ndarray, np.ndarray]:
    """The paired minutiae of two prints, `(K, 2)` float32 positions in the query and in the
    image, row by row, as the pairing matcher finds them (for explanations); the fused
    minutiae when both have them."""
    fused = query.fused is not None and image.fused is not None
    found = match(query, image, PAIRING_MATCHER, fused=fused)
    a, b = found.pairs[:, 0], found.pairs[:, 1]
    q, i = (query.fused, image.fused) if fused else (query.points, image.points)
    assert q is not None and i is not None
    return q[a, :2].copy(), i[b, :2].copy()
