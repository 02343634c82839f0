"""Synthetic fingerprints, as distractors for searches at scale (no real print is needed).

The method follows SFinGe (Cappelli, Maio, Maltoni) in spirit: an orientation field from
singular points (Sherlock and Monro's zero-pole model: 0 to 2 cores and as many deltas, the
pattern turned at random), a ridge period of about 9 pixels (500 dpi), and ridges grown from
noise by filtering it again and again with Gabor filters tuned to the local orientation and
period. Minutiae appear where the grown ridges end or fork, as in real prints. Each print is
cut to a finger's elliptical contact area, its ridges thickened or thinned, blurred and given
sensor noise.

`synthetic_print(seed)` is deterministic: the same seed gives the same print.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ORIENTATIONS = 16
"""Gabor filters of the bank, spaced evenly over 180 degrees."""


def orientation_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """`(height, width)` float32 ridge orientations in radians [0, pi) from a zero-pole model:
    half the sum of the angles to the deltas minus the angles to the cores, plus a turn."""
    kind = rng.choice(["arch", "loop", "whorl"], p=[0.1, 0.6, 0.3])
    cores = {"arch": 0, "loop": 1, "whorl": 2}[kind]
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    z = x + 1j * y
    centre = complex(width * rng.uniform(0.4, 0.6), height * rng.uniform(0.35, 0.55))
    theta = np.zeros((height, width))
    for i in range(cores):
        core = centre + complex(
            rng.normal(0, width * 0.06), (i - 0.5) * height * 0.12 * (cores > 1)
        )
        delta = core + complex(
            rng.choice([-1, 1]) * width * rng.uniform(0.2, 0.4), height * rng.uniform(0.3, 0.5)
        )
        theta += 0.5 * (np.angle(z - delta) - np.angle(z - core))
    if cores == 0:  # arch: ridges across the finger, bowed in the middle
        bow = rng.uniform(0.4, 1.0)
        theta += (
            bow
            * np.arctan((x - centre.real) / width * 2.0)
            * np.exp(-(((y - centre.imag) / height) ** 2) * 4)
        )
    theta += rng.uniform(-0.3, 0.3)  # the finger held a little turned
    return np.mod(theta, np.pi).astype(np.float32)


def _gabor_bank(period: float) -> list[np.ndarray]:
    size = round(period * 2) | 1
    sigma = period * 0.45
    return [
        cv2.getGaborKernel((size, size), sigma, k * np.pi / ORIENTATIONS, period, 1.0, 0.0)
        for k in range(ORIENTATIONS)
    ]


def _grow_ridges(
    orientation: np.ndarray, period: float, rng: np.random.Generator, rounds: int = 10
) -> np.ndarray:
    """Ridges grown from noise: each round filters with every Gabor filter, keeps at each pixel
    the response of the filter along its ridge orientation, and squashes it back to [-1, 1]."""
    bank = _gabor_bank(period)
    # the kernel at angle a responds to ridges running at a + 90 degrees
    along = np.mod(orientation + np.pi / 2, np.pi)
    which = np.round(along / np.pi * ORIENTATIONS).astype(np.int64) % ORIENTATIONS
    image = rng.normal(0.0, 1.0, orientation.shape).astype(np.float32)
    for _ in range(rounds):
        responses = np.stack([cv2.filter2D(image, cv2.CV_32F, k) for k in bank])
        image = np.take_along_axis(responses, which[None], 0)[0]
        image = np.tanh(image / (image.std() + 1e-6) * 2.0)
    return image


def synthetic_print(seed: int, height: int = 384, width: int = 384) -> np.ndarray:
    """One synthetic fingerprint, `(height, width)` uint8: dark ridges on a light background,
    about 500 dpi (a ridge every 8 to 10 pixels)."""
    rng = np.random.default_rng(seed)
    orientation = orientation_field(height, width, rng)
    period = rng.uniform(8.0, 10.0)
    ridges = _grow_ridges(orientation, period, rng)
    # the finger's contact area: an ellipse, a little off centre, with a soft edge
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cy, cx = height * rng.uniform(0.45, 0.55), width * rng.uniform(0.45, 0.55)
    ry, rx = height * rng.uniform(0.38, 0.48), width * rng.uniform(0.3, 0.42)
    inside = 1.0 - ((y - cy) / ry) ** 2 - ((x - cx) / rx) ** 2
    mask = np.clip(inside * 6.0, 0.0, 1.0)
    pressure = rng.uniform(-0.3, 0.3)  # dry (thin ridges) to wet (thick)
    ink = np.clip((ridges + pressure) * 1.5, -1.0, 1.0) * 0.5 + 0.5
    picture = 1.0 - ink * mask * rng.uniform(0.6, 0.9)
    picture = cv2.GaussianBlur(picture, (0, 0), rng.uniform(0.5, 1.2))
    picture += rng.normal(0.0, rng.uniform(0.01, 0.05), picture.shape).astype(np.float32)
    return np.clip(picture * 255.0, 0, 255).astype(np.uint8)


def write_prints(folder: Path, count: int, first_seed: int = 0) -> list[str]:
    """Write `count` synthetic prints as PNGs `synthetic-<seed>.png` into `folder` (made);
    those already there are kept. Returns their file names."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for seed in range(first_seed, first_seed + count):
        name = f"synthetic-{seed:07d}.png"
        if not (out / name).is_file():
            cv2.imwrite(str(out / name), synthetic_print(seed))
        names.append(name)
    return names
