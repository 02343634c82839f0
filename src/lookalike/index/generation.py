"""A published generation of the indexes: its typed manifest, the generation loaded for
reading, what the second stage reads of its images, and the immutable snapshot one search uses
from start to end.

A generation folder (`gen-NNNNNN/`) is written whole in a temporary folder and renamed into
place; its `manifest.json` says what it was built with and which state of the catalog it
reflects (`catalog_state`). It carries its own frozen list of its images (`images-*.npy`,
`images-text.json`: id, path, content hash, feature shard and row, size): readers read that,
never the live catalog rows, so a search never meets a half-applied update. A manifest of
another version, or a catalog whose state differs from the one the generation reflects (an
update stopped between the catalog and the publication), makes the generation stale, and the
next `index` run builds it again from the stored features (no image is described again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lookalike.catalog import Catalog, CatalogError, ImageRecord
from lookalike.features import ImageFeatures, LocalFeatures
from lookalike.index.asmk_index import AsmkIndex, AsmkSearch, ImageCode, Vocabulary
from lookalike.index.asmk_shortlist import code_of, load_asmk
from lookalike.index.atomic import save_npy, write_json_atomic
from lookalike.index.global_index import GlobalSearch, load_global
from lookalike.index.layout import IndexLayout
from lookalike.index.similar_index import SimilarIndex
from lookalike.index.store import open_shard
from lookalike.learn.model import Model
from lookalike.settings import SimilarSettings

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 4
"""Version 1 was the unversioned `global.json`; 2 this dataclass without `catalog_state` (and
its generation without its own image list); 3 without `similar`; 4 is this dataclass."""
READABLE_VERSIONS = (2, 3, MANIFEST_VERSION)
"""Versions a reader can search (a version 2 generation reads its images from the catalog);
the next `index` run builds any but the current one again."""
IMAGES_INT = "images-int"
IMAGES_TEXT = "images-text.json"
_INT_COLUMNS = ("id", "size", "mtime_ns", "shard", "row", "width", "height")


@dataclass(frozen=True)
class Manifest:
    """What a generation holds and what it was built with. Row i of every index is catalog
    image `ids.npy[i]`."""

    generation: int
    images: int
    model_id: str
    dim: int
    codebook_size: int
    global_settings: str
    """`IndexSettings.key` of the settings it was built under."""
    global_index: dict[str, Any]
    """The global index's kind and parameters (`global_index.save_global`)."""
    asmk_index: dict[str, Any]
    """The ASMK index's kind and parameters (`asmk_shortlist.save_asmk`)."""
    classic: str | None
    """`ClassicSettings.key` of its classic descriptors (None: none stored)."""
    classic_descriptors: tuple[str, ...]
    sift: str | None
    """`SiftSettings.key` of its RootSIFT inverted file (None: none)."""
    catalog_state: str | None = None
    """`state_of` the records it was built over (None: a version 2 generation)."""
    similar: dict[str, Any] | None = None
    """The `SimilarSettings` its 'similar' vectors were built with (None: none, version 3)."""
    shard_uids: dict[str, str] | None = None
    """Feature shard number -> `store.shard_uid` of the shard its images' codes were made
    from: the next build under the same model takes those codes from here (`published`).
    None: a generation from before, whose codes stay in `codes/`."""
    version: int = MANIFEST_VERSION

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / MANIFEST_FILE, dataclasses.asdict(self))

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        """The manifest of the generation in `folder`; None when there is none, it cannot be
        read, or it is of another version (the generation is then built again)."""
        try:
            values = json.loads((folder / MANIFEST_FILE).read_text())
            if values.get("version") not in READABLE_VERSIONS:
                return None
            values["classic_descriptors"] = tuple(values["classic_descriptors"])
            return cls(**values)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def built_with(
        self,
        model_id: str,
        classic: str | None,
        sift: str | None,
        global_settings: str,
        catalog_state: str,
        similar: SimilarSettings | None = None,
    ) -> bool:
        """Whether this generation is of this version and was built with this model, classic
        descriptors, RootSIFT, global index and 'similar' settings over the catalog as it is
        now (`catalog_state`), so that it need not be built again."""
        wanted = None if similar is None else dataclasses.asdict(similar)
        return (
            self.version,
            self.model_id,
            self.classic,
            self.sift,
            self.global_settings,
            self.catalog_state,
            self.similar,
        ) == (MANIFEST_VERSION, model_id, classic, sift, global_settings, catalog_state, wanted)


def state_of(records: Sequence[ImageRecord]) -> str:
    """A digest of the searchable records a generation is built over (id, path, content hash,
    shard and row, in the order given): it differs whenever an update changed the catalog,
    whether or not the generation was published after it."""
    digest = hashlib.blake2b(digest_size=16)
    for r in records:
        digest.update(f"{r.id}\t{r.path}\t{r.hash}\t{r.shard}\t{r.row}\n".encode())
    return digest.hexdigest()


def save_images(folder: Path, records: Sequence[ImageRecord]) -> None:
    """The generation's own list of its images (row i = records[i]) into `folder`: the integer
    columns as one `(n, 7)` int64 array (-1 for none), paths and hashes as JSON."""
    ints = np.array(
        [[-1 if getattr(r, c) is None else getattr(r, c) for c in _INT_COLUMNS] for r in records],
        dtype=np.int64,
    ).reshape(len(records), len(_INT_COLUMNS))
    save_npy(folder, IMAGES_INT, ints)
    text = {"paths": [r.path for r in records], "hashes": [r.hash for r in records]}
    (folder / IMAGES_TEXT).write_text(json.dumps(text, ensure_ascii=False))


def load_images(folder: Path, ids: np.ndarray) -> dict[int, ImageRecord]:
    """The records of the generation in `folder` by id, as it was built (see `save_images`);
    `ids: (n,)` its rows' ids, which the list must match.

    Raises:
        CatalogError: the list is missing or damaged (the message names the file)."""
    n = len(ids)
    where = folder / f"{IMAGES_INT}.npy"
    try:
        ints = np.load(where, allow_pickle=False)
        if ints.shape != (n, len(_INT_COLUMNS)) or not np.array_equal(ints[:, 0], ids):
            raise ValueError(f"its {ints.shape} rows are not the generation's {n} images")
        where = folder / IMAGES_TEXT
        text = json.loads(where.read_text(encoding="utf-8"))
        paths, hashes = text["paths"], text["hashes"]
        if len(paths) != n or len(hashes) != n:
            raise ValueError(f"it lists {len(paths)} paths for {n} images")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CatalogError(
            f"{where} is missing or damaged ({e}): run `lookalike index` to build the "
            "generation again"
        ) from e
    records = {}
    for (image_id, size, mtime, shard, row, width, height), path, digest in zip(
        ints.tolist(), paths, hashes, strict=True
    ):
        records[image_id] = ImageRecord(
            id=image_id,
            path=path,
            size=size,
            mtime_ns=mtime,
            hash=digest,
            status="ok",
            error=None,
            shard=None if shard < 0 else shard,
            row=None if row < 0 else row,
            width=None if width < 0 else width,
            height=None if height < 0 else height,
        )
    return records


class Generation(Protocol):
    """What the query pipeline reads of a generation (a `LoadedGeneration`, or the sharded
    coordinator's view of one)."""

    @property
    def generation(self) -> int: ...
    @property
    def ids(self) -> np.ndarray: ...
    @property
    def asmk(self) -> AsmkSearch: ...
    @property
    def global_(self) -> GlobalSearch: ...
    @property
    def model(self) -> Model: ...
    @property
    def classic(self) -> Mapping[str, np.ndarray]: ...
    @property
    def sift(self) -> AsmkIndex | None: ...
    @property
    def similar(self) -> SimilarIndex | None: ...
    @property
    def n_images(self) -> int: ...


@dataclass(frozen=True)
class LoadedGeneration:
    """One generation of the indexes, opened for reading. Row i is catalog image `ids[i]`."""

    generation: int
    ids: np.ndarray  # (n,) int64
    asmk: AsmkSearch  # the inverted file, or the shortlist kind: see `search.query.score`
    global_: GlobalSearch  # exact, or compressed: see `CompressedGlobalIndex.scores`
    model: Model
    manifest: Manifest | None = None  # None for a part of a shard set (`scale.part`)
    classic: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, d) float32
    sift: AsmkIndex | None = None  # RootSIFT's inverted file, when the index has one
    similar: SimilarIndex | None = None  # the 'similar' mode's vectors (None: none built)

    @property
    def n_images(self) -> int:
        return len(self.ids)


def load_classic(folder: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    """The classic descriptors of the generation in `folder`, by name, each `(n, d)` float32
    memory-mapped."""
    return {
        name: np.load(folder / f"classic-{name}.npy", mmap_mode="r")
        for name in manifest.classic_descriptors
    }


def load_generation(folder: Path, model: Model) -> LoadedGeneration:
    """The generation in `folder`, opened for reading with `model` (the one it was built with)."""
    manifest = Manifest.read(folder)
    if manifest is None:
        raise CatalogError(f"{folder} has no readable manifest: run `lookalike index` again")
    if manifest.model_id != model.id:
        raise CatalogError(
            f"index {folder} was built with model {manifest.model_id}, but the model is "
            f"{model.id}; run `lookalike index` again"
        )
    vocabulary = Vocabulary(model.codebook)
    sift = None
    try:
        if manifest.sift:
            sift_vocabulary = Vocabulary(np.load(folder / "sift-codebook.npy"))
            sift = AsmkIndex.load(folder / "sift-asmk", sift_vocabulary)
        return LoadedGeneration(
            generation=manifest.generation,
            ids=np.load(folder / "ids.npy"),
            asmk=load_asmk(folder, manifest.asmk_index, vocabulary),
            global_=load_global(folder, manifest.global_index),
            model=model,
            manifest=manifest,
            classic=load_classic(folder, manifest),
            sift=sift,
            similar=None
            if manifest.similar is None
            else SimilarIndex.load(folder, SimilarSettings(**manifest.similar)),
        )
    except (OSError, ValueError, EOFError, KeyError, RuntimeError) as e:
        # a file of the generation is missing, truncated or garbled (FAISS says RuntimeError)
        raise CatalogError(
            f"the index generation {folder} is damaged ({str(e).splitlines()[0]}): run "
            f"`lookalike check --repair` on the collection"
        ) from e


def generation_shards(folder: Path) -> set[int]:
    """The feature shards the generation in `folder` reads (empty when it has no list of its
    own, or none readable)."""
    try:
        shards = image_columns(np.load(folder / f"{IMAGES_INT}.npy", allow_pickle=False))["shard"]
    except (OSError, ValueError):
        return set()
    return {int(s) for s in np.unique(shards[shards >= 0])}


def image_columns(ints: np.ndarray) -> dict[str, np.ndarray]:
    """The columns of a generation's `images-int.npy` by name (ValueError when it is not
    `(n, 7)`)."""
    if ints.ndim != 2 or ints.shape[1] != len(_INT_COLUMNS):
        raise ValueError(f"a list of images must be (n, {len(_INT_COLUMNS)}), got {ints.shape}")
    return {name: ints[:, i] for i, name in enumerate(_INT_COLUMNS)}


MODEL_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)
"""What `Model.load` raises on a model folder whose files are missing, cut short or garbled."""


def load_model(folder: Path) -> Model:
    """The model in `folder`.

    Raises:
        CatalogError: a file of it is missing or damaged (the message names the folder)."""
    try:
        return Model.load(folder)
    except MODEL_ERRORS as e:
        raise CatalogError(
            f"the model {folder} is damaged ({str(e).splitlines()[0] if str(e) else e!r}): "
            "run `lookalike check --repair` on the collection"
        ) from e


def current_model(index_dir: Path) -> Model | None:
    """The model the index folder describes and encodes with (None before the first run).

    Raises:
        CatalogError: it is damaged (`load_model`)."""
    folder = IndexLayout(index_dir).model
    return load_model(folder) if (folder / "meta.json").is_file() else None


def generation_model(index_dir: Path, model_id: str) -> Model | None:
    """The model `model_id` a generation was built with: kept aside when another has
    replaced it since (`replace_model`), else the current one (None before the first run)."""
    kept = IndexLayout(index_dir).kept_model(model_id)
    if (kept / "meta.json").is_file():
        return load_model(kept)
    return current_model(index_dir)


def replace_model(index_dir: Path, model: Model) -> None:
    """Make `model` the one the index folder describes and encodes with. The model it
    replaces is kept aside first (`IndexLayout.kept_model`): the published generation was
    built with it, and readers load it until a generation built with `model` is published
    (even when this run stops before then). The caller holds the writer lock."""
    layout = IndexLayout(index_dir)
    previous = current_model(index_dir)
    if previous is not None and previous.id != model.id:
        kept = layout.kept_model(previous.id)
        if not (kept / "meta.json").is_file():
            previous.save(kept)
    model.save(layout.model)


def remove_kept_models(index_dir: Path, keep: Sequence[Path]) -> None:
    """Remove the models kept aside that none of the generations in `keep` was built with."""
    layout = IndexLayout(index_dir)
    if not layout.kept_models.is_dir():
        return
    needed = {m.model_id for folder in keep if (m := Manifest.read(folder)) is not None}
    for folder in layout.kept_models.iterdir():
        if folder.name not in needed:
            shutil.rmtree(folder, ignore_errors=True)


def stored_features(index_dir: Path, record: ImageRecord) -> ImageFeatures:
    """The raw features of an indexed image, as stored (no re-extraction)."""
    if record.status != "ok" or record.shard is None:
        raise KeyError(f"no indexed image with id {record.id}")
    shard = open_shard(IndexLayout(index_dir).features, record.shard)
    row = record.row or 0
    return ImageFeatures(
        local=shard.local(row), global_=np.asarray(shard.global_[row], dtype=np.float32)
    )


class FolderImages:
    """`StoredImages` of a generation read from its index folder: stored local features,
    longer sides (from the catalog records) and ASMK codes, by row."""

    def __init__(
        self, index_dir: Path, loaded: Generation, records: Mapping[int, ImageRecord]
    ) -> None:
        self.layout = IndexLayout(index_dir)
        self.asmk = loaded.asmk
        self.ids = loaded.ids
        self.records = records

    def _record(self, row: int) -> ImageRecord:
        record = self.records.get(int(self.ids[row]))
        if record is None or record.shard is None:
            raise KeyError(f"row {row} (image {int(self.ids[row])}) has no stored features")
        return record

    def local(self, row: int, limit: int) -> LocalFeatures:
        record = self._record(row)
        return open_shard(self.layout.features, record.shard or 0).local(record.row or 0, limit)

    def side(self, row: int) -> float:
        record = self._record(row)
        return float(max(record.width or 0, record.height or 0))

    def code(self, row: int) -> ImageCode:
        return code_of(self.asmk, row)


class StoredImages(Protocol):
    """What the second stage reads of an indexed image, by row of the generation."""

    def local(self, row: int, limit: int) -> LocalFeatures:
        """Its `limit` strongest local features, positions in its pixels as stored."""
        ...

    def side(self, row: int) -> float:
        """Its longer side in pixels."""
        ...

    def code(self, row: int) -> ImageCode:
        """Its ASMK code."""
        ...


@dataclass(frozen=True)
class Snapshot:
    """One generation with the catalog records of its images and their stored data, as they
    were when it was taken: a search takes one and uses it throughout, so a generation
    published meanwhile changes nothing in it."""

    loaded: Generation
    records: Mapping[int, ImageRecord]
    stored: StoredImages

    @property
    def number(self) -> int:
        return int(self.loaded.generation)

    def images(self) -> list[tuple[int, str]]:
        """`(id, path)` of every searchable image, in the order of the rows."""
        records = self.records
        return [(int(i), records[int(i)].path) for i in self.loaded.ids if int(i) in records]


def generation_records(
    folder: Path, manifest: Manifest | None, ids: np.ndarray, catalog: Catalog
) -> dict[int, ImageRecord]:
    """The records of the generation in `folder` (`ids: (n,)` its rows' ids) by id: its own
    frozen list (`load_images`); a version 2 generation has none, and reads the catalog's
    searchable rows until the next run makes one."""
    if manifest is not None and manifest.catalog_state is None:
        return {r.id: r for r in catalog.records("ok")}
    return load_images(folder, ids)


class Generations:
    """The generation readers search, loaded once and swapped whole (one attribute) when a
    writer publishes a new one."""

    def __init__(self, index_dir: Path, root: Path) -> None:
        self.index_dir = index_dir
        self.root = root
        self._lock = threading.Lock()
        self._current: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        """The current generation's snapshot: its images' records are its own frozen list
        (`load_images`), whatever the catalog holds meanwhile; loading a new one happens once,
        under a lock."""
        with self._lock, Catalog.open(self.index_dir, readonly=True) as catalog:
            with catalog.snapshot():
                number = catalog.generation
                current = self._current
                if current is not None and current.number == number:
                    return current
                folder = IndexLayout(self.index_dir).generation(number)
                manifest = Manifest.read(folder) if number else None
                model = (
                    current_model(self.index_dir)
                    if manifest is None
                    else generation_model(self.index_dir, manifest.model_id)
                )
                if number and folder.is_dir() and model is None:
                    raise CatalogError(
                        f"{IndexLayout(self.index_dir).model} is missing: run `lookalike "
                        f"check --repair {self.root}`"
                    )
                if number == 0 or not folder.is_dir() or model is None:
                    raise CatalogError(
                        f"{self.root} has no index yet: run `lookalike index {self.root}`"
                    )
                loaded = load_generation(folder, model)
                records = generation_records(folder, loaded.manifest, loaded.ids, catalog)
            snapshot = Snapshot(loaded, records, FolderImages(self.index_dir, loaded, records))
            self._current = snapshot
            return snapshot

    def forget(self) -> None:
        """Load the generation again at the next `snapshot` (settings or model changed)."""
        with self._lock:
            self._current = None
