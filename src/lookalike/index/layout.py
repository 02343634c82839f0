"""Every path of an index folder, named once.

index/
  catalog.sqlite            images, status, settings, generation counter (`catalog/`)
  model/                    whitening, codebook, weights (`learn.model.Model`)
  models/MODEL/             a model replaced while a generation built with it may be read
  features/shard-NNNNNN/    local and global features, append-only
  codes/MODEL/shard-NNNNNN/ ASMK codes of a shard under one model, until a generation
                            holding them is published (`published`)
  classic/KEY/shard-NNNNNN/ classic descriptors under one `ClassicSettings.key`, likewise
  sift/KEY/shard-NNNNNN/    RootSIFT features under one `SiftSettings.key`
  minutiae/KEY/shard-NNNNNN/ fingerprint minutiae under one `MinutiaeSettings.key`
  gen-NNNNNN/               a published generation (`index.generation`)
  shards/                   sets of a generation split for sharded search (`scale/`)
  peers/, thumbs/, trash/, trained/
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lookalike.catalog import CATALOG_FILE

INDEX_DIR_NAME = ".lookalike"
"""The index folder's name inside a collection (like `.git`)."""

GENERATION_PREFIX = "gen-"
SHARD_RE = re.compile(r"^shard-(\d{6})$")


def shard_name(shard: int) -> str:
    """The folder name of stored shard number `shard`: `shard-000042`."""
    return f"shard-{shard:06d}"


def shard_numbers(folder: Path) -> list[int]:
    """The shard numbers with a folder in `folder`, ascending (none when it does not exist)."""
    if not folder.is_dir():
        return []
    found = (SHARD_RE.match(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


@dataclass(frozen=True)
class IndexLayout:
    """The paths of the index folder `root`."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def kept_models(self) -> Path:
        return self.root / "models"

    def kept_model(self, model_id: str) -> Path:
        """Where the model `model_id` is kept after `model` is replaced by another, while a
        generation built with it may still be read."""
        return self.kept_models / model_id

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def codec(self) -> Path:
        """The product quantiser of compact feature shards (`index.compact`), learned once."""
        return self.root / "codec"

    def feature_shard(self, shard: int) -> Path:
        return self.features / shard_name(shard)

    @property
    def codes_root(self) -> Path:
        return self.root / "codes"

    def codes(self, model_id: str) -> Path:
        """The ASMK codes of every shard under the model `model_id`."""
        return self.codes_root / model_id

    def code_shard(self, model_id: str, shard: int) -> Path:
        return self.codes(model_id) / shard_name(shard)

    @property
    def classic_root(self) -> Path:
        return self.root / "classic"

    def classic(self, key: str) -> Path:
        """Classic descriptors made under the `ClassicSettings` whose key is `key`."""
        return self.classic_root / key

    @property
    def sift_root(self) -> Path:
        return self.root / "sift"

    def sift(self, key: str) -> Path:
        """RootSIFT features made under the `SiftSettings` whose key is `key`."""
        return self.sift_root / key

    @property
    def minutiae_root(self) -> Path:
        return self.root / "minutiae"

    def minutiae(self, key: str) -> Path:
        """Fingerprint minutiae made under the `MinutiaeSettings` whose key is `key`."""
        return self.minutiae_root / key

    def generation(self, number: int) -> Path:
        return self.root / f"{GENERATION_PREFIX}{number:06d}"

    def generations(self) -> list[tuple[int, Path]]:
        """Every generation folder present, `(number, path)` ascending."""
        found = []
        for folder in self.root.glob(f"{GENERATION_PREFIX}*"):
            number = folder.name[len(GENERATION_PREFIX) :]
            if number.isdigit():
                found.append((int(number), folder))
        return sorted(found)

    @property
    def shard_sets(self) -> Path:
        """Where `lookalike shard` writes a generation's parts by default."""
        return self.root / "shards"

    @property
    def peers(self) -> Path:
        return self.root / "peers"

    @property
    def phash(self) -> Path:
        """The PHash peer's hashes of the collection (`evaluate.peers`)."""
        return self.peers / "phash.npz"

    @property
    def thumbs(self) -> Path:
        """Thumbnails the web page shows (`server.files`)."""
        return self.root / "thumbs"

    @property
    def trash(self) -> Path:
        """Files deleted through the HTTP API, kept (`server.files.move_to_trash`)."""
        return self.root / "trash"

    @property
    def trained(self) -> Path:
        """Where `lookalike train` puts the bundle it makes for this collection."""
        return self.root / "trained"
