"""The robustness suite's transforms: eight families, five strengths each, applied to a query
image to make the copies that must still find their untouched original.

Strength 1 is mild, 5 is harsh. Parameters are relative to the image (blur in pixels per 512
of the longer side, crops and perspective in fractions of the sides), so a transform means the
same at any resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LEVELS = 5

FAMILIES: dict[str, tuple[float, ...]] = {
    "noise": (5.0, 10.0, 20.0, 35.0, 50.0),  # Gaussian sigma, in 0-255 grey levels
    "light": (1.0, 2.0, 3.0, 4.0, 5.0),  # index into LIGHT: (gamma, gain)
    "scale": (0.75, 1.5, 0.5, 2.0, 0.25),  # factor on both sides
    "rotation": (10.0, 45.0, 90.0, 135.0, 180.0),  # degrees, anticlockwise
    "perspective": (0.05, 0.1, 0.15, 0.2, 0.25),  # corner shift, fraction of the side
    "crop": (0.8, 0.6, 0.45, 0.3, 0.2),  # share of the area kept
    "jpeg": (60.0, 40.0, 25.0, 15.0, 8.0),  # JPEG quality
    "blur": (1.0, 2.0, 3.0, 5.0, 8.0),  # Gaussian sigma, pixels per 512 of the longer side
}
"""Family -> its parameter at strengths 1 to 5."""

LIGHT = {
    1.0: (0.8, 1.15),
    2.0: (1.3, 0.8),
    3.0: (0.6, 1.3),
    4.0: (1.7, 0.6),
    5.0: (2.2, 0.45),
}
"""Illumination strengths: `(gamma, gain)`, alternately brighter and darker: out = gain * in^gamma
on intensities in [0, 1]."""


@dataclass(frozen=True)
class Transform:
    """One transform of the suite: `family` at `level` (1 to 5), whose parameter is `value`."""

    family: str
    level: int

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"unknown transform family {self.family!r}; allowed: {', '.join(FAMILIES)}"
            )
        if not 1 <= self.level <= LEVELS:
            raise ValueError(f"level must be 1 to {LEVELS}, got {self.level}")

    @property
    def value(self) -> float:
        return FAMILIES[self.family][self.level - 1]

    @property
    def name(self) -> str:
        return f"{self.family}-{self.level}"

    def describe(self) -> str:
        """The parameter in words, e.g. 'rotation 45°'."""
        v = self.value
        if self.family == "light":
            gamma, gain = LIGHT[v]
            return f"gamma {gamma:g}, gain {gain:g}"
        units = {
            "noise": f"sigma {v:g}",
            "scale": f"{v:g}x",
            "rotation": f"{v:g}°",
            "perspective": f"corners moved {v:.0%}",
            "crop": f"{v:.0%} of the area",
            "jpeg": f"quality {v:g}",
            "blur": f"sigma {v:g} px per 512",
        }
        return f"{self.family} {units[self.family]}"


def suite(families: tuple[str, ...] = tuple(FAMILIES)) -> list[Transform]:
    """Every transform of `families`, each at every level."""
    return [Transform(f, level) for f in families for level in range(1, LEVELS + 1)]


def apply(image: np.ndarray, transform: Transform, rng: np.random.Generator) -> np.ndarray:
    """`image: (H, W, 3) uint8` RGB transformed; `rng` draws what is random (noise, the crop's
    place, the corners' shifts)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    image = np.ascontiguousarray(image)
    family, v = transform.family, transform.value
    height, width = image.shape[:2]
    if family == "noise":
        noisy = image.astype(np.float32) + rng.normal(0.0, v, image.shape).astype(np.float32)
        return np.clip(noisy, 0, 255).round().astype(np.uint8)
    if family == "light":
        gamma, gain = LIGHT[v]
        lut = np.clip(gain * (np.arange(256) / 255.0) ** gamma * 255.0, 0, 255).round()
        return lut.astype(np.uint8)[image]
    if family == "scale":
        size = (max(1, round(width * v)), max(1, round(height * v)))
        interpolation = cv2.INTER_AREA if v < 1 else cv2.INTER_CUBIC
        return cv2.resize(image, size, interpolation=interpolation)
    if family == "rotation":
        return _rotate(image, v)
    if family == "perspective":
        return _perspective(image, v, rng)
    if family == "crop":
        side = float(np.sqrt(v))
        cw, ch = max(1, round(width * side)), max(1, round(height * side))
        x = int(rng.integers(0, width - cw + 1))
        y = int(rng.integers(0, height - ch + 1))
        return image[y : y + ch, x : x + cw].copy()
    if family == "jpeg":
        ok, data = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(v)]
        )
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
        if decoded is None:
            raise RuntimeError("OpenCV could not round-trip a JPEG")
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if family == "blur":
        sigma = v * max(height, width) / 512.0
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    raise AssertionError(family)  # Transform checked the family


def _rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated anticlockwise about the centre on a canvas that holds all of it (black
    corners)."""
    height, width = image.shape[:2]
    # about the middle of the pixel grid (pixel centres at integers), so that quarter and half
    # turns land exactly on pixels
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w = round(height * sin + width * cos)
    new_h = round(height * cos + width * sin)
    matrix[0, 2] += (new_w - 1) / 2.0 - centre[0]
    matrix[1, 2] += (new_h - 1) / 2.0 - centre[1]
    return cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR)


def _perspective(image: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Each corner moved inwards by `shift` of the sides (each axis drawn between half and all
    of it), as if the picture were seen at an angle; same canvas size, black outside."""
    height, width = image.shape[:2]
    src = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float32)
    amount = rng.uniform(0.5, 1.0, size=(4, 2)).astype(np.float32) * shift
    dst = src + inward * amount * np.array([width, height], np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR)
