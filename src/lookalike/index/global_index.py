"""The global index over whitened, unit-norm global descriptors (FAISS), chosen by size.

Two kinds, with one interface (`GlobalSearch`):

- `GlobalIndex`, exact: FAISS `IndexFlatIP`, every vector in RAM as float32 (4 x d bytes an
  image: 1 kB at d = 256). The default below `IndexSettings.exact_below` images.
- `CompressedGlobalIndex`: an inverted file of 4-bit product-quantisation codes in RAM (FAISS
  `IVF{nlist},PQ{m}x4fs`, m / 2 bytes an image plus an 8-byte row number, plus the centroids),
  whose best `refine` rows are scored again from float16 copies of the vectors kept on disk and
  memory-mapped (`global-refine.npy`, 2 x d bytes an image; the page cache holds what is read).

On disk, in a generation folder: `global.faiss` (either kind), `global-refine.npy` (compressed
only), and the parameters under `global_index` in `global.json` (`save_global`, `load_global`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from lookalike.settings import IndexSettings

logger = logging.getLogger("lookalike")

INDEX_FILE = "global.faiss"
REFINE_FILE = "global-refine.npy"
EXACT = "exact"
COMPRESSED = "ivfpq-fastscan+refine"
EXACT_FAISS_NAME = "IndexFlatIP"  # what global.json's "index" has always said for the exact kind


class GlobalSearch(Protocol):
    """What the query pipeline needs of a global index; rows are 0..n_images-1."""

    kind: str

    @property
    def n_images(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def scores(self, query: np.ndarray) -> np.ndarray: ...

    def vectors(self, rows: np.ndarray) -> np.ndarray: ...

    def params(self) -> dict[str, Any]: ...

    def ram_bytes(self) -> int: ...


def _check_vectors(vectors: np.ndarray) -> None:
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (n, d), got {vectors.shape}")


def _query_row(query: np.ndarray, dim: int) -> np.ndarray:
    """`query: (d,)` as a contiguous `(1, d)` float32 array (ValueError on another shape)."""
    if query.shape != (dim,):
        raise ValueError(f"query must be ({dim},), got {query.shape}")
    return np.ascontiguousarray(query[None], dtype=np.float32)


def floored(n_images: int, rows: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """`(n_images,)` float32 similarities from a search's `rows, sims: (k,)`: theirs on those
    rows, their lowest on every other row (a floor: no row outside the search outranks one in
    it, and nothing is computed over all rows)."""
    out = np.zeros(n_images, dtype=np.float32)
    if len(rows):
        out[:] = sims.min()
        out[rows] = sims
    return out


class _FaissRows:
    """Rows 0..n-1 of d-dimensional vectors in a FAISS `index`."""

    index: faiss.Index

    @property
    def n_images(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)


class GlobalIndex(_FaissRows):
    """Exact: FAISS `IndexFlatIP` over unit vectors of rows 0..n-1."""

    kind = EXACT

    def __init__(self, index: faiss.Index) -> None:
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray) -> GlobalIndex:
        """`vectors: (n, d)` float32, unit norm."""
        _check_vectors(vectors)
        index = faiss.IndexFlatIP(vectors.shape[1])
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index)

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

    def params(self) -> dict[str, Any]:
        return {"kind": EXACT, "faiss": EXACT_FAISS_NAME, "dim": self.dim}

    def ram_bytes(self) -> int:
        """Bytes this index holds in RAM: the float32 vectors."""
        return self.n_images * self.dim * 4

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> GlobalIndex:
        return cls(faiss.read_index(str(path)))


MIN_COMPRESSED = 16
"""Fewest vectors a compressed index is trained on (each 4-bit sub-quantiser has 16
centroids); smaller collections are indexed exactly whatever the settings say."""


def pq_subquantizers(dim: int, pq_bytes: int) -> int:
    """4-bit sub-quantisers for `dim` dimensions in at most `pq_bytes` bytes: the largest
    divisor of `dim` not above 2 x `pq_bytes`."""
    return max(m for m in range(1, min(dim, 2 * pq_bytes) + 1) if dim % m == 0)


def auto_nlist(n_images: int) -> int:
    """Inverted lists for `n_images` vectors: the power of two nearest 4 x sqrt(n), in
    [16, 65536] (about 4,096 at a million)."""
    target = 4 * math.sqrt(max(n_images, 1))
    return int(min(65536, max(16, 2 ** round(math.log2(target)))))


def auto_nprobe(nlist: int) -> int:
    """Lists searched per query: nlist / 8 (at least 16, at most nlist): 512 of 4,096 lists at
    a million images finds the exact nearest neighbour in the top 10 for 99% of the Holidays
    queries among distractors (`benchmarks/scale_global.py`)."""
    return min(nlist, max(16, nlist // 8))


class CompressedGlobalIndex(_FaissRows):
    """IVF + 4-bit fast-scan PQ codes in RAM (`index`), re-scored from `refine: (n, d)` float16
    vectors (a read-only memmap once loaded from disk)."""

    kind = COMPRESSED

    def __init__(self, index: faiss.Index, refine: np.ndarray, settings: dict[str, Any]) -> None:
        if refine.ndim != 2 or refine.shape != (index.ntotal, index.d):
            raise ValueError(f"refine vectors {refine.shape} vs index ({index.ntotal}, {index.d})")
        self.index = index
        self.refine = refine
        self.settings = settings
        faiss.extract_index_ivf(index).nprobe = int(settings["nprobe"])

    @classmethod
    def build(cls, vectors: np.ndarray, settings: IndexSettings) -> CompressedGlobalIndex:
        """Train and fill the index on `vectors: (n, d)` float32, unit norm; `d` even."""
        _check_vectors(vectors)
        n, d = vectors.shape
        if n < MIN_COMPRESSED:
            raise ValueError(f"a compressed global index needs {MIN_COMPRESSED} vectors, got {n}")
        m = pq_subquantizers(d, settings.pq_bytes)
        nlist = min(settings.nlist or auto_nlist(n), max(1, n // 39))
        nprobe = min(settings.nprobe or auto_nprobe(nlist), nlist)
        factory = f"IVF{nlist},PQ{m}x4fs"
        index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(settings.seed)
        n_train = min(n, settings.train_per_list * nlist)
        sample = np.sort(rng.choice(n, n_train, replace=False)) if n_train < n else np.arange(n)
        faiss.extract_index_ivf(index).cp.seed = settings.seed
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
        for start in range(0, n, 65536):
            index.add(np.ascontiguousarray(vectors[start : start + 65536], dtype=np.float32))
        params = {
            "kind": COMPRESSED,
            "faiss": factory,
            "dim": d,
            "nlist": nlist,
            "pq_bytes": settings.pq_bytes,
            "pq_subquantizers": m,
            "code_bytes": math.ceil(m / 2),
            "nprobe": nprobe,
            "refine": settings.refine,
            "refine_dtype": "float16",
            "trained_on": n_train,
            "seed": settings.seed,
        }
        return cls(index, vectors.astype(np.float16), params)

    @property
    def shortlist(self) -> int:
        """Rows re-scored from the float16 vectors per search (at least the k asked for)."""
        return int(self.settings["refine"])

    def _refined(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """`(k,)` float32 similarities of `query: (d,)` to the float16 vectors of sorted
        `rows: (k,)` (sorted rows read the memmap in file order)."""
        return np.asarray(self.refine[rows], dtype=np.float32) @ query.astype(np.float32)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`query: (d,)` -> (rows `(k',)` int64, similarities `(k',)` float32), best first.

        The `max(k, refine)` best rows by their codes, re-scored from the float16 vectors:
        similarities are exact to float16 rounding (about 1e-3); rows are those the inverted
        lists searched hold, so k' < k when they hold fewer."""
        q = _query_row(query, self.dim)
        k = min(k, self.n_images)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        _, found = self.index.search(q, min(max(k, self.shortlist), self.n_images))
        rows = np.sort(found[0][found[0] >= 0]).astype(np.int64)
        sims = self._refined(q[0], rows)
        order = np.argsort(-sims, kind="stable")[:k]
        return rows[order], sims[order]

    def scores(self, query: np.ndarray) -> np.ndarray:
        """`(n,)` float32: the refined similarity of `query: (d,)` for the `refine` best rows
        (see `search`); every other row gets the smallest of those (a floor: no row outside the
        shortlist outranks one inside it, and no similarity over all n rows is computed)."""
        rows, sims = self.search(query, self.shortlist)
        return floored(self.n_images, rows, sims)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The float16 refine vectors of `rows: (k,)` -> `(k, d)` float32."""
        rows = np.asarray(rows, dtype=np.int64)
        return np.asarray(self.refine[rows], dtype=np.float32).reshape(len(rows), self.dim)

    def params(self) -> dict[str, Any]:
        return dict(self.settings)

    def ram_bytes(self) -> int:
        """Bytes the in-RAM part holds (codes, row numbers, centroids: the size of its
        serialisation, which is what reading it allocates); the refine vectors are not in it."""
        return int(faiss.serialize_index(self.index).size)

    def save(self, folder: Path) -> None:
        """`folder/global.faiss` and `folder/global-refine.npy`."""
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        np.save(folder / REFINE_FILE, np.ascontiguousarray(self.refine, dtype=np.float16))

    @classmethod
    def load(cls, folder: Path, params: dict[str, Any]) -> CompressedGlobalIndex:
        """From `save`'s files; the refine vectors memory-mapped read-only, not read."""
        refine = np.load(folder / REFINE_FILE, mmap_mode="r")
        return cls(faiss.read_index(str(folder / INDEX_FILE)), refine, params)


def build_global(
    vectors: np.ndarray, settings: IndexSettings
) -> GlobalIndex | CompressedGlobalIndex:
    """The kind of index `settings` choose for `vectors: (n, d)` float32, unit norm."""
    if settings.compressed(len(vectors)) and len(vectors) >= MIN_COMPRESSED:
        logger.info("building a compressed global index over %d images", len(vectors))
        return CompressedGlobalIndex.build(vectors, settings)
    return GlobalIndex.build(vectors)


def save_global(index: GlobalIndex | CompressedGlobalIndex, folder: Path) -> dict[str, Any]:
    """Write `index` into the generation `folder`; returns what `global.json` records of it:
    `index` (the FAISS name) and `global_index` (its parameters)."""
    if isinstance(index, CompressedGlobalIndex):
        index.save(folder)
        return {"index": index.params()["faiss"], "global_index": index.params()}
    index.save(folder / INDEX_FILE)
    return {"index": EXACT_FAISS_NAME, "global_index": index.params()}


def load_global(folder: Path, params: Mapping[str, Any]) -> GlobalIndex | CompressedGlobalIndex:
    """The global index of the generation `folder`, of the kind and parameters `params` (as
    `save_global` recorded them under `global_index`)."""
    if params.get("kind") == COMPRESSED:
        return CompressedGlobalIndex.load(folder, dict(params))
    return GlobalIndex.load(folder / INDEX_FILE)


def file_bytes(folder: Path) -> dict[str, int]:
    """On-disk sizes of a generation's global index: `global_index` (the part read into RAM)
    and `global_refine` (the float16 vectors, memory-mapped; 0 for the exact kind)."""
    sizes = {}
    for key, name in (("global_index", INDEX_FILE), ("global_refine", REFINE_FILE)):
        path = folder / name
        sizes[key] = path.stat().st_size if path.is_file() else 0
    return sizes
