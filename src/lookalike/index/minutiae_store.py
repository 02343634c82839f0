"""Fingerprint minutiae on disk (when `MinutiaeSettings.enabled`: the 'fingerprints' preset).

`minutiae/<settings key>/shard-000007/` holds `points.npy: (M, 5)` float32 minutiae (see
`features.minutiae`) of the images at the rows of feature shard 7, row r's at
`offsets[r]:offsets[r+1]`, and `sizes.npy: (N, 2)` int32, the (width, height) each row's
minutiae are in (0, 0: none, an image that could not be read). They are written with the
shard when an image is extracted, or afterwards (`backfill`) for shards written before
minutiae were enabled. With a fused extractor (`MinutiaeSettings.fuse_extractor`, in the
settings key), `fused-offsets.npy` and `fused-points.npy` hold its minutiae the same way. A
few kilobytes an image.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog import ImageRecord
from lookalike.features.minutiae import POINT_COLUMNS, Minutiae, extract_file
from lookalike.images import ImageError
from lookalike.index.atomic import atomic_dir, save_npy
from lookalike.index.classic_store import backfill_shards, prune
from lookalike.index.layout import IndexLayout, shard_name
from lookalike.settings import MinutiaeSettings

logger = logging.getLogger("lookalike")

FUSED = "fused-"
"""Prefix of the fused extractor's arrays in a shard folder."""


def minutiae_shard(index_dir: Path, settings: MinutiaeSettings, shard: int) -> Path:
    return IndexLayout(index_dir).minutiae(settings.key) / shard_name(shard)


def write_minutiae(
    index_dir: Path, settings: MinutiaeSettings, shard: int, rows: Sequence[Minutiae | None]
) -> Path:
    """Write the minutiae of a shard's rows, in row order (None: none), durably."""
    final = minutiae_shard(index_dir, settings, shard)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # left by a shard that never reached the catalog: its number is reused
        shutil.rmtree(final)
    empty = np.zeros((0, POINT_COLUMNS), np.float32)
    sizes = np.array([(0, 0) if r is None else r.size for r in rows], np.int32).reshape(-1, 2)

    def save(tmp: Path, prefix: str, points: list[np.ndarray]) -> None:
        offsets = np.cumsum([0] + [len(p) for p in points]).astype(np.int64)
        save_npy(tmp, f"{prefix}offsets", offsets)
        save_npy(tmp, f"{prefix}points", np.concatenate([empty, *points]).astype(np.float32))

    with atomic_dir(final) as tmp:
        save(tmp, "", [empty if r is None else r.points for r in rows])
        if settings.fuse_extractor is not None:
            fused = [empty if r is None or r.fused is None else r.fused for r in rows]
            save(tmp, FUSED, fused)
        save_npy(tmp, "sizes", sizes)
    return final


def has_minutiae(index_dir: Path, settings: MinutiaeSettings, shard: int) -> bool:
    return (minutiae_shard(index_dir, settings, shard) / "sizes.npy").is_file()


class MinutiaeReader:
    """The stored minutiae of indexed images, each shard's arrays read once."""

    def __init__(self, index_dir: Path, settings: MinutiaeSettings) -> None:
        self.index_dir = index_dir
        self.settings = settings
        self._shards: dict[int, _Shard | None] = {}

    def read(self, record: ImageRecord) -> Minutiae | None:
        """`record`'s minutiae; None when none are stored (a shard written before minutiae
        were enabled and not backfilled yet, or an image that could not be read again)."""
        if record.shard is None:
            return None
        arrays = self._shard(record.shard)
        if arrays is None:
            return None
        row = record.row or 0
        if row >= len(arrays.sizes) or not arrays.sizes[row].any():
            return None
        width, height = (int(v) for v in arrays.sizes[row])
        fused = None if arrays.fused is None else arrays.fused.of(row)
        return Minutiae(arrays.points.of(row), (width, height), fused)

    def _shard(self, shard: int) -> _Shard | None:
        if shard not in self._shards:
            folder = minutiae_shard(self.index_dir, self.settings, shard)
            fused = self.settings.fuse_extractor is not None
            try:
                arrays = _Shard(
                    _Points.load(folder, ""),
                    _Points.load(folder, FUSED) if fused else None,
                    np.load(folder / "sizes.npy"),
                )
                rows = {len(p.offsets) - 1 for p in (arrays.points, arrays.fused) if p is not None}
                if rows != {len(arrays.sizes)}:
                    raise ValueError(f"sizes and offsets disagree on the rows in {folder}")
                self._shards[shard] = arrays
            except (OSError, ValueError) as exc:  # absent, or damaged: `lookalike check` says
                if (folder / "sizes.npy").exists():
                    logger.warning("minutiae of shard %d unreadable: %s", shard, exc)
                self._shards[shard] = None
        return self._shards[shard]


@dataclass(frozen=True)
class _Points:
    """One extractor's minutiae of a shard: row r's are `points[offsets[r]:offsets[r + 1]]`."""

    offsets: np.ndarray
    points: np.ndarray

    @classmethod
    def load(cls, folder: Path, prefix: str) -> _Points:
        offsets = np.load(folder / f"{prefix}offsets.npy")
        points = np.load(folder / f"{prefix}points.npy", mmap_mode="r")
        if offsets.ndim != 1 or points.ndim != 2 or points.shape[1] != POINT_COLUMNS:
            raise ValueError(f"{prefix}offsets/points of unexpected shapes in {folder}")
        if len(offsets) and int(offsets[-1]) > len(points):
            raise ValueError(f"{prefix}offsets point past {prefix}points in {folder}")
        return cls(offsets, points)

    def of(self, row: int) -> np.ndarray:
        return np.array(self.points[self.offsets[row] : self.offsets[row + 1]])


@dataclass(frozen=True)
class _Shard:
    points: _Points
    fused: _Points | None
    sizes: np.ndarray


def backfill(
    index_dir: Path,
    root: Path,
    records: Sequence[ImageRecord],
    settings: MinutiaeSettings,
    shard_rows: Callable[[int], int],
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Extract the minutiae of the images of every shard that has none yet. Returns how
    many images were read."""
    if not settings.enabled:
        return 0

    def describe(record: ImageRecord) -> Minutiae | None:
        try:
            return extract_file(root / record.path, settings)
        except (ImageError, OSError) as exc:  # changed or gone since it was indexed
            logger.warning("minutiae of %s: %s", record.path, exc)
            return None

    return backfill_shards(
        records,
        lambda shard: has_minutiae(index_dir, settings, shard),
        shard_rows,
        describe,
        lambda shard, rows: write_minutiae(index_dir, settings, shard, rows),
        progress,
    )


def remove_unused(index_dir: Path, settings: MinutiaeSettings, shards_in_use: set[int]) -> None:
    """Delete minutiae made with other settings (all of them when minutiae are off), and those
    of shards no image points at."""
    prune(
        IndexLayout(index_dir).minutiae_root,
        settings.key if settings.enabled else None,
        shards_in_use,
    )
