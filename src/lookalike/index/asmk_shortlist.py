"""ASMK for millions of images: every image's code on disk in row order, memory-mapped, scored
only on candidate rows (the global index's best), chosen by size like the global index.

Two kinds of ASMK index, one interface for the query pipeline (`asmk_index.AsmkSearch`):

- `AsmkIndex`, the inverted file (`asmk/` in a generation folder), held in RAM (about 20 bytes
  a visual word an image: some 9 kB an image with 1000 local features and 4096 words) and
  scoring every image. The default below `IndexSettings.exact_below` images.
- `ShortlistAsmk` (`asmk-codes/`): the same codes in image order, as flat arrays mapped from
  disk, of which a query reads only its candidates' (the `IndexSettings.candidates` best rows
  of the global index, `search.query.score`); RAM holds the per-image offsets (8 bytes an
  image). Its scores on the candidates are exactly the inverted file's. The query pipeline sees
  it as a `ShortlistSearch` (`as_shortlist`), which the shards of such a generation serve too
  (`scale.split`: each part holds its rows' codes in this layout).

Files of the shortlist kind, named as an encoded shard's codes (`codes.encode_shard`):

- `word_offsets.npy` (n + 1,) int64: image i's entries are `word_offsets[i]:word_offsets[i+1]`
- `words.npy` (E,) uint16 (uint32 beyond 65,536 words): each entry's visual word, ascending
  within an image
- `residuals.npy` (E, B) uint32: each entry's packed binarised aggregated residual

The kind and its parameters are recorded under `asmk_index` in `global.json` (`save_asmk`,
`load_asmk`); generations from before record none and hold the inverted file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from lookalike.index.asmk_index import (
    AsmkIndex,
    AsmkSearch,
    ImageCode,
    Vocabulary,
    inverse_norms,
    kernel_values,
    packed_width,
    spans,
    take_rows,
)
from lookalike.index.asmk_postings import CELL_OFFSETS, CELL_ROWS, Postings, write_postings
from lookalike.index.atomic import save_npy
from lookalike.settings import IndexSettings

logger = logging.getLogger("lookalike")

SHORTLIST = "shortlist"
INVERTED_DIR = "asmk"
SHORTLIST_DIR = "asmk-codes"
OFFSETS, WORDS, RESIDUALS = "word_offsets", "words", "residuals"
FULL_PASS_ROWS = 16_384
"""Rows scored at once when a shortlist index scores every row (`candidates=None`)."""


def word_dtype(vocabulary_size: int) -> np.dtype:
    """The smallest unsigned type holding visual words 0..vocabulary_size-1 (uint16 up to
    65,536 words)."""
    return np.dtype(np.uint16 if vocabulary_size <= 1 << 16 else np.uint32)


@dataclass(frozen=True)
class CodeBlock:
    """The ASMK codes of images 0..m-1 one after another: `offsets: (m + 1,)` int64, `words:
    (E,)` int and `residuals: (E, B)` uint32 (image i's are rows offsets[i]:offsets[i+1]);
    memory-mapped when opened from a folder."""

    offsets: np.ndarray
    words: np.ndarray
    residuals: np.ndarray

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) < 1 or self.residuals.ndim != 2:
            raise ValueError(
                f"offsets must be (m + 1,) and residuals (E, B), got {self.offsets.shape}, "
                f"{self.residuals.shape}"
            )
        if not len(self.words) == len(self.residuals) == int(self.offsets[-1]):
            raise ValueError(
                f"entries disagree: words {self.words.shape}, residuals {self.residuals.shape}, "
                f"offsets end at {int(self.offsets[-1])}"
            )

    @property
    def n_images(self) -> int:
        return len(self.offsets) - 1

    def counts(self, rows: np.ndarray | None = None) -> np.ndarray:
        """`(k,)` int64 entries (visual words) of `rows: (k,)` (all rows when None)."""
        if rows is None:
            return np.diff(np.asarray(self.offsets, dtype=np.int64))
        rows = np.asarray(rows, dtype=np.int64)
        return np.asarray(self.offsets[rows + 1] - self.offsets[rows], dtype=np.int64)

    def entries(self, rows: np.ndarray) -> np.ndarray:
        """Positions `(E',)` int64 of the entries of `rows: (k,)`, row after row."""
        rows = np.asarray(rows, dtype=np.int64)
        return spans(np.asarray(self.offsets[rows], dtype=np.int64), self.counts(rows))

    def head(self, m: int) -> CodeBlock:
        """The block of its first `m` images (views)."""
        end = int(self.offsets[m])
        return CodeBlock(self.offsets[: m + 1], self.words[:end], self.residuals[:end])

    def code(self, row: int) -> ImageCode:
        """Image `row`'s code (read into memory)."""
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        return ImageCode(
            np.asarray(self.words[start:end], dtype=np.int32), np.array(self.residuals[start:end])
        )

    @classmethod
    def of(cls, codes: Sequence[ImageCode], width: int, dtype: np.dtype) -> CodeBlock:
        """`codes` in a block; `width`: uint32 words a residual; `dtype`: the words' type."""
        offsets = np.concatenate([[0], np.cumsum([len(c.words) for c in codes])])
        words = [c.words for c in codes]
        residuals = [c.residuals for c in codes]
        return cls(
            offsets.astype(np.int64),
            np.concatenate([np.zeros(0, dtype), *words]).astype(dtype),
            np.concatenate([np.zeros((0, width), np.uint32), *residuals]),
        )

    @classmethod
    def open(cls, folder: Path) -> CodeBlock:
        """The block saved in `folder` (by `save`, or an encoded shard's codes): the offsets
        read, the words and residuals memory-mapped read-only."""

        def mapped(name: str) -> np.ndarray:
            return np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)

        offsets = np.load(folder / f"{OFFSETS}.npy", allow_pickle=False).astype(np.int64)
        return cls(offsets, mapped(WORDS), mapped(RESIDUALS))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_npy(folder, OFFSETS, self.offsets)
        save_npy(folder, WORDS, self.words)
        save_npy(folder, RESIDUALS, self.residuals)


Part = tuple[np.ndarray, np.ndarray, Callable[[], CodeBlock]]
"""Images `rows: (k,)` take the codes of rows `their_rows: (k,)` of the block `open()` gives."""

WRITE_ROWS = 16_384
"""Images copied at once by `write_blocks` (bounds its memory: some 250 MB on Holidays codes)."""


def write_blocks(
    folder: Path, n_images: int, parts: Sequence[Part], width: int, dtype: np.dtype
) -> CodeBlock:
    """Write the codes of images 0..n_images-1 into `folder` in `CodeBlock`'s files and return
    them opened, streaming: every image is in exactly one of the `parts`; each part's block is
    opened twice (its counts, then its codes) and copied `WRITE_ROWS` images at a time through
    memory maps opened for that copy, so memory stays that of a few thousand images."""
    counts = np.full(n_images, -1, dtype=np.int64)
    for rows, theirs, open_block in parts:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != len(theirs) or (len(rows) and (counts[rows] >= 0).any()):
            raise ValueError("each image must be given exactly once")
        counts[rows] = open_block().counts(np.asarray(theirs))
    if (counts < 0).any():
        raise ValueError(f"{int((counts < 0).sum())} images have no code")
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    folder.mkdir(parents=True, exist_ok=True)
    save_npy(folder, OFFSETS, offsets)
    if total == 0:  # a memory map cannot be empty
        save_npy(folder, WORDS, np.zeros(0, dtype))
        save_npy(folder, RESIDUALS, np.zeros((0, width), np.uint32))
        return CodeBlock.open(folder)
    paths = {name: folder / f"{name}.npy" for name in (WORDS, RESIDUALS)}
    for name, kind, shape in ((WORDS, dtype, (total,)), (RESIDUALS, np.uint32, (total, width))):
        np.lib.format.open_memmap(paths[name], mode="w+", dtype=kind, shape=shape).flush()
    for rows, theirs, open_block in parts:
        block = open_block()
        if block.residuals.shape[1] != width:
            raise ValueError(f"residuals of width {block.residuals.shape[1]}, expected {width}")
        order = np.argsort(rows, kind="stable")  # written in file order
        rows, theirs = np.asarray(rows, np.int64)[order], np.asarray(theirs, np.int64)[order]
        for s in range(0, len(rows), WRITE_ROWS):
            ours = rows[s : s + WRITE_ROWS]
            source = block.entries(theirs[s : s + WRITE_ROWS])
            target = spans(offsets[ours], counts[ours])
            # mapped for this copy only: the pages written leave this process's memory
            words = np.load(paths[WORDS], mmap_mode="r+")
            words[target] = block.words[source]
            words.flush()
            residuals = np.load(paths[RESIDUALS], mmap_mode="r+")
            residuals[target] = take_rows(block.residuals, source)
            residuals.flush()
            del words, residuals
    return CodeBlock.open(folder)


class ShortlistSearch(AsmkSearch, Protocol):
    """An ASMK index of the shortlist kind (`kind == SHORTLIST`) as the query pipeline sees it:
    how many `candidates` a query takes from the global index, and the scores of given
    candidate rows (`ShortlistAsmk.scores`). `ShortlistAsmk`, or the parts of one held by
    shard actors (`scale.part`)."""

    candidates: int

    def scores(
        self,
        code: ImageCode,
        *,
        alpha: float,
        threshold: float,
        candidates: np.ndarray | None = None,
    ) -> np.ndarray: ...


def as_shortlist(index: AsmkSearch) -> ShortlistSearch | None:
    """`index` as a `ShortlistSearch` when it is of the shortlist kind, else None (the
    inverted file, which scores every row)."""
    return cast(ShortlistSearch, index) if index.kind == SHORTLIST else None


class ShortlistAsmk:
    """ASMK over images 0..n-1 whose codes (`block`, a `CodeBlock`, memory-mapped once loaded)
    are scored only on candidate rows; `candidates` is how many the query pipeline asks the
    global index for (`search.query.score`)."""

    kind = SHORTLIST

    def __init__(
        self,
        block: CodeBlock,
        vocabulary: Vocabulary,
        candidates: int,
        postings: Postings | None = None,
        word_candidates: int = 0,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        if word_candidates < 0 or (word_candidates and postings is None):
            raise ValueError("word candidates need postings, and must be >= 0")
        if len(block.words) and int(np.asarray(block.words[-1])) >= vocabulary.size:
            # a cheap check of the codebook: the last image's largest word (words ascend)
            raise ValueError(f"codes use words beyond the codebook of {vocabulary.size}")
        self.block = block
        self.vocabulary = vocabulary
        self.candidates = int(candidates)
        self.postings = postings
        self.word_candidates = int(word_candidates)

    def word_rows(self, code: ImageCode) -> np.ndarray:
        """The `word_candidates` rows (ascending) the query `code`'s fine words point at most
        (`asmk_postings`): candidates that do not go through the global descriptor. Empty
        without postings: a generation written before them, or with them off."""
        if self.postings is None or not self.word_candidates:
            return np.zeros(0, np.int64)
        return self.postings.candidates(code, self.block.offsets, self.word_candidates)

    @property
    def n_images(self) -> int:
        return self.block.n_images

    @classmethod
    def build(
        cls, vocabulary: Vocabulary, codes: Sequence[ImageCode], candidates: int
    ) -> ShortlistAsmk:
        """In memory, from `codes` (image row i = codes[i])."""
        width = packed_width(vocabulary.codebook.centroids.shape[1])
        return cls(CodeBlock.of(codes, width, word_dtype(vocabulary.size)), vocabulary, candidates)

    def scores(
        self,
        code: ImageCode,
        *,
        alpha: float,
        threshold: float,
        candidates: np.ndarray | None = None,
    ) -> np.ndarray:
        """ASMK similarity of a query code to the rows `candidates: (k,)` int -> `(k,)` float32,
        in their order: exactly `AsmkIndex.scores(code, ...)[candidates]` of an inverted file
        over the same codes (the same terms, summed in the same order). Only the candidates'
        codes are read (in file order). `candidates=None` scores every row -> `(n_images,)`, a
        full pass over the codes (slow at millions: the query pipeline always passes them)."""
        if candidates is None:
            rows = np.arange(self.n_images, dtype=np.int64)
            return np.concatenate(
                [
                    self._sorted_scores(code, rows[s : s + FULL_PASS_ROWS], alpha, threshold)
                    for s in range(0, max(self.n_images, 1), FULL_PASS_ROWS)
                ]
            )
        rows = np.asarray(candidates, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_images):
            raise ValueError(f"candidate rows must be in [0, {self.n_images})")
        order = np.argsort(rows, kind="stable")
        out = np.empty(len(rows), np.float32)
        out[order] = self._sorted_scores(code, rows[order], alpha, threshold)
        return out

    def _sorted_scores(
        self, code: ImageCode, rows: np.ndarray, alpha: float, threshold: float
    ) -> np.ndarray:
        """`(k,)` float32 scores of ascending `rows: (k,)`: their entries are gathered, each
        matched to the query's entries on the same word (a dense word -> query entries table),
        the kernel computed on the matches and summed per row."""
        out = np.zeros(len(rows), dtype=np.float32)
        if len(rows) == 0 or len(code.words) == 0:
            return out
        lengths = self.block.counts(rows)
        entries = self.block.entries(rows)
        words = np.asarray(self.block.words[entries], dtype=np.int64)
        # the query's entries by word: how many on each word, the first in word order
        query_words = code.words.astype(np.int64)
        by_word = np.argsort(query_words, kind="stable")
        per_word = np.bincount(query_words, minlength=self.vocabulary.size)
        first = np.cumsum(per_word) - per_word
        matches = per_word[words]
        if matches.max(initial=0) <= 1:  # the query's words are unique (as `encode` makes them)
            theirs = np.flatnonzero(matches)
            ours = by_word[first[words[theirs]]]
        else:  # a pair for every query entry on the word, in the query's order
            theirs = np.repeat(np.arange(len(words)), matches)
            ours = by_word[spans(first[words], matches)]
        keep, kernel = kernel_values(
            take_rows(self.block.residuals, entries.take(theirs)),
            code.residuals[ours],
            alpha=alpha,
            threshold=threshold,
        )
        image = np.repeat(np.arange(len(rows)), lengths).take(theirs.take(keep))
        weights = kernel * inverse_norms(lengths).take(image)
        out += np.bincount(image, weights=weights, minlength=len(rows)).astype(np.float32)
        return out / np.float32(np.sqrt(len(query_words)))

    def params(self) -> dict[str, Any]:
        out = {
            "kind": SHORTLIST,
            "candidates": self.candidates,
            "entries": len(self.block.words),
            "word_dtype": str(self.block.words.dtype),
        }
        if self.postings is not None and self.word_candidates:
            out.update(word_candidates=self.word_candidates, word_bits=self.postings.bits)
        return out

    def ram_bytes(self) -> int:
        """Bytes held in RAM: the per-image offsets, and the postings' cell offsets (the codes
        and the postings' rows are memory-mapped)."""
        cells = 0 if self.postings is None else int(self.postings.offsets.nbytes)
        return int(self.block.offsets.nbytes) + cells

    def save(self, folder: Path) -> None:
        self.block.save(folder)

    @classmethod
    def load(cls, folder: Path, vocabulary: Vocabulary, params: dict[str, Any]) -> ShortlistAsmk:
        """From `save`'s (or `write_blocks`') files, the codes memory-mapped, not read; with
        the postings when `params` record them (`write_shortlist`)."""
        words = int(params.get("word_candidates", 0))
        bits = int(params.get("word_bits", 0))
        postings = Postings.open(folder, bits, vocabulary.size) if words else None
        return cls(CodeBlock.open(folder), vocabulary, int(params["candidates"]), postings, words)


def block_of(index: AsmkIndex) -> CodeBlock:
    """The codes of an inverted file's images in image order, in memory."""
    words = np.repeat(np.arange(index.vocabulary.size), index.counts)
    order = np.argsort(index.rows, kind="stable")  # words stay ascending within an image
    counts = np.bincount(index.rows, minlength=index.n_images)
    return CodeBlock(
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        words[order].astype(word_dtype(index.vocabulary.size)),
        index.residuals[order],
    )


def block_or_codes(index: AsmkSearch) -> CodeBlock:
    """The codes of an ASMK index's images in image order: a shortlist index's own (mapped), an
    inverted file's gathered in memory (`block_of`)."""
    if isinstance(index, ShortlistAsmk):
        return index.block
    if isinstance(index, AsmkIndex):
        return block_of(index)
    raise TypeError(f"no codes can be read from a {type(index).__name__}")


def code_of(index: AsmkSearch, row: int) -> ImageCode:
    """Image `row`'s code as the index holds it (what it was built from)."""
    if isinstance(index, ShortlistAsmk):
        return index.block.code(row)
    if isinstance(index, AsmkIndex):
        return index.code(row)
    raise TypeError(f"no codes can be read from a {type(index).__name__}")


def inverted_of(block: CodeBlock, vocabulary: Vocabulary) -> AsmkIndex:
    """The inverted file over the images of `block` (row i = its image i), in memory."""
    rows = np.repeat(np.arange(block.n_images), block.counts())
    return AsmkIndex.from_entries(
        vocabulary, np.asarray(block.words), np.asarray(block.residuals), rows, block.n_images
    )


def write_shortlist(
    folder: Path,
    vocabulary: Vocabulary,
    n_images: int,
    parts: Sequence[Part],
    candidates: int,
    word_candidates: int = 0,
    word_bits: int = 8,
) -> ShortlistAsmk:
    """A shortlist index over images 0..n_images-1 written into the generation `folder`
    straight from the blocks of `parts` (see `write_blocks`), opened; with `word_candidates`,
    the fine-word postings too (`asmk_postings`, `word_bits` bits of residual a cell)."""
    logger.info("writing the ASMK codes of %d images for a shortlist index", n_images)
    width = packed_width(vocabulary.codebook.centroids.shape[1])
    codes = folder / SHORTLIST_DIR
    block = write_blocks(codes, n_images, parts, width, word_dtype(vocabulary.size))
    postings = None
    if word_candidates:
        logger.info("writing the fine-word postings of %d images", n_images)
        postings = write_postings(
            codes, block.offsets, block.words, block.residuals, vocabulary.size, word_bits
        )
    return ShortlistAsmk(block, vocabulary, candidates, postings, word_candidates)


def build_asmk(
    vocabulary: Vocabulary, codes: Sequence[ImageCode], settings: IndexSettings
) -> AsmkIndex | ShortlistAsmk:
    """The kind of ASMK index `settings` choose for `codes` (row i = codes[i]), in memory."""
    if settings.asmk_shortlist(len(codes)):
        return ShortlistAsmk.build(vocabulary, codes, settings.candidates)
    return AsmkIndex.build(vocabulary, codes)


def save_asmk(index: AsmkIndex | ShortlistAsmk, folder: Path) -> dict[str, Any]:
    """Write `index` into the generation `folder`; returns what `global.json` records of it
    (`asmk_index`: its kind and parameters)."""
    if isinstance(index, ShortlistAsmk):
        index.save(folder / SHORTLIST_DIR)
    else:
        index.save(folder / INVERTED_DIR)
    return {"asmk_index": index.params()}


def load_asmk(
    folder: Path, params: Mapping[str, Any], vocabulary: Vocabulary
) -> AsmkIndex | ShortlistAsmk:
    """The ASMK index of the generation `folder`, of the kind and parameters `params` (as
    `save_asmk` recorded them under `asmk_index`)."""
    if params.get("kind") == SHORTLIST:
        return ShortlistAsmk.load(folder / SHORTLIST_DIR, vocabulary, dict(params))
    return AsmkIndex.load(folder / INVERTED_DIR, vocabulary)


def _bytes(folder: Path, names: Iterable[str]) -> int:
    """Total size of the files `folder/<name>.npy` that exist."""
    paths = [folder / f"{name}.npy" for name in names]
    return sum(p.stat().st_size for p in paths if p.is_file())


def file_bytes(folder: Path) -> dict[str, int]:
    """On-disk sizes of a generation's ASMK index: `asmk_index` (the part read into RAM: the
    whole inverted file, or the shortlist kind's offsets and its postings' cell offsets) and
    `asmk_codes` (the shortlist kind's words, residuals and posting rows, memory-mapped; 0 for
    the inverted file)."""
    inverted = _bytes(folder / INVERTED_DIR, ("counts", RESIDUALS, "rows", "n_images"))
    codes = folder / SHORTLIST_DIR
    return {
        "asmk_index": inverted + _bytes(codes, [OFFSETS, CELL_OFFSETS]),
        "asmk_codes": _bytes(codes, [WORDS, RESIDUALS, CELL_ROWS]),
    }
