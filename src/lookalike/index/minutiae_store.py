"""Fingerprint minutiae on disk (when `MinutiaeSettings.enabled`: the 'fingerprints' preset).

`minutiae/<settings key>/shard-000007/` holds `points.npy: (M, 5)` float32 minutiae (see
`features.minutiae`) of the images at the rows of feature shard 7, row r's at
`offsets[r]:offsets[r+1]`, and `sizes.npy: (N, 2)` int32, the (width, height) each row's
minutiae are in (0, 0: none, an image that could not be read). They are written with the
shard when an image is extracted, or afterwards (`backfill`) for shards written before
minutiae were enabled. A few kilobytes an image.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
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
    points = [empty if r is None else r.points for r in rows]
    sizes = np.array([(0, 0) if r is None else r.size for r in rows], np.int32).reshape(-1, 2)
    with atomic_dir(final) as tmp:
        save_npy(tmp, "offsets", np.cumsum([0] + [len(p) for p in points]).astype(np.int64))
        save_npy(tmp, "points", np.concatenate([empty, *points]).astype(np.float32))
        save_npy(tmp, "sizes", sizes)
    return final


def has_minutiae(index_dir: Path, settings: MinutiaeSettings, shard: int) -> bool:
    return (minutiae_shard(index_dir, settings, shard) / "sizes.npy").is_file()


class MinutiaeReader:
    """The stored minutiae of indexed images, each shard's arrays read once."""

    def __init__(self, index_dir: Path, settings: MinutiaeSettings) -> None:
        self.index_dir = index_dir
        self.settings = settings
        self._shards: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}

    def read(self, record: ImageRecord) -> Minutiae | None:
        """`record`'s minutiae; None when none are stored (a shard written before minutiae
        were enabled and not backfilled yet, or an image that could not be read again)."""
        if record.shard is None:
            return None
        arrays = self._shard(record.shard)
        if arrays is None:
            return None
        offsets, points, sizes = arrays
        row = record.row or 0
        if row >= len(sizes) or not sizes[row].any():
            return None
        width, height = (int(v) for v in sizes[row])
        return Minutiae(np.array(points[offsets[row] : offsets[row + 1]]), (width, height))

    def _shard(self, shard: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if shard not in self._shards:
            folder = minutiae_shard(self.index_dir, self.settings, shard)
            try:
                self._shards[shard] = (
                    np.load(folder / "offsets.npy"),
                    np.load(folder / "points.npy", mmap_mode="r"),
                    np.load(folder / "sizes.npy"),
                )
            except (OSError, ValueError) as exc:  # absent, or damaged: `lookalike check` says
                if (folder / "sizes.npy").exists():
                    logger.warning("minutiae of shard %d unreadable: %s", shard, exc)
                self._shards[shard] = None
        return self._shards[shard]


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
