"""RootSIFT features on disk, and their own codebook and ASMK inverted file (search mode
'rootsift', when `SiftSettings.enabled`).

`sift/<settings key>/shard-000007/` holds `desc.npy: (N, 128)` float16 RootSIFT descriptors of
the images at the rows of feature shard 7, strongest first, row r's at `offsets[r]:offsets[r+1]`.
They are written with the shard when an image is extracted, or afterwards (`backfill`) for
shards written before RootSIFT was enabled. `sift/<key>/codebook.npy` is fitted once, on a
sample of them, and kept (`--refit` fits it again); each generation encodes every image with it
into its own inverted file.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lookalike.catalog import ImageRecord
from lookalike.features.classic import SIFT_DIM, rootsift_file
from lookalike.images import ImageError
from lookalike.index.asmk_index import AsmkIndex, Vocabulary
from lookalike.index.atomic import atomic_dir, save_npy
from lookalike.index.classic_store import backfill_shards, prune
from lookalike.index.layout import IndexLayout, shard_name
from lookalike.learn.codebook import fit_codebook
from lookalike.settings import LearnSettings, SiftSettings

logger = logging.getLogger("lookalike")

CODEBOOK = "codebook.npy"


def sift_root(index_dir: Path, settings: SiftSettings) -> Path:
    return IndexLayout(index_dir).sift(settings.key)


def sift_shard(index_dir: Path, settings: SiftSettings, shard: int) -> Path:
    return sift_root(index_dir, settings) / shard_name(shard)


def write_sift(
    index_dir: Path, settings: SiftSettings, shard: int, rows: Sequence[np.ndarray | None]
) -> Path:
    """Write the descriptors `(N_r, 128)` of a shard's rows, in row order (None: none, an image
    that could not be read again), durably."""
    final = sift_shard(index_dir, settings, shard)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # left by a shard that never reached the catalog: its number is reused
        shutil.rmtree(final)
    parts = [np.zeros((0, SIFT_DIM), np.float16) if r is None else r for r in rows]
    with atomic_dir(final) as tmp:
        save_npy(tmp, "offsets", np.cumsum([0] + [len(p) for p in parts]).astype(np.int64))
        save_npy(tmp, "desc", np.concatenate(parts).astype(np.float16).reshape(-1, SIFT_DIM))
    return final


def has_sift(index_dir: Path, settings: SiftSettings, shard: int) -> bool:
    return (sift_shard(index_dir, settings, shard) / "desc.npy").is_file()


def read_sift(index_dir: Path, settings: SiftSettings, shard: int, row: int) -> np.ndarray:
    """`(N, 128)` float32 descriptors of one image."""
    folder = sift_shard(index_dir, settings, shard)
    offsets = np.load(folder / "offsets.npy")
    desc = np.load(folder / "desc.npy", mmap_mode="r")
    return np.asarray(desc[offsets[row] : offsets[row + 1]], np.float32)


def describe_file(path: Path, settings: SiftSettings) -> np.ndarray:
    """`(N, 128)` float16 RootSIFT descriptors of an image file, as they are stored."""
    return np.asarray(rootsift_file(path, settings).desc, np.float16)


def backfill(
    index_dir: Path,
    root: Path,
    records: Sequence[ImageRecord],
    settings: SiftSettings,
    shard_rows: Callable[[int], int],
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Describe the images of every shard that has no RootSIFT features yet. Returns how many."""
    if not settings.enabled:
        return 0

    def describe(record: ImageRecord) -> np.ndarray | None:
        try:
            return describe_file(root / record.path, settings)
        except (ImageError, OSError) as exc:  # changed or gone since it was indexed
            logger.warning("RootSIFT features of %s: %s", record.path, exc)
            return None

    return backfill_shards(
        records,
        lambda shard: has_sift(index_dir, settings, shard),
        shard_rows,
        describe,
        lambda shard, rows: write_sift(index_dir, settings, shard, rows),
        progress,
    )


def _per_image(
    index_dir: Path, settings: SiftSettings, records: Sequence[ImageRecord]
) -> list[np.ndarray]:
    """Each record's descriptors (float16, memory-mapped), in order."""
    shards: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for record in records:
        shard = record.shard or 0
        if shard not in shards:
            folder = sift_shard(index_dir, settings, shard)
            shards[shard] = (
                np.load(folder / "offsets.npy"),
                np.load(folder / "desc.npy", mmap_mode="r"),
            )
        offsets, desc = shards[shard]
        row = record.row or 0
        out.append(desc[offsets[row] : offsets[row + 1]])
    return out


def codebook(
    index_dir: Path,
    settings: SiftSettings,
    records: Sequence[ImageRecord],
    learn: LearnSettings,
    refit: bool = False,
) -> np.ndarray:
    """The RootSIFT codebook `(k, 128)`: the one kept in the index, or fitted now (k-means on
    up to `learn.sample_features` descriptors spread over the images) when there is none."""
    path = sift_root(index_dir, settings) / CODEBOOK
    if path.is_file() and not refit:
        return np.load(path)
    rng = np.random.default_rng(learn.seed)
    descs = _per_image(index_dir, settings, records)
    keep = min(1.0, learn.sample_features / max(sum(len(d) for d in descs), 1))
    sample = np.concatenate(
        [np.zeros((0, SIFT_DIM), np.float32)]
        + [np.asarray(d[rng.random(len(d)) < keep], np.float32) for d in descs]
    )
    try:
        centroids = fit_codebook(
            sample, learn.codebook_size, iterations=learn.kmeans_iterations, seed=learn.seed
        )
    except ValueError as exc:  # a handful of plain images: no vocabulary to learn
        raise ValueError(f"RootSIFT: {exc}; index more images, or run with --no-sift") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npy(path.parent, path.stem, centroids)
    return centroids


def build_index(
    index_dir: Path,
    settings: SiftSettings,
    records: Sequence[ImageRecord],
    centroids: np.ndarray,
    batch: int = 256,
) -> AsmkIndex:
    """The ASMK inverted file of `records` (row i = records[i]), one assignment per
    descriptor, encoded `batch` images at a time."""
    vocabulary = Vocabulary(centroids)
    descs = _per_image(index_dir, settings, records)
    codes = []
    for start in range(0, len(descs), batch):
        chunk = [np.asarray(d, np.float32) for d in descs[start : start + batch]]
        codes.extend(vocabulary.encode_many(chunk, 1))
    return AsmkIndex.build(vocabulary, codes)


def remove_unused(index_dir: Path, settings: SiftSettings, shards_in_use: set[int]) -> None:
    """Delete features made with other settings (all of them when RootSIFT is off), and those
    of shards no image points at."""
    prune(
        IndexLayout(index_dir).sift_root, settings.key if settings.enabled else None, shards_in_use
    )
