"""Compact local descriptors (issue 24, part 1, first step): a product quantiser that keeps a
descriptor in a few bytes and gives back an approximation of it.

A descriptor of D dimensions is cut into `m` consecutive sub-vectors of D / m dimensions; each
is replaced by the number (one byte) of its nearest of 256 centroids learned on that sub-space
(k-means on a sample of the collection's own descriptors). Decoding joins the centroids and
normalises the result to unit length, as the stored descriptors are. At 112 raw dimensions
(EfficientNet-Lite0's local layer) and m = 16, a descriptor takes 16 bytes instead of 224 in
float16. Distances between a query descriptor and decoded ones are what spatial verification
needs: it matches mutual nearest neighbours above a cosine, then fits a geometric model to
their positions.

`FeatureCodec.fit` learns it; `encode` and `decode` turn `(N, D)` descriptors into `(N, m)`
uint8 codes and back; `save` and `load` keep it in a folder (`codec.npz`), identified by a hash
of its centroids (`key`).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from lookalike.index.atomic import atomic_dir

CENTROIDS = 256
"""Centroids a sub-space: one byte a sub-vector."""
MIN_SAMPLE = 39 * CENTROIDS
"""Descriptors a fit needs at least (FAISS's fewest training points for 256 centroids)."""
FILE = "codec.npz"


@dataclass(frozen=True)
class FeatureCodec:
    """A product quantiser: `centroids: (m, 256, D / m)` float32, sub-space j's centroids for
    dimensions `j * D / m : (j + 1) * D / m`."""

    centroids: np.ndarray

    def __post_init__(self) -> None:
        c = self.centroids
        if c.ndim != 3 or c.shape[1] != CENTROIDS or c.shape[0] < 1 or c.shape[2] < 1:
            raise ValueError(f"centroids must be (m, {CENTROIDS}, D / m), got {c.shape}")
        if c.dtype != np.float32 or not np.isfinite(c).all():
            raise ValueError("centroids must be finite float32")

    @property
    def subspaces(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        """D, the dimension of the descriptors it codes."""
        return int(self.centroids.shape[0] * self.centroids.shape[2])

    @property
    def key(self) -> str:
        """A short hash of the centroids: codes made by one codec mean nothing to another."""
        return hashlib.blake2b(self.centroids.tobytes(), digest_size=8).hexdigest()

    @classmethod
    def fit(
        cls, sample: np.ndarray, subspaces: int, *, iterations: int = 20, seed: int = 0
    ) -> FeatureCodec:
        """k-means of each sub-space of `sample: (N, D)` (N >= `MIN_SAMPLE`, D a multiple of
        `subspaces`), seeded: the same sample gives the same codec."""
        if sample.ndim != 2 or subspaces < 1 or sample.shape[1] % subspaces:
            raise ValueError(
                f"need (N, D) descriptors with D a multiple of {subspaces}, got {sample.shape}"
            )
        if len(sample) < MIN_SAMPLE:
            raise ValueError(f"need at least {MIN_SAMPLE} descriptors, got {len(sample)}")
        width = sample.shape[1] // subspaces
        x = np.ascontiguousarray(sample, dtype=np.float32)
        centroids = np.empty((subspaces, CENTROIDS, width), np.float32)
        for j in range(subspaces):
            part = np.ascontiguousarray(x[:, j * width : (j + 1) * width])
            kmeans = faiss.Kmeans(width, CENTROIDS, niter=iterations, seed=seed + j, verbose=False)
            kmeans.train(part)
            centroids[j] = kmeans.centroids
        return cls(centroids)

    def encode(self, desc: np.ndarray) -> np.ndarray:
        """`desc: (N, D)` -> `(N, m)` uint8: each sub-vector's nearest centroid."""
        if desc.ndim != 2 or desc.shape[1] != self.dim:
            raise ValueError(f"expected (N, {self.dim}) descriptors, got {desc.shape}")
        x = np.asarray(desc, dtype=np.float32)
        width = self.centroids.shape[2]
        codes = np.empty((len(x), self.subspaces), np.uint8)
        for j, centres in enumerate(self.centroids):
            part = x[:, j * width : (j + 1) * width]
            # |a - c|^2 = |a|^2 - 2 a.c + |c|^2: the first term is the same for every c
            distances = (centres * centres).sum(axis=1)[None, :] - 2.0 * (part @ centres.T)
            codes[:, j] = distances.argmin(axis=1)
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """`codes: (N, m)` uint8 -> `(N, D)` float32 approximations, each of unit length (a
        zero vector stays zero)."""
        if codes.ndim != 2 or codes.shape[1] != self.subspaces or codes.dtype != np.uint8:
            raise ValueError(f"expected (N, {self.subspaces}) uint8 codes, got {codes.shape}")
        parts = [self.centroids[j][codes[:, j]] for j in range(self.subspaces)]
        out = np.concatenate(parts, axis=1) if len(codes) else np.zeros((0, self.dim))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def save(self, folder: Path) -> None:
        """Into `folder`, which must not exist yet (written whole or not at all: a codec is
        learned once and kept, since every code depends on it)."""
        with atomic_dir(folder) as tmp:
            np.savez(tmp / FILE, centroids=self.centroids)

    @classmethod
    def load(cls, folder: Path) -> FeatureCodec:
        """From `save`'s folder (ValueError when it is damaged)."""
        try:
            with np.load(folder / FILE, allow_pickle=False) as stored:
                return cls(np.asarray(stored["centroids"]))
        except (OSError, KeyError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"the codec in {folder} cannot be read ({exc})") from exc
