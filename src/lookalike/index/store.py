"""Feature shards: append-only folders of memory-mappable arrays, written atomically.

A shard `features/shard-000007/` holds the features of up to a few hundred images:

- `offsets.npy`  (M + 1,) int64 — image m's local features are rows offsets[m]:offsets[m+1]
- `desc.npy`     (N, C) float16 — raw local descriptors (L2-normalised layer activations)
- `xy.npy`       (N, 2) float32 — positions in pixels of the original image
- `scale.npy`    (N,) float32   — scale each feature was read at
- `strength.npy` (N,) float32   — activation norm
- `global.npy`   (M, G) float16 — raw global descriptors (unit norm)
- `meta.json`    feature settings key and counts

The catalog records (shard, row) for an image only once its shard is durable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lookalike.features import ImageFeatures, LocalFeatures
from lookalike.index.atomic import atomic_dir, save_npy
from lookalike.index.layout import shard_name, shard_numbers


def shard_path(features_dir: Path, shard: int) -> Path:
    return features_dir / shard_name(shard)


def existing_shards(features_dir: Path) -> list[int]:
    return shard_numbers(features_dir)


def write_shard(
    features_dir: Path, shard: int, features: list[ImageFeatures], meta: dict[str, object]
) -> Path:
    """Write `features` (one per image, in row order) as shard number `shard`, durably."""
    if not features:
        raise ValueError("a shard needs at least one image")
    final = shard_path(features_dir, shard)
    features_dir.mkdir(parents=True, exist_ok=True)
    counts = [len(f.local) for f in features]
    with atomic_dir(final) as tmp:
        save_npy(tmp, "offsets", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        save_npy(tmp, "desc", np.concatenate([f.local.desc for f in features]).astype(np.float16))
        save_npy(tmp, "xy", np.concatenate([f.local.xy for f in features]).astype(np.float32))
        save_npy(tmp, "scale", np.concatenate([f.local.scale for f in features]).astype(np.float32))
        save_npy(
            tmp, "strength", np.concatenate([f.local.strength for f in features]).astype(np.float32)
        )
        save_npy(tmp, "global", np.stack([f.global_ for f in features]).astype(np.float16))
        (tmp / "meta.json").write_text(json.dumps({**meta, "images": len(features)}, indent=2))
    return final


@dataclass(frozen=True)
class Shard:
    """A shard opened read-only with memory-mapped arrays."""

    offsets: np.ndarray
    desc: np.ndarray
    xy: np.ndarray
    scale: np.ndarray
    strength: np.ndarray
    global_: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def local(self, row: int, limit: int | None = None) -> LocalFeatures:
        """Image `row`'s local features (the `limit` strongest when given)."""
        a, b = int(self.offsets[row]), int(self.offsets[row + 1])
        if limit is not None:
            b = min(b, a + limit)
        return LocalFeatures(
            xy=np.asarray(self.xy[a:b]),
            scale=np.asarray(self.scale[a:b]),
            strength=np.asarray(self.strength[a:b]),
            desc=np.asarray(self.desc[a:b]),
        )


@lru_cache(maxsize=64)
def _open(path: str, identity: tuple[int, int]) -> Shard:
    """`identity` (inode, mtime) keys the cache, so a shard rewritten under the same number
    is never served from a stale entry."""
    folder = Path(path)

    def load(name: str) -> np.ndarray:
        return np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)

    return Shard(
        offsets=np.asarray(load("offsets")),
        desc=load("desc"),
        xy=load("xy"),
        scale=load("scale"),
        strength=load("strength"),
        global_=load("global"),
    )


def open_shard(features_dir: Path, shard: int) -> Shard:
    path = shard_path(features_dir, shard)
    if not path.is_dir():
        raise ShardDamaged(
            f"feature shard {path} is missing: run `lookalike check --repair` on the collection"
        )
    st = path.stat()
    try:
        return _open(str(path), (st.st_ino, st.st_mtime_ns))
    except (OSError, ValueError, EOFError) as e:
        raise ShardDamaged(
            f"feature shard {path} is damaged ({e}): run `lookalike check --repair` on the "
            "collection"
        ) from e


class ShardDamaged(FileNotFoundError):
    """A feature shard cannot be read (missing, truncated or garbled); the message names it
    and says what repairs it."""
