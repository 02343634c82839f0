"""The ASMK inverted file (Tolias et al.) over binarised residuals, through the `asmk` package.

Images are encoded once per codebook: each image's whitened local descriptors are assigned to
their nearest visual word, residuals are summed per word and binarised (`asmk`'s kernel). The
inverted file is built in bulk from those codes and stored as flat arrays (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from asmk import codebook as asmk_codebook
from asmk import hamming
from asmk import index as asmk_index
from asmk import inverted_file as asmk_ivf
from asmk import kernel as asmk_kernel

from lookalike.index.atomic import save_npy


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
    """An `asmk` inverted file over images 0..n-1 (rows), built in bulk from image codes."""

    def __init__(self, ivf: asmk_ivf.IVF, vocabulary: Vocabulary) -> None:
        self.ivf = ivf
        self.vocabulary = vocabulary

    @property
    def n_images(self) -> int:
        return int(self.ivf.n_images)

    @classmethod
    def build(cls, vocabulary: Vocabulary, codes: Sequence[ImageCode]) -> AsmkIndex:
        """Inverted file for `codes` (image row i = codes[i])."""
        k = vocabulary.size
        if codes:
            words = np.concatenate([c.words for c in codes]).astype(np.int64)
            residuals = np.concatenate([c.residuals for c in codes])
            rows = np.repeat(np.arange(len(codes)), [len(c.words) for c in codes])
        else:
            d = vocabulary.codebook.centroids.shape[1]
            words = rows = np.zeros(0, np.int64)
            residuals = np.zeros((0, packed_width(d)), np.uint32)
        order = np.argsort(words, kind="stable")
        counts = np.bincount(words, minlength=k).astype(np.int32)
        return cls(_ivf_from_sorted(residuals[order], rows[order], counts, len(codes)), vocabulary)

    def scores(self, code: ImageCode, *, alpha: float, threshold: float) -> np.ndarray:
        """ASMK similarity of a query code to every indexed image -> `(n_images,)` float32."""
        out = np.zeros(self.n_images, dtype=np.float32)
        if self.n_images == 0 or len(code.words) == 0:
            return out

        def similarity(
            qvec: np.ndarray, vecs: np.ndarray, image_ids: np.ndarray
        ) -> tuple[np.ndarray, np.ndarray]:
            return self.vocabulary.kernel.similarity(
                qvec, vecs, image_ids, alpha=alpha, similarity_threshold=threshold
            )

        ranks, scores = self.ivf.search(
            code.residuals, code.words, similarity_func=similarity, topk=None
        )
        out[ranks] = scores
        return out

    def save(self, folder: Path) -> None:
        """Flat arrays: entries sorted by word, with per-word counts."""
        folder.mkdir(parents=True, exist_ok=True)
        ivf = self.ivf
        present = [w for w in range(len(ivf.counts)) if ivf.counts[w]]
        width = packed_width(self.vocabulary.codebook.centroids.shape[1])
        vecs = [ivf.ivf_vecs[w][: ivf.counts[w]] for w in present]
        rows = [ivf.ivf_image_ids[w][: ivf.counts[w]] for w in present]
        save_npy(folder, "counts", np.asarray(ivf.counts, dtype=np.int32))
        save_npy(
            folder, "residuals", np.concatenate(vecs) if vecs else np.zeros((0, width), np.uint32)
        )
        save_npy(
            folder, "rows", np.concatenate(rows).astype(np.int32) if rows else np.zeros(0, np.int32)
        )
        save_npy(folder, "n_images", np.asarray([ivf.n_images], dtype=np.int64))

    @classmethod
    def load(cls, folder: Path, vocabulary: Vocabulary) -> AsmkIndex:
        def load(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", allow_pickle=False)

        counts = load("counts")
        if len(counts) != vocabulary.size:
            raise ValueError(
                f"inverted file in {folder} has {len(counts)} words, codebook {vocabulary.size}"
            )
        ivf = _ivf_from_sorted(load("residuals"), load("rows"), counts, int(load("n_images")[0]))
        return cls(ivf, vocabulary)


def _ivf_from_sorted(
    residuals: np.ndarray, rows: np.ndarray, counts: np.ndarray, n_images: int
) -> asmk_ivf.IVF:
    """An `asmk` IVF from entries sorted by word (`counts[w]` entries for word w)."""
    bounds = np.concatenate([[0], np.cumsum(counts)])
    vecs: list[np.ndarray | None] = [None] * len(counts)
    ids: list[np.ndarray | None] = [None] * len(counts)
    for w in np.flatnonzero(counts):
        vecs[w] = residuals[bounds[w] : bounds[w + 1]]
        ids[w] = rows[bounds[w] : bounds[w + 1]].astype(np.int64)
    # With idf off, asmk normalises an image's score by sqrt(number of its words).
    norm = np.bincount(rows.astype(np.int64), minlength=n_images).astype(np.float64)
    return asmk_ivf.IVF(
        norm_factor=np.maximum(norm, 1.0),
        n_images=n_images,
        ivf_vecs=vecs,
        ivf_image_ids=ids,
        counts=counts.astype(np.int32),
        idf=np.ones(len(counts), dtype=np.float32),
        imid_offset=0,
        use_idf=False,
    )
