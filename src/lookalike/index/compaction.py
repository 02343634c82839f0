"""Compacting feature shards (`StoreSettings.compact`): once a shard's images have their ASMK
codes for the current model, its local features are rewritten compact (`store.write_shard`
with the index's codec): the strongest `keep` an image, descriptors in a few bytes.

The codec is learned once, on a seeded sample of the raw descriptors of the shards there are
when it is first needed, and kept in `.lookalike/codec/`: every compact shard depends on it,
so it is never replaced. Codes are always made from raw features before a shard is compacted;
what reads a compact shard afterwards (verification, search by id, a refit, codes for a new
model) reads the decoded approximations.

A shard is replaced in three renames: the compact copy is written whole beside the shards,
the raw one is moved aside, the copy moved in, the raw one deleted. A run killed in between
leaves either both (the next run deletes the one aside) or the one aside alone (moved back).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from lookalike.features import ImageFeatures
from lookalike.index.compact import MIN_SAMPLE, FeatureCodec
from lookalike.index.layout import IndexLayout, shard_name, shard_numbers
from lookalike.index.published import codes_held, latest
from lookalike.index.store import CODES, open_shard, write_shard
from lookalike.settings import StoreSettings

logger = logging.getLogger("lookalike")

STAGING = ".compacting"
"""Folder under `features/` where compact copies are written before they replace a shard."""
ASIDE = ".raw-"
"""Prefix of a raw shard moved aside while its compact copy moves in."""


def recover(features_dir: Path) -> None:
    """Finish or undo a replacement a killed run left: a raw shard aside goes back when its
    place is empty and is deleted otherwise; a staging folder is deleted."""
    shutil.rmtree(features_dir / STAGING, ignore_errors=True)
    if not features_dir.is_dir():
        return
    for aside in features_dir.glob(f"{ASIDE}*"):
        final = features_dir / aside.name.removeprefix(ASIDE)
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.rename(final)


def ensure_codec(index_dir: Path, settings: StoreSettings, seed: int = 0) -> FeatureCodec | None:
    """The index's codec: None when compact shards are off; else the one kept, or one learned
    now on up to `settings.sample` raw descriptors of its raw shards (None while there are
    fewer than a codec needs: the shards stay raw until there are)."""
    if not settings.compact:
        return None
    layout = IndexLayout(index_dir)
    if layout.codec.is_dir():
        return FeatureCodec.load(layout.codec)
    raw = [s for s in shard_numbers(layout.features) if _is_raw(layout.features, s)]
    if not raw:
        return None
    rng = np.random.default_rng(seed)
    per_shard = max(1, settings.sample // len(raw))
    parts = []
    for shard in raw:
        desc = open_shard(layout.features, shard).descriptors()
        take = rng.choice(len(desc), min(per_shard, len(desc)), replace=False)
        parts.append(desc[np.sort(take)])
    sample = np.concatenate(parts)
    if len(sample) < MIN_SAMPLE:
        logger.info("compact features wait for more descriptors (%d so far)", len(sample))
        return None
    # as many sub-spaces as asked, or the most below that divide the descriptors' dimension
    dim = sample.shape[1]
    subspaces = max(m for m in range(1, settings.subspaces + 1) if dim % m == 0)
    logger.info("learning the codec of compact features on %d descriptors", len(sample))
    codec = FeatureCodec.fit(sample, subspaces, seed=seed)
    codec.save(layout.codec)
    return codec


def compact_shards(
    index_dir: Path,
    model_id: str,
    codec: FeatureCodec,
    settings: StoreSettings,
    generation: int,
) -> int:
    """Rewrite compact every raw feature shard whose images have their codes for the model
    `model_id`, in `codes/` or in the published `generation`; returns how many were."""
    layout = IndexLayout(index_dir)
    features = layout.features
    done = 0
    held = codes_held(latest(index_dir, generation + 1), model_id)
    for shard in shard_numbers(features):
        coded = shard in held or (layout.codes(model_id) / shard_name(shard)).is_dir()
        if not coded or not _is_raw(features, shard):
            continue
        stored = open_shard(features, shard)
        images = [
            ImageFeatures(stored.local(row), np.asarray(stored.global_[row], np.float32))
            for row in range(len(stored))
        ]
        meta = json.loads((features / shard_name(shard) / "meta.json").read_text())
        meta.pop("images", None)
        staging = features / STAGING
        shutil.rmtree(staging / shard_name(shard), ignore_errors=True)
        write_shard(staging, shard, images, meta, codec=codec, keep=settings.keep)
        final = features / shard_name(shard)
        aside = features / f"{ASIDE}{shard_name(shard)}"
        final.rename(aside)
        (staging / shard_name(shard)).rename(final)
        shutil.rmtree(aside)
        done += 1
    shutil.rmtree(features / STAGING, ignore_errors=True)
    if done:
        logger.info("compacted the local features of %d shards", done)
    return done


def _is_raw(features_dir: Path, shard: int) -> bool:
    return not (features_dir / shard_name(shard) / f"{CODES}.npy").is_file()
