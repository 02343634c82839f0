"""Feature shards: append-only folders of memory-mappable arrays, written atomically.

A shard `features/shard-000007/` holds the features of up to a few hundred images:

- `offsets.npy`  (M + 1,) int64 — image m's local features are rows offsets[m]:offsets[m+1]
- `desc.npy`     (N, C) float16 — raw local descriptors (L2-normalised layer activations)
- `xy.npy`       (N, 2) float32 — positions in pixels of the original image
- `scale.npy`    (N,) float32   — scale each feature was read at
- `strength.npy` (N,) float32   — activation norm
- `global.npy`   (M, G) float16 — raw global descriptors (unit norm)
- `meta.json`    feature settings key, counts and `uid` (`shard_uid`)

A *compact* shard (`write_shard` with a codec, `index.compact`) keeps each image's `keep`
strongest local features only, their descriptors as `codes.npy` (N, m) uint8 in place of
`desc.npy` and their positions, scales and strengths in float16 (read as float32), and names
the codec in `meta.json` (`codec`: its key); the codec itself is the index's (`codec/` beside
`features/`). Reading one gives the decoded approximations.

The catalog records (shard, row) for an image only once its shard is durable.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lookalike.features import ImageFeatures, LocalFeatures
from lookalike.index.atomic import atomic_dir, save_npy
from lookalike.index.compact import FILE as CODEC_FILE
from lookalike.index.compact import FeatureCodec
from lookalike.index.layout import shard_name, shard_numbers


def shard_path(features_dir: Path, shard: int) -> Path:
    return features_dir / shard_name(shard)


def existing_shards(features_dir: Path) -> list[int]:
    return shard_numbers(features_dir)


def write_shard(
    features_dir: Path,
    shard: int,
    features: list[ImageFeatures],
    meta: dict[str, object],
    codec: FeatureCodec | None = None,
    keep: int | None = None,
) -> Path:
    """Write `features` (one per image, in row order) as shard number `shard`, durably; with
    a `codec`, compact: each image's `keep` strongest local features (all when None), coded."""
    if not features:
        raise ValueError("a shard needs at least one image")
    final = shard_path(features_dir, shard)
    features_dir.mkdir(parents=True, exist_ok=True)
    local = [f.local if codec is None else _strongest(f.local, keep) for f in features]
    counts = [len(x) for x in local]
    desc = np.concatenate([x.desc for x in local])
    with atomic_dir(final) as tmp:
        save_npy(tmp, "offsets", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        if codec is None:
            save_npy(tmp, "desc", desc.astype(np.float16))
        else:
            save_npy(tmp, CODES, codec.encode(desc.reshape(len(desc), -1)))
            meta = {**meta, "codec": codec.key, "keep": keep}
        # compact: float16 positions (within 0.05% of the image's side: RANSAC's threshold is
        # 3% of it), scales and strengths, 8 bytes a feature beside the codes instead of 16;
        # float32 for a shard holding an image wider than float16 reaches (a 40 MP panorama)
        xy = np.concatenate([x.xy for x in local])
        small = float(np.abs(xy).max(initial=0.0)) < FLOAT16_POSITIONS
        kept = np.float16 if codec is not None and small else np.float32
        save_npy(tmp, "xy", xy.astype(kept))
        save_npy(tmp, "scale", np.concatenate([x.scale for x in local]).astype(kept))
        save_npy(tmp, "strength", np.concatenate([x.strength for x in local]).astype(kept))
        save_npy(tmp, "global", np.stack([f.global_ for f in features]).astype(np.float16))
        (tmp / "meta.json").write_text(json.dumps({**meta, "images": len(features)}, indent=2))
    return final


FLOAT16_POSITIONS = 60_000.0
"""Positions (pixels) from which a compact shard keeps float32 (float16 ends at 65,504)."""

CODES = "codes"
"""A compact shard's coded descriptors (`codes.npy`)."""


def _strongest(local: LocalFeatures, keep: int | None) -> LocalFeatures:
    """The `keep` strongest of `local` (stored strongest first)."""
    if keep is None or len(local) <= keep:
        return local
    return LocalFeatures(
        xy=local.xy[:keep], scale=local.scale[:keep], strength=local.strength[:keep],
        desc=local.desc[:keep],
    )  # fmt: skip


@dataclass(frozen=True)
class Shard:
    """A shard opened read-only with memory-mapped arrays: `desc` raw, or (compact) `codes`
    with the `codec` that decodes them."""

    offsets: np.ndarray
    desc: np.ndarray | None
    xy: np.ndarray
    scale: np.ndarray
    strength: np.ndarray
    global_: np.ndarray
    codes: np.ndarray | None = None
    codec: FeatureCodec | None = None

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def compact(self) -> bool:
        return self.codes is not None

    def descriptors(self) -> np.ndarray:
        """Every row's local descriptors, row after row: `(N, D)` float32 (a compact shard's
        decoded)."""
        if self.codes is not None and self.codec is not None:
            return self.codec.decode(np.asarray(self.codes))
        assert self.desc is not None
        return np.asarray(self.desc, dtype=np.float32)

    def local(self, row: int, limit: int | None = None) -> LocalFeatures:
        """Image `row`'s local features (the `limit` strongest when given); a compact shard's
        descriptors are the codec's approximations."""
        a, b = int(self.offsets[row]), int(self.offsets[row + 1])
        if limit is not None:
            b = min(b, a + limit)
        if self.codes is not None and self.codec is not None:
            desc = self.codec.decode(np.asarray(self.codes[a:b]))
        else:
            assert self.desc is not None
            desc = np.asarray(self.desc[a:b])
        return LocalFeatures(
            xy=np.asarray(self.xy[a:b], dtype=np.float32),
            scale=np.asarray(self.scale[a:b], dtype=np.float32),
            strength=np.asarray(self.strength[a:b], dtype=np.float32),
            desc=desc,
        )


@lru_cache(maxsize=64)
def _open(path: str, identity: tuple[int, int]) -> Shard:
    """`identity` (inode, mtime) keys the cache, so a shard rewritten under the same number
    is never served from a stale entry."""
    folder = Path(path)

    def load(name: str) -> np.ndarray:
        return np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)

    codes = codec = None
    if (folder / f"{CODES}.npy").is_file():
        named = json.loads((folder / "meta.json").read_text()).get("codec")
        codec = _index_codec(folder.parent.parent / CODEC_DIR)
        if codec.key != named:
            raise ValueError(f"its codes are of codec {named}, the index's is {codec.key}")
        codes = load(CODES)
    return Shard(
        offsets=np.asarray(load("offsets")),
        desc=None if codes is not None else load("desc"),
        xy=load("xy"),
        scale=load("scale"),
        strength=load("strength"),
        global_=load("global"),
        codes=codes,
        codec=codec,
    )


CODEC_DIR = "codec"
"""The index's codec, beside `features/` (`IndexLayout.codec`)."""


def _index_codec(folder: Path) -> FeatureCodec:
    """The codec in `folder` (ValueError when missing or damaged), read once per version of
    its file (a repair learns a new one in its place)."""
    try:
        st = (folder / CODEC_FILE).stat()
    except OSError as exc:
        raise ValueError(f"the codec {folder} is missing ({exc})") from exc
    return _codec(str(folder), (st.st_ino, st.st_mtime_ns, st.st_size))


@lru_cache(maxsize=4)
def _codec(path: str, identity: tuple[int, int, int]) -> FeatureCodec:
    return FeatureCodec.load(Path(path))


def new_uid() -> str:
    """A fresh `uid` for a shard's `meta.json` (see `shard_uid`)."""
    return secrets.token_hex(8)


def shard_uid(features_dir: Path, shard: int) -> str | None:
    """The `uid` in shard `shard`'s `meta.json`, made when it was written and kept when it is
    compacted: which features its rows are, whatever its number (None: a shard from before,
    or none readable)."""
    try:
        uid = json.loads((shard_path(features_dir, shard) / "meta.json").read_text()).get("uid")
    except (OSError, ValueError, AttributeError):
        return None
    return uid if isinstance(uid, str) else None


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
