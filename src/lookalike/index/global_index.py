"""The global index: exact inner-product search over whitened global descriptors (FAISS)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


class GlobalIndex:
    """FAISS `IndexFlatIP` over unit vectors of rows 0..n-1."""

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray) -> GlobalIndex:
        """`vectors: (n, d)` float32, unit norm."""
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be (n, d), got {vectors.shape}")
        index = faiss.IndexFlatIP(vectors.shape[1])
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index)

    @property
    def n_images(self) -> int:
        return int(self.index.ntotal)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`query: (d,)` -> (rows `(k',)` int64, similarities `(k',)` float32), best first."""
        k = min(k, self.n_images)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        sims, rows = self.index.search(np.ascontiguousarray(query[None], dtype=np.float32), k)
        keep = rows[0] >= 0
        return rows[0][keep], sims[0][keep]

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Similarity of `query: (d,)` to every row -> `(n,)` float32."""
        rows, sims = self.search(query, self.n_images)
        out = np.zeros(self.n_images, dtype=np.float32)
        out[rows] = sims
        return out

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The indexed vectors of `rows: (k,)` -> `(k, d)` float32."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros((0, self.index.d), np.float32)
        return np.asarray(self.index.reconstruct_batch(rows), dtype=np.float32)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> GlobalIndex:
        return cls(faiss.read_index(str(path)))
