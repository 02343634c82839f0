"""PCA-whitening fitted on the collection's own descriptors (no labels)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Whitening:
    """Learned PCA-whitening: `apply(x) = normalize((x - mean) @ projection)`.

    mean: (D,) float32; projection: (D, d) float32
    """

    mean: np.ndarray
    projection: np.ndarray

    def __post_init__(self) -> None:
        d_in = self.mean.shape[0]
        if self.mean.ndim != 1 or self.projection.ndim != 2 or self.projection.shape[0] != d_in:
            raise ValueError(
                f"mean (D,) and projection (D, d) disagree: {self.mean.shape}, "
                f"{self.projection.shape}"
            )

    @property
    def input_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def output_dim(self) -> int:
        return int(self.projection.shape[1])

    def leading(self, dims: int) -> Whitening:
        """The same whitening keeping only its first `dims` output directions (the strongest,
        as `fit_whitening` orders them); `dims` beyond `output_dim` keeps them all."""
        if dims < 1:
            raise ValueError(f"dims must be positive, got {dims}")
        return Whitening(mean=self.mean, projection=np.ascontiguousarray(self.projection[:, :dims]))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """`x: (N, D)` -> `(N, d)` float32, each row L2-normalised."""
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected (N, {self.input_dim}) descriptors, got {x.shape}")
        y = (x.astype(np.float32) - self.mean) @ self.projection
        return l2_normalize(y)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of `x: (N, D)` scaled to unit norm, float32."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32)


def fit_whitening(x: np.ndarray, dim: int, *, shrinkage: float = 0.0) -> Whitening:
    """PCA-whitening of `x: (N, D)` keeping the `dim` strongest directions.

    `dim` is capped by the data's rank (N - 1 and D). `shrinkage` adds that fraction of the mean
    eigenvalue to every eigenvalue before whitening, which softens the weakest directions.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) descriptors to fit a whitening, got {x.shape}")
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    cov = centred.T @ centred / len(x)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][: max(1, min(dim, x.shape[0] - 1, x.shape[1]))]
    eigval = np.maximum(eigval[order], 1e-12)
    if shrinkage:
        eigval = eigval + shrinkage * eigval.mean()
    projection = eigvec[:, order] / np.sqrt(eigval)
    return Whitening(mean=mean.astype(np.float32), projection=projection.astype(np.float32))
