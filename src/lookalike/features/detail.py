"""How much fine detail an image holds, to tell a blurred query from a sharp one.

The CNN's local features describe structure a few pixels across. Blur a photograph beyond
about 5 pixels per 512 and they no longer match the sharp original's at any scale, while its
colours survive unchanged. `detail` measures what is left: the energy of the two finest
octaves of a difference-of-Gaussians pyramid (sigma 1 and 2) over that of the next two
(sigma 4 and 8), on the grey image shrunk (never enlarged) to 512 pixels on its longer side.
It is a ratio of band energies, so it does not depend on contrast or exposure.

On real photographs it stays high: the lowest of the 11,611 Holidays and Corel images is
0.105 (a sunset), the median about 0.8. Gaussian blur of sigma 3, 5 and 8 pixels per 512
brings Holidays photographs to medians of 0.045, 0.019 and 0.013. So `SHARP` (0.08) lies
below every real photograph measured, and `BLURRED` (0.02) at the median of sigma 5.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

DETAIL_SIDE = 512
SHARP = 0.08
"""At or above this, a query counts as sharp: its search is unchanged."""
BLURRED = 0.02
"""At or below this, a query counts as blurred: colour weighs in fully."""
POLICY = f"detail<{SHARP:g}->colour, full at {BLURRED:g}"
"""Names the rule, for benchmark logs (ranks logged under another rule are stale)."""


def detail(image: np.ndarray) -> float:
    """The fine-to-coarse detail ratio of `image: (H, W, 3) uint8` RGB (or `(H, W)` grey);
    0 for a flat image."""
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
        raise ValueError(f"expected an (H, W, 3) or (H, W) image, got {image.shape}")
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    grey: np.ndarray = image.astype(np.float32) / 255.0
    height, width = grey.shape
    shrink = min(1.0, DETAIL_SIDE / max(height, width))
    if shrink < 1.0:
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    bands: list[float] = []
    previous = grey
    for sigma in (1.0, 2.0, 4.0, 8.0):
        smoother = cv2.GaussianBlur(grey, (0, 0), sigmaX=sigma, sigmaY=sigma)
        bands.append(float(np.mean((previous - smoother) ** 2)))
        previous = smoother
    coarse = bands[2] + bands[3]
    if coarse <= 1e-12:
        return 0.0 if bands[0] + bands[1] <= 1e-12 else math.inf
    return (bands[0] + bands[1]) / coarse


def blurred_share(value: float | None) -> float:
    """How blurred a query of detail `value` counts, in [0, 1]: 0 at or above `SHARP`, 1 at or
    below `BLURRED`, linear in log(detail) between; 0 when unknown (None)."""
    if value is None or value >= SHARP:
        return 0.0
    if value <= BLURRED:
        return 1.0
    return math.log(SHARP / value) / math.log(SHARP / BLURRED)
