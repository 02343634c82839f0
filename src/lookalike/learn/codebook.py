"""The visual vocabulary: k-means centroids of whitened local descriptors (FAISS)."""

from __future__ import annotations

import logging

import faiss
import numpy as np

logger = logging.getLogger("lookalike")

# FAISS wants about 39 training points per centroid; fewer and it warns and clusters poorly.
MIN_POINTS_PER_CENTROID = 39


def fit_codebook(x: np.ndarray, size: int, *, iterations: int = 10, seed: int = 0) -> np.ndarray:
    """k-means on `x: (N, d)` -> centroids `(k, d)` float32, `k = min(size, N // 39)`."""
    if x.ndim != 2:
        raise ValueError(f"expected (N, d) descriptors, got {x.shape}")
    k = min(size, x.shape[0] // MIN_POINTS_PER_CENTROID)
    if k < 2:
        raise ValueError(f"too few descriptors ({x.shape[0]}) to fit a codebook")
    if k < size:
        logger.info("codebook reduced to %d words for %d descriptors", k, x.shape[0])
    kmeans = faiss.Kmeans(x.shape[1], k, niter=iterations, seed=seed, verbose=False)
    kmeans.cp.max_points_per_centroid = 10_000
    kmeans.train(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(kmeans.centroids, dtype=np.float32)
