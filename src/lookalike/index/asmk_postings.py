"""Candidates at scale from the local features themselves: an inverted file of image rows over
*fine words*, memory-mapped, beside the shortlist kind's codes (`asmk_shortlist`).

With millions of images the shortlist ASMK index scores only candidate rows, and the global
index's best rows alone miss exactly the queries local features are for: a rotated, cropped
or blurred copy whose global descriptor has moved. This second source of candidates does not
go through the global descriptor. A fine word is an ASMK visual word refined by the signs of
the first `bits` dimensions of the entry's binarised aggregated residual (`word << bits |
residual bits`, a hash of where the residual points): with 4,096 words and 8 bits, a million
cells, so
that at a million images a cell lists a few hundred images where a visual word lists a
hundred thousand. A query looks up each of its entries' cells and those one bit away (a
matching entry of the same object mostly agrees on the leading signs; one flipped sign is
forgiven), each image found gains the cell's weight (log of images over the cell's length,
rarer cells weigh more), divided by the square root of its entries as ASMK normalises; the
best `k` images are candidates, which ASMK then scores exactly beside the global ones.

Files (in `asmk-codes/`, written with the codes):

- `cell_offsets.npy` (V * 2**bits + 1,) int64: cell c lists rows `cell_rows[cell_offsets[c]:
  cell_offsets[c + 1]]`
- `cell_rows.npy` (E,) uint32: image rows, ascending within a cell (one per code entry)

8 bytes a cell (8 MB at 4,096 words and 8 bits) and 4 bytes an entry (about 1.8 kB an image),
on disk and mapped: a query reads the cells it probes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.index.asmk_index import ImageCode, inverse_norms, spans
from lookalike.index.atomic import save_npy

CELL_OFFSETS, CELL_ROWS = "cell_offsets", "cell_rows"
SCAN = 4_000_000
"""Rows a query reads from the postings at most (16 MB): its rarest cells first."""
WRITE_ENTRIES = 1 << 22
"""Entries sorted into cells at once by `write_postings` (bounds its memory)."""


def fine_words(words: np.ndarray, residuals: np.ndarray, bits: int) -> np.ndarray:
    """`(E,)` int64 fine words of entries on `words: (E,)` with packed residuals `(E, B)`
    uint32: the word, then the signs of the residual's first `bits` dimensions (the packing
    puts dimension 0 in the top bit of the first uint32)."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in [1, 16], got {bits}")
    first = np.asarray(residuals[:, 0], dtype=np.int64) if len(residuals) else np.zeros(0, np.int64)
    return (np.asarray(words, dtype=np.int64) << bits) | (first >> (32 - bits))


def write_postings(
    folder: Path,
    offsets: np.ndarray,
    words: np.ndarray,
    residuals: np.ndarray,
    vocabulary_size: int,
    bits: int,
) -> Postings:
    """The postings of the codes of images 0..n-1 (`offsets: (n + 1,)`, entries `words`,
    `residuals`, as a `CodeBlock` holds them, memory-mapped or not) written into `folder` and
    opened. A counting sort, `WRITE_ENTRIES` entries at a time: memory stays that of the cell
    offsets plus one chunk, at any number of images."""
    cells = vocabulary_size << bits
    total = int(offsets[-1])
    counts = np.zeros(cells, np.int64)
    for start in range(0, total, WRITE_ENTRIES):
        end = min(total, start + WRITE_ENTRIES)
        counts += np.bincount(
            fine_words(words[start:end], residuals[start:end], bits), minlength=cells
        )
    cell_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    save_npy(folder, CELL_OFFSETS, cell_offsets)
    path = folder / f"{CELL_ROWS}.npy"
    if total == 0:  # a memory map cannot be empty
        save_npy(folder, CELL_ROWS, np.zeros(0, np.uint32))
        return Postings.open(folder, bits, vocabulary_size)
    # one map for the whole pass, written back once: each chunk scatters over most cells, and
    # a write-back after each would write the whole file again every time
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint32, shape=(total,))
    cursor = cell_offsets[:-1].copy()
    image_of = np.asarray(offsets, dtype=np.int64)
    for start in range(0, total, WRITE_ENTRIES):
        end = min(total, start + WRITE_ENTRIES)
        cell = fine_words(words[start:end], residuals[start:end], bits)
        # each entry's image: entries are in image order, so a search over the offsets
        rows = np.searchsorted(image_of, np.arange(start, end), side="right") - 1
        order = np.argsort(cell, kind="stable")  # rows stay ascending within a cell
        cell, rows = cell[order], rows[order]
        unique, first, many = np.unique(cell, return_index=True, return_counts=True)
        within = np.arange(len(cell)) - np.repeat(first, many)
        mapped[cursor[cell] + within] = rows.astype(np.uint32)
        cursor[unique] += many
    mapped.flush()
    del mapped
    return Postings.open(folder, bits, vocabulary_size)


@dataclass(frozen=True)
class Postings:
    """The fine-word postings of a shortlist index's images (see the module docstring):
    `offsets: ((V << bits) + 1,)` int64 read, `rows: (E,)` uint32 memory-mapped."""

    offsets: np.ndarray
    rows: np.ndarray
    bits: int

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) < 2 or self.rows.ndim != 1:
            raise ValueError(
                f"postings of unexpected shapes {self.offsets.shape}, {self.rows.shape}"
            )
        if int(self.offsets[-1]) != len(self.rows):
            raise ValueError(
                f"cell offsets end at {int(self.offsets[-1])} for {len(self.rows)} rows"
            )

    @classmethod
    def open(cls, folder: Path, bits: int, vocabulary_size: int) -> Postings:
        """The postings in `folder`, made with `bits` over a codebook of `vocabulary_size`
        words (ValueError when their cells are not as many)."""
        offsets = np.load(folder / f"{CELL_OFFSETS}.npy", allow_pickle=False)
        rows = np.load(folder / f"{CELL_ROWS}.npy", mmap_mode="r", allow_pickle=False)
        if len(offsets) != (vocabulary_size << bits) + 1:
            raise ValueError(
                f"{len(offsets) - 1} fine-word cells in {folder}, expected "
                f"{vocabulary_size} words x 2**{bits}"
            )
        return cls(np.asarray(offsets, np.int64), rows, bits)

    def candidates(
        self, code: ImageCode, image_offsets: np.ndarray, k: int, scan: int = SCAN
    ) -> np.ndarray:
        """The `k` rows (ascending, int64) with the most weight in the query's cells and
        those one bit away (see the module docstring); `image_offsets: (n + 1,)` the codes'
        (image i has `image_offsets[i + 1] - image_offsets[i]` entries). Cells are read rarest
        first until `scan` rows have been read: the commonest cells weigh least and cost
        most."""
        n = len(image_offsets) - 1
        if k < 1 or n == 0 or len(code.words) == 0:
            return np.zeros(0, np.int64)
        cells = fine_words(code.words, code.residuals, self.bits)
        flips = np.concatenate([[0], 1 << np.arange(self.bits, dtype=np.int64)])
        probes = np.unique((cells[:, None] ^ flips[None, :]).reshape(-1))
        starts = self.offsets[probes]
        sizes = self.offsets[probes + 1] - starts
        keep = sizes > 0
        probes, starts, sizes = probes[keep], starts[keep], sizes[keep]
        order = np.argsort(sizes, kind="stable")
        within = order[: int(np.searchsorted(np.cumsum(sizes[order]), scan, side="right")) + 1]
        starts, sizes = starts[within], sizes[within]
        if len(sizes) == 0:
            return np.zeros(0, np.int64)
        found = np.asarray(self.rows[spans(starts, sizes)], dtype=np.int64)
        weight = np.log1p(n / sizes.astype(np.float64))
        votes = np.bincount(found, weights=np.repeat(weight, sizes), minlength=n)
        voted = np.flatnonzero(votes)
        lengths = np.asarray(image_offsets[voted + 1] - image_offsets[voted], np.int64)
        votes = votes[voted] * inverse_norms(lengths)
        if len(voted) > k:
            voted = voted[np.argpartition(-votes, k - 1)[:k]]
        return np.sort(voted)
