"""Classic global descriptors on disk, beside the feature shards.

`classic/<settings key>/shard-000007/<name>.npy` holds `(M, d)` float32 rows: row m describes
the image at row m of feature shard 7. They are written with the shard when an image is
extracted, and computed afterwards (`backfill`) for shards written before, or after the classic
settings changed (a new key, a new folder). A generation gathers them into one matrix per
descriptor, row i for its image i; once it is published, the shard's folder is deleted and the
next build takes them from it (`published`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from lookalike.catalog import ImageRecord
from lookalike.features.classic import describe
from lookalike.images import ImageError, load_image
from lookalike.index.atomic import atomic_dir, save_npy
from lookalike.index.layout import IndexLayout, shard_name
from lookalike.index.published import Published, classic_held, latest
from lookalike.index.store import shard_uid
from lookalike.settings import ClassicSettings

logger = logging.getLogger("lookalike")

T = TypeVar("T")

Descriptors = Mapping[str, np.ndarray]
"""One image's classic descriptors: name -> `(d,)` float32."""


def classic_root(index_dir: Path, settings: ClassicSettings) -> Path:
    return IndexLayout(index_dir).classic(settings.key)


def classic_shard(index_dir: Path, settings: ClassicSettings, shard: int) -> Path:
    return classic_root(index_dir, settings) / shard_name(shard)


def write_classic(
    index_dir: Path, settings: ClassicSettings, shard: int, rows: Sequence[Descriptors | None]
) -> Path:
    """Write the descriptors of a shard's rows, in row order (None: zeros, an image that could
    not be read again), durably."""
    final = classic_shard(index_dir, settings, shard)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # left by a shard that never reached the catalog: its number is reused
        shutil.rmtree(final)
    with atomic_dir(final) as tmp:
        for name in settings.descriptors:
            matrix = np.zeros((len(rows), settings.dims(name)), np.float32)
            for i, row in enumerate(rows):
                if row is not None:
                    matrix[i] = row[name]
            save_npy(tmp, name, matrix)
    return final


def has_classic(index_dir: Path, settings: ClassicSettings, shard: int) -> bool:
    folder = classic_shard(index_dir, settings, shard)
    return all((folder / f"{name}.npy").is_file() for name in settings.descriptors)


def backfill(
    index_dir: Path,
    root: Path,
    records: Sequence[ImageRecord],
    settings: ClassicSettings,
    decode_size: int,
    shard_rows: Callable[[int], int],
    progress: Callable[[int, int], None] | None = None,
    generation: int = 0,
) -> int:
    """Describe the images of every shard that has no classic descriptors yet, in its folder
    or in the published `generation` (`published`), decoding them again at `decode_size`, as
    extraction does. `shard_rows(shard)` is its number of rows. Returns the number of images
    described."""
    if not settings.descriptors:
        return 0

    def described(record: ImageRecord) -> Descriptors | None:
        try:
            image = load_image(root / record.path, max_side=decode_size)
            return describe(image, settings.descriptors, settings)
        except (ImageError, OSError) as exc:  # changed or gone since it was indexed
            logger.warning("classic descriptors of %s: %s", record.path, exc)
            return None

    published = latest(index_dir, generation + 1)
    held = classic_held(published, settings.key, settings.descriptors)
    return backfill_shards(
        records,
        lambda shard: shard in held or has_classic(index_dir, settings, shard),
        shard_rows,
        described,
        lambda shard, rows: write_classic(index_dir, settings, shard, rows),
        progress,
    )


def backfill_shards(
    records: Sequence[ImageRecord],
    has: Callable[[int], bool],
    shard_rows: Callable[[int], int],
    describe: Callable[[ImageRecord], T | None],
    write: Callable[[int, list[T | None]], object],
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """For every shard of `records` that lacks something (`has(shard)` is false), `describe`
    each of its rows' images (None for a row no record points at, or that fails) and `write`
    them in row order. Returns the number of images described."""
    by_shard: dict[int, dict[int, ImageRecord]] = {}
    for record in records:
        if record.shard is not None:
            by_shard.setdefault(record.shard, {})[record.row or 0] = record
    missing = sorted(s for s in by_shard if not has(s))
    total = sum(len(by_shard[s]) for s in missing)
    done = 0
    for shard in missing:
        rows: list[T | None] = []
        for row in range(shard_rows(shard)):
            found = by_shard[shard].get(row)
            rows.append(None if found is None else describe(found))
            if found is not None:
                done += 1
                if progress is not None:
                    progress(done, total)
        write(shard, rows)
    return total


def gather(
    index_dir: Path,
    settings: ClassicSettings,
    records: Sequence[ImageRecord],
    before: Published | None = None,
) -> dict[str, np.ndarray]:
    """One `(len(records), d)` float32 matrix per descriptor, row i for `records[i]`: a
    shard's from its folder, or once that is deleted from the generation published `before`
    (`published`)."""
    out = {
        name: np.zeros((len(records), settings.dims(name)), np.float32)
        for name in settings.descriptors
    }
    by_shard: dict[int, list[tuple[int, int]]] = {}
    for i, record in enumerate(records):
        by_shard.setdefault(record.shard or 0, []).append((i, record.row or 0))
    features = IndexLayout(index_dir).features
    for shard, items in by_shard.items():
        folder = classic_shard(index_dir, settings, shard)
        index = np.array([i for i, _ in items])
        rows = np.array([r for _, r in items])
        held = None
        if before is not None and not folder.is_dir():
            held = before.rows(shard_uid(features, shard), rows)
        for name in settings.descriptors:
            published = None
            if before is not None and held is not None:
                published = before.classic(settings.key, name)
            if published is not None:
                out[name][index] = published[held]
            else:
                out[name][index] = np.load(folder / f"{name}.npy", mmap_mode="r")[rows]
    return out


def remove_unused(index_dir: Path, settings: ClassicSettings, shards_in_use: set[int]) -> None:
    """Delete descriptors made with other settings, and those of shards no image points at."""
    prune(IndexLayout(index_dir).classic_root, settings.key, shards_in_use)


def prune(top: Path, keep: str | None, shards_in_use: set[int]) -> None:
    """In `top/<key>/shard-N/`: delete every key but `keep` (all when None), and the shards no
    image points at."""
    if not top.is_dir():
        return
    for folder in top.iterdir():
        if folder.name != keep:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for shard in folder.glob("shard-*"):
            number = shard.name.removeprefix("shard-")
            if number.isdigit() and int(number) not in shards_in_use:
                shutil.rmtree(shard, ignore_errors=True)
