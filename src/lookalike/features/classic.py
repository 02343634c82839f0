"""Conventional local features: RootSIFT (Arandjelović & Zisserman, 2012) through OpenCV's SIFT.

A baseline for lookalike's convolutional features, in the same `LocalFeatures` form so that it
goes through the same codebook and ASMK inverted file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from lookalike.features.local import LocalFeatures
from lookalike.images import image_size, load_image

SIFT_DIM = 128


@dataclass(frozen=True)
class SiftSettings:
    """How SIFT keypoints are detected and described.

    The image is shrunk (never enlarged) so that its longer side is at most `max_side`, then the
    `max_features` keypoints of highest response are kept. The other fields are OpenCV's
    `SIFT_create` parameters, with its defaults.
    """

    max_features: int = 1000
    max_side: int = 1024
    n_octave_layers: int = 3
    contrast_threshold: float = 0.04
    edge_threshold: float = 10.0
    sigma: float = 1.6

    def __post_init__(self) -> None:
        if self.max_features < 1:
            raise ValueError(f"max_features must be positive, got {self.max_features}")
        if self.max_side < 16:
            raise ValueError(f"max_side must be at least 16, got {self.max_side}")
        if self.n_octave_layers < 1:
            raise ValueError(f"n_octave_layers must be positive, got {self.n_octave_layers}")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}")

    @property
    def key(self) -> str:
        """Short name carrying the key parameters, e.g. `rootsift-n1000-r1024`."""
        return f"rootsift-n{self.max_features}-r{self.max_side}"


def rootsift(image: np.ndarray, settings: SiftSettings = SiftSettings()) -> LocalFeatures:
    """RootSIFT features of one image, strongest (highest SIFT response) first.

    image: (H, W, 3) uint8 RGB, as `lookalike.images.load_image` returns it. Keypoints are
    detected on the greyscale image, shrunk first when its longer side exceeds
    `settings.max_side`. Returns at most `settings.max_features` features:

    xy: (N, 2) float32 — keypoint centre, in pixels of `image` (pixel centres at integers)
    scale: (N,) float32 — keypoint size (diameter of its neighbourhood), in pixels of `image`
    strength: (N,) float32 — SIFT response, descending
    desc: (N, 128) float32 — RootSIFT: each SIFT descriptor L1-normalised, then its
      element-wise square root, so non-negative and L2-unit

    An image without keypoints (a blank page) gives N = 0.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    shrink = settings.max_side / max(height, width)
    if shrink < 1.0:
        shrunk = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        grey = cv2.resize(grey, shrunk, interpolation=cv2.INTER_AREA)
    # opencv-python 5's type stubs leave SIFT out; it is there at run time
    sift = cv2.SIFT_create(  # type: ignore[attr-defined]
        nfeatures=settings.max_features,
        nOctaveLayers=settings.n_octave_layers,
        contrastThreshold=settings.contrast_threshold,
        edgeThreshold=settings.edge_threshold,
        sigma=settings.sigma,
    )
    keypoints, raw = sift.detectAndCompute(grey, None)
    if not keypoints or raw is None:
        return _empty()
    raw = np.asarray(raw, dtype=np.float32)
    l1 = raw.sum(axis=1)
    keep = np.flatnonzero(l1 > 0)  # a zero descriptor has no direction; none is expected
    response = np.array([keypoints[i].response for i in keep], dtype=np.float32)
    keep = keep[np.argsort(-response, kind="stable")][: settings.max_features]
    xy = np.array([keypoints[i].pt for i in keep], dtype=np.float32).reshape(-1, 2)
    size = np.array([keypoints[i].size for i in keep], dtype=np.float32)
    strength = np.array([keypoints[i].response for i in keep], dtype=np.float32)
    desc = np.sqrt(raw[keep] / l1[keep, None]).astype(np.float32)
    # back to `image` pixels: per-axis factors, since the shrunk size was rounded
    factor = np.array([width / grey.shape[1], height / grey.shape[0]], dtype=np.float32)
    xy = (xy + 0.5) * factor - 0.5
    return LocalFeatures(
        xy=xy.astype(np.float32),
        scale=(size * np.float32(factor.mean())).astype(np.float32),
        strength=strength,
        desc=desc,
    )


def rootsift_file(
    path: str | os.PathLike[str], settings: SiftSettings = SiftSettings()
) -> LocalFeatures:
    """RootSIFT features of an image file, with `xy` and `scale` in pixels of the file (after
    EXIF orientation), as `rootsift` gives them for the decoded image.

    The file is decoded at most `settings.max_side` on its longer side (JPEGs at a reduced DCT
    scale), which is what `rootsift` would shrink it to anyway. A picklable top-level function,
    for process pools.

    Raises:
        ImageError: the file cannot be used as an image.
    """
    width, height = image_size(path)
    image = load_image(path, max_side=settings.max_side)
    local = rootsift(image, settings)
    factor = np.array([width / image.shape[1], height / image.shape[0]], dtype=np.float32)
    if len(local) == 0 or np.all(factor == 1.0):
        return local
    return LocalFeatures(
        xy=((local.xy + 0.5) * factor - 0.5).astype(np.float32),
        scale=(local.scale * np.float32(factor.mean())).astype(np.float32),
        strength=local.strength,
        desc=local.desc,
    )


def _empty() -> LocalFeatures:
    return LocalFeatures(
        xy=np.zeros((0, 2), np.float32),
        scale=np.zeros(0, np.float32),
        strength=np.zeros(0, np.float32),
        desc=np.zeros((0, SIFT_DIM), np.float32),
    )
