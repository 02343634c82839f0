"""ASMK codes of stored shards under one model, encoded once per shard
(`codes/MODEL/shard-NNNNNN/`, until a generation holding them is published: `published`);
whitened global descriptors of stored rows; codes read by row (a shard set's parts keep theirs
in this layout, with their whitened globals)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lookalike.index.asmk_index import ImageCode, Vocabulary
from lookalike.index.atomic import atomic_dir, save_npy
from lookalike.index.layout import IndexLayout, shard_name
from lookalike.index.store import open_shard
from lookalike.learn.model import Model


def encode_shard(model: Model, vocabulary: Vocabulary, features_dir: Path, shard: int) -> Path:
    """ASMK codes of every row of a shard, for this model.

    Stored in `codes/<model id>/shard-NNNNNN/`; skipped when present.
    """
    codes_dir = IndexLayout(features_dir.parent).codes(model.id)
    final = codes_dir / shard_name(shard)
    if final.is_dir():
        return final
    codes_dir.mkdir(parents=True, exist_ok=True)
    data = open_shard(features_dir, shard)
    desc = model.local_whitening.apply(data.descriptors())
    bounds = data.offsets
    codes = vocabulary.encode_many([desc[bounds[r] : bounds[r + 1]] for r in range(len(data))])
    with atomic_dir(final) as tmp:
        save_npy(tmp, "word_offsets", np.cumsum([0] + [len(c.words) for c in codes]))
        save_npy(tmp, "words", np.concatenate([c.words for c in codes]))
        save_npy(tmp, "residuals", np.concatenate([c.residuals for c in codes]))
    return final


def whitened_globals(model: Model, features_dir: Path, shard: int, rows: np.ndarray) -> np.ndarray:
    """The whitened global descriptors `(len(rows), d)` float32 of `rows` of a feature shard."""
    raw = open_shard(features_dir, shard).global_[np.asarray(rows, np.int64)]
    return model.global_whitening.apply(np.asarray(raw, dtype=np.float32))


def load_codes(codes_dir: Path, rows: Sequence[int]) -> tuple[list[ImageCode], np.ndarray]:
    """The ASMK codes and whitened globals `(len(rows), d)` of `rows` of one encoded shard."""
    offsets = np.load(codes_dir / "word_offsets.npy")
    words = np.load(codes_dir / "words.npy", mmap_mode="r")
    residuals = np.load(codes_dir / "residuals.npy", mmap_mode="r")
    global_ = np.load(codes_dir / "global.npy", mmap_mode="r")
    codes = [
        ImageCode(
            np.array(words[offsets[r] : offsets[r + 1]]),
            np.array(residuals[offsets[r] : offsets[r + 1]]),
        )
        for r in rows
    ]
    return codes, np.array(global_[list(rows)])
