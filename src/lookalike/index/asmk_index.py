"""The ASMK inverted file (Tolias et al.) over binarised residuals, with the `asmk` package's
codebook, kernel and binarisation.

Images are encoded once per codebook: each image's whitened local descriptors are assigned to
their nearest visual word, residuals are summed per word and binarised (`asmk`'s kernel). The
inverted file is built in bulk from those codes and stored as flat arrays (no pickle).

`AsmkSearch` is what the query pipeline needs of an ASMK index; the inverted file here scores
every image, `asmk_shortlist.ShortlistAsmk` (for millions of images) only given candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from asmk import codebook as asmk_codebook
from asmk import hamming
from asmk import index as asmk_index
from asmk import kernel as asmk_kernel

from lookalike.index.atomic import save_npy

INVERTED = "inverted"


@dataclass(frozen=True)
class ImageCode:
    """One image in ASMK form: `words: (W,) int32` unique visual words, ascending, and
    `residuals: (W, B) uint32` their packed binarised aggregated residuals (`B = ceil(d / 32)`,
    `asmk`'s packing)."""

    words: np.ndarray
    residuals: np.ndarray


class Vocabulary:
    """A codebook with its FAISS search index and the ASMK kernel."""

    def __init__(self, centroids: np.ndarray) -> None:
        if centroids.ndim != 2:
            raise ValueError(f"centroids must be (K, d), got {centroids.shape}")
        self.codebook = asmk_codebook.Codebook(asmk_index.FaissL2Index(), size=len(centroids))
        self.codebook.index(np.ascontiguousarray(centroids, dtype=np.float32))
        self.kernel = asmk_kernel.ASMKKernel(self.codebook, binary=True)

    @property
    def size(self) -> int:
        return int(self.codebook.size)

    def assign(self, desc: np.ndarray, assignments: int = 1) -> np.ndarray:
        """Nearest `assignments` words of each row of `desc: (N, d)` -> `(N, assignments)` int64."""
        _, words = self.codebook.quantize(desc, multiple_assignment=assignments)
        return np.asarray(words)

    def encode(self, desc: np.ndarray, assignments: int = 1) -> ImageCode:
        """Whitened local descriptors of one image `(N, d)` -> its ASMK code."""
        return self.encode_many([desc], assignments)[0]

    def encode_many(self, descs: Sequence[np.ndarray], assignments: int = 1) -> list[ImageCode]:
        """ASMK codes of several images (`(N_i, d)` each), quantised in one FAISS search."""
        if not descs:
            return []
        d = descs[0].shape[1]
        counts = [len(x) for x in descs]
        words = self.assign(np.concatenate(descs), assignments) if sum(counts) else None
        codes, start = [], 0
        for desc, n in zip(descs, counts, strict=True):
            if n == 0 or words is None:
                codes.append(
                    ImageCode(np.zeros(0, np.int32), np.zeros((0, packed_width(d)), np.uint32))
                )
            else:
                codes.append(aggregate(desc, words[start : start + n], self.codebook.centroids))
            start += n
        return codes


class AsmkSearch(Protocol):
    """What the query pipeline needs of an ASMK index over rows 0..n_images-1: its vocabulary
    (to encode queries), its `kind` (`INVERTED`, or the shortlist kind that scores only
    candidate rows: `asmk_shortlist.ShortlistSearch`) and every row's similarity to a query
    code, `(n_images,)` float32."""

    vocabulary: Vocabulary
    kind: str

    @property
    def n_images(self) -> int: ...

    def scores(self, code: ImageCode, *, alpha: float, threshold: float) -> np.ndarray: ...


def spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions `starts[i] .. starts[i] + lengths[i] - 1` of every span, one span after
    another: `starts, lengths: (m,)` int -> `(lengths.sum(),)` int64."""
    lengths = np.asarray(lengths, dtype=np.int64)
    firsts = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, np.int64) - firsts, lengths) + np.arange(
        int(lengths.sum()), dtype=np.int64
    )


def kernel_values(
    theirs: np.ndarray, ours: np.ndarray, *, alpha: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """ASMK's selectivity on pairs of packed binarised residuals, `theirs, ours: (M, B)` uint32:
    sim = 1 - 2 x Hamming distance / 32B (asmk's normaliser), kept where sim >= `threshold`,
    raised to `alpha` -> (kept pair positions `(M',)` int64, their values `(M',)` float32)."""
    if theirs.shape != ours.shape or theirs.ndim != 2:
        raise ValueError(f"residual pairs disagree: {theirs.shape} vs {ours.shape}")
    differ = np.bitwise_xor(_as_words(_as_records(theirs)), _as_words(_as_records(ours)))
    bits = np.bitwise_count(differ).sum(axis=1, dtype=np.int32)
    sim = 1.0 - bits.astype(np.float32) * np.float32(2.0 / (32 * theirs.shape[1]))
    keep = np.flatnonzero(sim >= threshold)
    kept = sim.take(keep)
    kernel = kept * kept * kept if alpha == 3.0 else np.power(kept, np.float32(alpha))
    return keep, kernel


def inverse_norms(words_per_image: np.ndarray) -> np.ndarray:
    """With idf off an image's score is divided by sqrt(its number of words): `(n,)` counts ->
    `(n,)` float32 1 / sqrt(max(count, 1))."""
    counts = np.asarray(words_per_image, dtype=np.float64)
    return (1.0 / np.sqrt(np.maximum(counts, 1.0))).astype(np.float32)


def _as_records(packed: np.ndarray) -> np.ndarray:
    """`(N, B)` uint32 packed residuals as `(N,)` opaque records of 4B bytes (a row gathered
    at once)."""
    packed = np.ascontiguousarray(packed)
    return packed.view(np.dtype((np.void, 4 * packed.shape[1]))).reshape(len(packed))


def _as_words(records: np.ndarray) -> np.ndarray:
    """`(N,)` records from `_as_records` as `(N, W)` machine words (uint64 when the width
    allows, else uint32)."""
    size = records.dtype.itemsize
    word = np.uint64 if size % 8 == 0 else np.uint32
    return records.view(word).reshape(len(records), size // np.dtype(word).itemsize)


def take_rows(packed: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Rows `positions: (M,)` of packed residuals `(N, B)` uint32 (an array or a memory map)
    -> `(M, B)` uint32, each row gathered at once."""
    records = _as_records(packed).take(positions)
    return records.view(np.uint32).reshape(len(records), packed.shape[1])


def packed_width(dim: int) -> int:
    """uint32 words per binarised residual of `dim` bits, as `asmk` packs them."""
    return (dim + 31) // 32


def aggregate(desc: np.ndarray, words: np.ndarray, centroids: np.ndarray) -> ImageCode:
    """ASMK aggregation of one image, vectorised: the same result as `asmk`'s
    `ASMKKernel.aggregate_image` (sum of residuals per visual word, binarised and packed).

    desc: (N, d) float32; words: (N, A) int — the A words each descriptor is assigned to;
    centroids: (K, d) float32.
    """
    if desc.ndim != 2 or words.ndim != 2 or words.shape[0] != desc.shape[0]:
        raise ValueError(f"desc (N, d) and words (N, A) disagree: {desc.shape}, {words.shape}")
    flat_words = words.reshape(-1)
    rows = np.repeat(np.arange(len(desc)), words.shape[1])
    order = np.argsort(flat_words, kind="stable")
    flat_words, rows = flat_words[order], rows[order]
    unique, starts = np.unique(flat_words, return_index=True)
    residuals = desc[rows] - centroids[flat_words]
    summed = np.add.reduceat(residuals, starts, axis=0).astype(np.float32)
    return ImageCode(words=unique.astype(np.int32), residuals=hamming.binarize_and_pack_2D(summed))


class AsmkIndex:
    """An ASMK inverted file over images 0..n-1 (rows), built in bulk from image codes.

    Held as flat arrays, entries sorted by visual word: `residuals: (E, B) uint32` packed
    binarised residuals, `rows: (E,) int32` their images, `counts: (K,) int32` entries per word.
    Scoring gathers the posting lists of the query's words and computes every entry's kernel
    value in a few vectorised passes (the same values, to float rounding, as `asmk`'s
    per-word loop, which holds the interpreter for most of a query)."""

    kind = INVERTED

    def __init__(
        self,
        residuals: np.ndarray,
        rows: np.ndarray,
        counts: np.ndarray,
        n_images: int,
        vocabulary: Vocabulary,
    ) -> None:
        if len(counts) != vocabulary.size:
            raise ValueError(f"{len(counts)} word counts for a codebook of {vocabulary.size}")
        if residuals.shape[0] != rows.shape[0] or rows.shape[0] != int(counts.sum()):
            raise ValueError(
                f"entries disagree: residuals {residuals.shape}, rows {rows.shape}, "
                f"counts sum {int(counts.sum())}"
            )
        self.residuals = residuals
        self.rows = rows.astype(np.int32, copy=False)
        self.counts = counts.astype(np.int32, copy=False)
        self.bounds = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        self._n_images = int(n_images)
        self.vocabulary = vocabulary
        self.inverse_norm = inverse_norms(np.bincount(self.rows, minlength=self._n_images))

    @property
    def n_images(self) -> int:
        return self._n_images

    @classmethod
    def build(cls, vocabulary: Vocabulary, codes: Sequence[ImageCode]) -> AsmkIndex:
        """Inverted file for `codes` (image row i = codes[i])."""
        if codes:
            words = np.concatenate([c.words for c in codes]).astype(np.int64)
            residuals = np.concatenate([c.residuals for c in codes])
            rows = np.repeat(np.arange(len(codes)), [len(c.words) for c in codes])
        else:
            d = vocabulary.codebook.centroids.shape[1]
            words = rows = np.zeros(0, np.int64)
            residuals = np.zeros((0, packed_width(d)), np.uint32)
        return cls.from_entries(vocabulary, words, residuals, rows, len(codes))

    @classmethod
    def from_entries(
        cls,
        vocabulary: Vocabulary,
        words: np.ndarray,
        residuals: np.ndarray,
        rows: np.ndarray,
        n_images: int,
    ) -> AsmkIndex:
        """Inverted file over images 0..n_images-1 from their entries in any order: `words:
        (E,)` int, `residuals: (E, B)` uint32, `rows: (E,)` int. A word's entries are held by
        ascending row (what `code` searches)."""
        words = np.asarray(words, dtype=np.int64)
        rows = np.asarray(rows)
        if len(rows) and np.any(np.diff(rows) < 0):
            order = np.lexsort((rows, words))
        else:  # entries given image after image, as a build gives them: a stable sort keeps that
            order = np.argsort(words, kind="stable")
        counts = np.bincount(words, minlength=vocabulary.size).astype(np.int32)
        return cls(residuals[order], rows[order], counts, n_images, vocabulary)

    def scores(self, code: ImageCode, *, alpha: float, threshold: float) -> np.ndarray:
        """ASMK similarity of a query code to every indexed image -> `(n_images,)` float32:
        for each word shared with an image, the kernel sim^alpha of their residuals (sim =
        1 - 2 x normalised Hamming distance, kept when >= `threshold`), summed, divided by the
        square roots of both sides' word counts."""
        out = np.zeros(self.n_images, dtype=np.float32)
        if self.n_images == 0 or len(code.words) == 0:
            return out
        words = code.words.astype(np.int64)
        starts = self.bounds[words]
        lengths = self.bounds[words + 1] - starts
        if lengths.sum():
            # the posting lists of the query's words, one after another, and the query's
            # residual repeated along its word's list
            entries = spans(starts, lengths)
            theirs = take_rows(self.residuals, entries)
            ours = np.repeat(code.residuals, lengths, axis=0)
            keep, kernel = kernel_values(theirs, ours, alpha=alpha, threshold=threshold)
            rows = self.rows.take(entries.take(keep))
            weights = kernel * self.inverse_norm.take(rows)
            out += np.bincount(rows, weights=weights, minlength=self.n_images).astype(np.float32)
        return out / np.float32(np.sqrt(len(words)))

    def code(self, row: int) -> ImageCode:
        """Image `row`'s code, gathered from the posting lists (words ascending): a binary
        search of every word's list at once, whose rows ascend (`from_entries`), so that it
        costs some 30 passes over the words, not one over the entries."""
        if not 0 <= row < self.n_images:
            raise IndexError(f"row {row} of an index of {self.n_images} images")
        starts, ends = self.bounds[:-1], self.bounds[1:]
        lo, hi = starts.copy(), ends.copy()
        last = max(len(self.rows) - 1, 0)
        while (active := lo < hi).any():
            mid = (lo + hi) // 2
            right = active & (self.rows.take(np.minimum(mid, last)) < row)
            lo = np.where(right, mid + 1, lo)
            hi = np.where(active & ~right, mid, hi)
        found = (lo < ends) & (self.rows.take(np.minimum(lo, last)) == row)
        words = np.flatnonzero(found)
        return ImageCode(words.astype(np.int32), np.array(self.residuals[lo[found]]))

    def params(self) -> dict[str, Any]:
        return {"kind": INVERTED}

    def ram_bytes(self) -> int:
        """Bytes the inverted file holds in RAM: residuals, row numbers, per-word bounds and
        per-image norms."""
        parts = (self.residuals, self.rows, self.counts, self.bounds, self.inverse_norm)
        return int(sum(a.nbytes for a in parts))

    def save(self, folder: Path) -> None:
        """Flat arrays: entries sorted by word, with per-word counts."""
        folder.mkdir(parents=True, exist_ok=True)
        save_npy(folder, "counts", self.counts)
        save_npy(folder, "residuals", self.residuals)
        save_npy(folder, "rows", self.rows)
        save_npy(folder, "n_images", np.asarray([self.n_images], dtype=np.int64))

    @classmethod
    def load(cls, folder: Path, vocabulary: Vocabulary) -> AsmkIndex:
        def load(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", allow_pickle=False)

        counts = load("counts")
        if len(counts) != vocabulary.size:
            raise ValueError(
                f"inverted file in {folder} has {len(counts)} words, codebook {vocabulary.size}"
            )
        return cls(load("residuals"), load("rows"), counts, int(load("n_images")[0]), vocabulary)
