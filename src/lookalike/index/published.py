"""What a published generation holds of each image, taken by the next build instead of keeping
a second copy of it beside the feature shards (issue 24: made once, stored once).

A feature shard's ASMK codes (`codes.encode_shard`, in `codes/MODEL/`) and classic descriptors
(`classic_store`, in `classic/KEY/`) are made once; once a generation holding them is
published, those folders are deleted (`build.remove_stale`), and the next build takes them from
the published generation. What identifies them there is the shard's `uid` (`store.shard_uid`,
written with the shard and kept when it is compacted), recorded in the generation's manifest
(`shard_uids`): a shard number reused for other images after a repair has another uid, and its
images are described anew. Codes belong to one model (a refit encodes every shard again from
its stored features), classic descriptors to one `ClassicSettings.key`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lookalike.index.asmk_index import Vocabulary
from lookalike.index.asmk_shortlist import CodeBlock, block_or_codes, load_asmk
from lookalike.index.check import generation_damage
from lookalike.index.generation import IMAGES_INT, Manifest, image_columns
from lookalike.index.layout import IndexLayout
from lookalike.index.store import shard_uid

logger = logging.getLogger("lookalike")


class Published:
    """The generation in `folder` (inside its index folder): its rows by (shard uid, shard
    row), and what it holds of them, read lazily."""

    def __init__(self, folder: Path, manifest: Manifest) -> None:
        self.folder = folder
        self.manifest = manifest
        self._block: CodeBlock | None = None
        self._rows: dict[tuple[str, int], int] | None = None
        self._held: set[int] | None = None

    @classmethod
    def open(cls, folder: Path) -> Published | None:
        """The generation in `folder` when it records where its rows came from; None when it
        does not (one from before)."""
        manifest = Manifest.read(folder)
        if manifest is None or not manifest.shard_uids:
            return None
        return cls(folder, manifest)

    def held_shards(self) -> set[int]:
        """The feature shards whose recorded uid is still the shard's: those whose rows it
        holds."""
        if self._held is None:
            features = IndexLayout(self.folder.parent).features
            uids = self.manifest.shard_uids or {}
            self._held = {int(s) for s, uid in uids.items() if shard_uid(features, int(s)) == uid}
        return self._held

    def holds_codes(self, model_id: str) -> bool:
        """Whether its codes are of the model `model_id`."""
        return self.manifest.model_id == model_id

    def holds_classic(self, key: str, names: tuple[str, ...]) -> bool:
        """Whether it holds the classic descriptors `names` made under the settings `key`."""
        return self.manifest.classic == key and set(names) <= set(self.manifest.classic_descriptors)

    def rows(self, uid: str | None, shard_rows: np.ndarray) -> np.ndarray | None:
        """The generation's rows of `shard_rows: (k,)` of the shard `uid`; None unless it
        holds every one (or its list of images cannot be read)."""
        if uid is None:
            return None
        if self._rows is None:
            try:
                ints = np.load(self.folder / f"{IMAGES_INT}.npy", allow_pickle=False)
                columns = image_columns(ints)
            except (OSError, ValueError) as e:
                logger.warning("%s cannot be read (%s): describing again", self.folder, e)
                columns = {"shard": np.zeros(0, np.int64), "row": np.zeros(0, np.int64)}
            uids = self.manifest.shard_uids or {}
            self._rows = {
                (uids[str(shard)], int(row)): i
                for i, (shard, row) in enumerate(zip(columns["shard"], columns["row"], strict=True))
                if str(shard) in uids
            }
        found = [self._rows.get((uid, int(r))) for r in shard_rows]
        if any(f is None for f in found):
            return None
        return np.asarray(found, np.int64)

    def codes(self, model_id: str, vocabulary: Vocabulary) -> Callable[[], CodeBlock] | None:
        """What opens every image's code in row order, when the generation was built with the
        model `model_id` (else None)."""
        if not self.holds_codes(model_id):
            return None

        def block() -> CodeBlock:
            if self._block is None:  # an inverted file's codes are gathered in memory once
                asmk = load_asmk(self.folder, self.manifest.asmk_index, vocabulary)
                self._block = block_or_codes(asmk)
            return self._block

        return block

    def classic(self, key: str, name: str) -> np.ndarray | None:
        """The classic descriptor `name` of every row, `(n, d)` memory-mapped, when the
        generation holds it under the settings `key` (else None)."""
        if not self.holds_classic(key, (name,)):
            return None
        return np.load(self.folder / f"classic-{name}.npy", mmap_mode="r", allow_pickle=False)


def latest(index_dir: Path, below: int) -> Published | None:
    """The latest generation numbered below `below`, when it records where its rows came
    from and a quick check finds it whole (`check.generation_damage`); None otherwise: what
    it would have given is then made again."""
    for number, folder in reversed(IndexLayout(index_dir).generations()):
        if number < below:
            if generation_damage(folder):
                return None
            return Published.open(folder)
    return None


def codes_held(published: Published | None, model_id: str) -> set[int]:
    """The feature shards whose codes under the model `model_id` `published` holds."""
    if published is None or not published.holds_codes(model_id):
        return set()
    return published.held_shards()


def classic_held(published: Published | None, key: str, names: tuple[str, ...]) -> set[int]:
    """The feature shards whose classic descriptors `names` under the settings `key`
    `published` holds."""
    if published is None or not published.holds_classic(key, names):
        return set()
    return published.held_shards()
