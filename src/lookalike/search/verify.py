"""Spatial verification: tentative matches between two images' local features, a geometric
model fitted to them with RANSAC, and a re-ranking that adds the inlier count to the
first-stage score.

Positions are in pixels of each image as stored (EXIF orientation applied). Local features
sit on a coarse grid (one per feature-map cell, 16 pixels of the working size at scale 1), so
the inlier threshold is a fraction of the image's longer side, not a pixel count.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lookalike.settings import RerankSettings


@dataclass(frozen=True)
class Verified:
    """The outcome of verifying one image against the query.

    inliers: number of correspondences the fitted model explains
    matrix: (3, 3) float64 homography from query pixels to the image's pixels, or None
    query_xy, image_xy: (inliers, 2) float32 — the inlier correspondences, in pixels
    """

    inliers: int
    matrix: np.ndarray | None
    query_xy: np.ndarray
    image_xy: np.ndarray

    def __post_init__(self) -> None:
        if self.query_xy.shape != (self.inliers, 2) or self.image_xy.shape != (self.inliers, 2):
            raise ValueError(
                f"{self.inliers} inliers but positions {self.query_xy.shape}, {self.image_xy.shape}"
            )

    @classmethod
    def none(cls) -> Verified:
        empty = np.zeros((0, 2), np.float32)
        return cls(0, None, empty, empty)

    def map_box(self, box: tuple[float, float, float, float]) -> np.ndarray | None:
        """The query box `(x, y, w, h)` mapped into the image: `(4, 2)` corners, or None (also
        when a corner maps to infinity)."""
        if self.matrix is None:
            return None
        x, y, w, h = box
        corners = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)
        mapped = cv2.perspectiveTransform(corners[None], self.matrix)[0].astype(np.float32)
        return mapped if np.isfinite(mapped).all() else None


def mutual_nearest(q: np.ndarray, d: np.ndarray, min_similarity: float) -> np.ndarray:
    """Mutual nearest neighbours between `q: (N, D)` and `d: (M, D)` unit rows.

    Returns `(K, 2)` int64 index pairs `(i, j)` with `q[i] . d[j] >= min_similarity`, where each
    is the other's most similar row.
    """
    return mutual_nearest_many(q, [d], min_similarity)[0]


def mutual_nearest_many(
    q: np.ndarray, images: list[np.ndarray], min_similarity: float
) -> list[np.ndarray]:
    """`mutual_nearest(q, d, min_similarity)` for each `d: (M_i, D)` of `images`.

    One image at a time: its `(N, M_i)` similarities stay in cache. Each query row's best image
    row comes from one argmax along the rows; it is mutual when it also holds the best value of
    its column, which needs only a max down the columns, not a second argmax.
    """
    if q.ndim != 2:
        raise ValueError(f"query descriptors must be (N, D), got {q.shape}")
    query = np.ascontiguousarray(q, np.float32)
    rows = np.arange(len(q))
    out: list[np.ndarray] = []
    for d in images:
        if d.ndim != 2 or d.shape[1] != q.shape[1]:
            raise ValueError(f"descriptors disagree: {q.shape} vs {d.shape}")
        if not len(q) or not len(d):
            out.append(np.zeros((0, 2), np.int64))
            continue
        sim = query @ np.asarray(d, np.float32).T  # (N, M)
        best_d = sim.argmax(axis=1)  # each query row's best image row
        best = sim[rows, best_d]
        keep = (best >= sim.max(axis=0)[best_d]) & (best >= min_similarity)
        out.append(np.stack([rows[keep], best_d[keep]], axis=1).astype(np.int64))
    return out


def fit_model(
    query_xy: np.ndarray,
    image_xy: np.ndarray,
    threshold: float,
    model: str = "affine",
    seed: int = 0,
) -> Verified:
    """Fit a geometric model mapping `query_xy: (K, 2)` onto `image_xy: (K, 2)` with RANSAC.

    `threshold` is the inlier distance in the image's pixels. `model` is 'affine' (6 degrees of
    freedom; robust with the few, coarse correspondences of convolutional features) or
    'homography' (8, OpenCV's USAC MAGSAC++). Fewer than the model's minimal sample plus one
    correspondences give no model.
    """
    if query_xy.shape != image_xy.shape or query_xy.ndim != 2 or query_xy.shape[1] != 2:
        raise ValueError(f"positions must both be (K, 2), got {query_xy.shape}, {image_xy.shape}")
    if model not in MODELS:
        raise ValueError(f"unknown geometric model {model!r}; allowed: {', '.join(MODELS)}")
    if len(query_xy) <= MODELS[model]:
        return Verified.none()
    src = np.ascontiguousarray(query_xy, np.float32)
    dst = np.ascontiguousarray(image_xy, np.float32)
    cv2.setRNGSeed(seed)
    if model == "affine":
        affine, mask = cv2.estimateAffine2D(
            src,
            dst,
            method=cv2.RANSAC,
            ransacReprojThreshold=threshold,
            maxIters=2000,
            confidence=0.999,
            refineIters=10,
        )
        matrix = None if affine is None else np.vstack([affine, [0.0, 0.0, 1.0]])
    else:
        matrix, mask = cv2.findHomography(
            src, dst, cv2.USAC_MAGSAC, threshold, maxIters=2000, confidence=0.999
        )
    if matrix is None or mask is None or not _plausible(matrix):
        return Verified.none()
    inlier = mask.ravel().astype(bool)
    return Verified(int(inlier.sum()), matrix.astype(np.float64), src[inlier], dst[inlier])


MODELS = {"affine": 3, "homography": 4}
"""Geometric models and the size of their minimal sample."""


def _plausible(matrix: np.ndarray) -> bool:
    """Rejects degenerate fits: a flip, or a scale change beyond 1:10 either way."""
    det = float(np.linalg.det(matrix[:2, :2]))
    return 0.01 < det < 100.0


def verify_pair(
    query_xy: np.ndarray,
    image_xy: np.ndarray,
    pairs: np.ndarray,
    image_side: float,
    settings: RerankSettings,
) -> Verified:
    """Verify one image from its tentative correspondences `pairs: (K, 2)` (query row, image
    row), positions `(N, 2)` and `(M, 2)` in pixels; `image_side` is the image's longer side in
    pixels, which scales the inlier threshold."""
    if len(pairs) <= MODELS[settings.model]:
        return Verified.none()
    return fit_model(
        query_xy[pairs[:, 0]],
        image_xy[pairs[:, 1]],
        settings.inlier_threshold * image_side,
        settings.model,
    )


def inlier_bonus(inliers: np.ndarray, settings: RerankSettings) -> np.ndarray:
    """What verification adds to a `(R,)` first-stage score: nothing below `min_inliers`,
    then `weight` per inlier beyond it, saturating at `saturation` inliers."""
    counted = np.clip(inliers - settings.min_inliers + 1, 0, None)
    cap = settings.saturation - settings.min_inliers + 1
    return (settings.weight * np.minimum(counted, cap) / cap).astype(np.float32)
