"""Kind-of-thing search ('similar' mode): images of the same kind of thing as the query (the
same species, the same kind of print), not the same object.

What the network knows about categories is in its pooled last layer: the raw GeM descriptor
before lookalike's whitening, which the ImageNet classifier reads. The whitening that makes
that descriptor good at finding the *same* object (it flattens the directions every image of a
kind shares) is what hurts here, so this space keeps them:

- the collection's raw global descriptors are centred on their mean and projected on their
  `dim` leading principal directions (no whitening), unit norm;
- each image's vector is replaced by a weighted mean of itself and its `neighbours` nearest
  images (database-side augmentation, weights `similarity ** alpha`): an image then stands for
  its neighbourhood, and one odd photograph of a kind moves towards the others;
- a query is projected the same way and expanded with its `neighbours` best images (alpha
  query expansion) before the final ranking.

All of it is learned from the collection without labels, when a generation is built
(`benchmarks/corel.py` measures it on Corel's categories).

Files in a generation folder: `similar.npy` `(n, dim)` float16, memory-mapped, and
`similar-space.npz` (the mean and the projection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.index.atomic import save_npy
from lookalike.settings import SimilarSettings

VECTORS = "similar"
SPACE = "similar-space.npz"
FIT_SAMPLE = 20_000
"""At most this many images' descriptors fit the projection (drawn with a fixed seed)."""
BLOCK = 2048
"""Rows compared at a time when finding every image's neighbours."""


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class SimilarSpace:
    """`mean: (G,)` and `components: (d, G)` float32: raw global descriptor -> `(d,)` unit
    vector of the 'similar' space."""

    mean: np.ndarray
    components: np.ndarray

    def __post_init__(self) -> None:
        if self.mean.ndim != 1 or self.components.ndim != 2:
            raise ValueError(f"bad space shapes {self.mean.shape}, {self.components.shape}")
        if self.components.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"projection {self.components.shape} does not fit descriptors of {self.mean.shape}"
            )

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, raw: np.ndarray, dim: int) -> SimilarSpace:
        """Centre and principal directions of `raw: (n, G)` (n >= 1); `dim` at most n - 1 and
        G (at least 1)."""
        if raw.ndim != 2 or not len(raw):
            raise ValueError(f"need (n, G) descriptors with n >= 1, got {raw.shape}")
        x = np.asarray(raw, np.float64)
        mean = x.mean(axis=0)
        centred = x - mean
        keep = max(1, min(dim, len(x) - 1, x.shape[1]))
        values, vectors = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(values)[::-1][:keep]
        components = vectors[:, order].T
        # a sign per direction, fixed by the data, so that a refit gives the same space
        signs = np.sign(components[np.arange(keep), np.abs(components).argmax(axis=1)])
        components *= np.where(signs == 0, 1.0, signs)[:, None]
        return cls(mean.astype(np.float32), components.astype(np.float32))

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """`raw: (n, G)` -> `(n, d)` float32 unit rows."""
        return _unit((np.asarray(raw, np.float32) - self.mean) @ self.components.T)

    def save(self, folder: Path) -> None:
        np.savez(folder / SPACE, mean=self.mean, components=self.components)

    @classmethod
    def load(cls, folder: Path) -> SimilarSpace:
        with np.load(folder / SPACE, allow_pickle=False) as f:
            return cls(np.asarray(f["mean"]), np.asarray(f["components"]))


def neighbours(vectors: np.ndarray, k: int, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` most similar other rows of `vectors: (n, d)` unit rows, best first:
    `(rows, similarities)`, both `(n, min(k, n - 1))`. Exact, `block` rows at a time: n^2 d
    products (6.4e11 at 50,000 rows of 256 dimensions)."""
    n = len(vectors)
    k = min(k, n - 1)
    rows = np.zeros((n, max(k, 0)), np.int64)
    sims = np.zeros((n, max(k, 0)), np.float32)
    if k <= 0:
        return rows, sims
    x = np.ascontiguousarray(vectors, np.float32)
    for start in range(0, n, block):
        s = x[start : start + block] @ x.T
        s[np.arange(len(s)), np.arange(start, start + len(s))] = -np.inf  # not itself
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(s, top, axis=1)
        order = np.lexsort((top, -top_sims), axis=1)  # best first, ties by row
        rows[start : start + len(s)] = np.take_along_axis(top, order, axis=1)
        sims[start : start + len(s)] = np.take_along_axis(top_sims, order, axis=1)
    return rows, sims


def augmented(vectors: np.ndarray, rows: np.ndarray, sims: np.ndarray, alpha: float) -> np.ndarray:
    """Each of `vectors: (n, d)` plus its neighbours `rows: (n, k)` weighted by
    `max(sims, 0) ** alpha`, unit norm -> `(n, d)` float32."""
    weights = np.clip(sims, 0.0, None) ** alpha
    out = np.asarray(vectors, np.float32).copy()
    for j in range(rows.shape[1]):
        out += weights[:, j : j + 1] * vectors[rows[:, j]]
    return _unit(out)


def build_similar(
    read_blocks: Callable[[], Iterable[np.ndarray]],
    n: int,
    raw_dim: int,
    settings: SimilarSettings,
    seed: int = 0,
) -> tuple[SimilarSpace, np.ndarray]:
    """The space and the `(n, d)` float16 vectors of a collection of `n` images whose raw
    `(raw_dim,)` global descriptors `read_blocks()` yields, in row order, a block at a time
    (called twice: for a sample that fits the space, then to project every row). Augmented
    with each image's neighbours when `n` is below `settings.augment_below`. No image: a space
    that maps everything to 0."""
    if n == 0:
        nothing = SimilarSpace(np.zeros(raw_dim, np.float32), np.zeros((1, raw_dim), np.float32))
        return nothing, np.zeros((0, 1), np.float16)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(n, min(n, FIT_SAMPLE), replace=False))
    sample, start = [], 0
    for block in read_blocks():
        inside = take[(take >= start) & (take < start + len(block))] - start
        sample.append(np.asarray(block[inside], np.float32))
        start += len(block)
    if start != n:
        raise ValueError(f"the blocks hold {start} rows, not {n}")
    space = SimilarSpace.fit(np.concatenate(sample), settings.dim)
    vectors = np.zeros((n, space.dim), np.float16)
    start = 0
    for block in read_blocks():
        vectors[start : start + len(block)] = space.apply(block)
        start += len(block)
    if settings.neighbours and 1 < n < settings.augment_below:
        rows, sims = neighbours(vectors.astype(np.float32), settings.neighbours)
        vectors = augmented(vectors.astype(np.float32), rows, sims, settings.alpha)
    return space, vectors.astype(np.float16)


def save_similar(folder: Path, space: SimilarSpace, vectors: np.ndarray) -> None:
    space.save(folder)
    save_npy(folder, VECTORS, vectors)


@dataclass(frozen=True)
class SimilarIndex:
    """A generation's 'similar' space and its images' vectors (`(n, d)` float16, mapped)."""

    space: SimilarSpace
    vectors: np.ndarray
    settings: SimilarSettings

    @classmethod
    def load(cls, folder: Path, settings: SimilarSettings) -> SimilarIndex:
        vectors = np.load(folder / f"{VECTORS}.npy", mmap_mode="r", allow_pickle=False)
        space = SimilarSpace.load(folder)
        if vectors.ndim != 2 or vectors.shape[1] != space.dim:
            raise ValueError(f"similar vectors {vectors.shape} do not fit a {space.dim}-D space")
        return cls(space, vectors, settings)

    @property
    def n_images(self) -> int:
        return int(self.vectors.shape[0])

    def scores(self, raw: np.ndarray, leave_out: np.ndarray | None = None) -> np.ndarray:
        """`(n,)` float32 similarities of every image to the query whose raw global descriptor
        is `raw: (G,)`, after expanding the query with its best images (`leave_out` rows,
        e.g. the query's own, neither expand it nor change)."""
        if raw.ndim != 1 or raw.shape[0] != self.space.mean.shape[0]:
            raise ValueError(f"query must be ({self.space.mean.shape[0]},), got {raw.shape}")
        query = self.space.apply(raw[None])[0]
        scores = self._cosines(query)
        k = self.settings.neighbours
        if k and self.n_images:
            ranked = scores.copy()
            if leave_out is not None and len(leave_out):
                ranked[leave_out] = -np.inf
            k = min(k, int(np.isfinite(ranked).sum()))
            if k:
                best = np.argpartition(-ranked, k - 1)[:k]
                weights = np.clip(ranked[best], 0.0, None) ** self.settings.alpha
                rows = np.asarray(self.vectors[np.sort(best)], np.float32)
                weights = weights[np.argsort(best)]
                query = _unit(query + weights @ rows)
                scores = self._cosines(query)
        return scores

    def _cosines(self, query: np.ndarray) -> np.ndarray:
        out = np.empty(self.n_images, np.float32)
        step = 65_536
        for start in range(0, self.n_images, step):
            block = np.asarray(self.vectors[start : start + step], np.float32)
            out[start : start + len(block)] = block @ query
        return out
