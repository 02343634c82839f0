"""`Collection`: one object through which the CLI, the Python API and the server run every stage.

collection = Collection.create("photos")          # or Collection.open("photos")
report = collection.index()                       # incremental
hits = collection.search("query.jpg", k=10)

A facade: indexing is the `index.update.Indexer`'s, searching the `search.pipeline.Searcher`'s
over the generation snapshots of `index.generation.Generations`.
"""

from __future__ import annotations

import errno
import functools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from lookalike.catalog import Catalog, CatalogError, writer_lock
from lookalike.features import Extractor, ImageFeatures
from lookalike.features.batch import ExtractMany, iter_extract
from lookalike.index import asmk_shortlist, global_index
from lookalike.index.generation import (
    Generations,
    Manifest,
    Snapshot,
    current_model,
    replace_model,
    state_of,
    stored_features,
)
from lookalike.index.layout import INDEX_DIR_NAME, IndexLayout
from lookalike.index.update import DiskFull, Indexer, IndexReport, ProgressCallback
from lookalike.learn.model import Model
from lookalike.scale.ray_index import iter_extract_ray
from lookalike.search.facade import SearchFacade
from lookalike.search.pipeline import Hit, QueryDescription, Searcher, SearchResult
from lookalike.settings import Settings

__all__ = [
    "INDEX_DIR_NAME",
    "Collection",
    "DiskFull",
    "Hit",
    "IndexReport",
    "QueryDescription",
    "SearchResult",
    "find_index_upwards",
]

SETTINGS_KEY = "settings"
ROOT_KEY = "root"


class Collection(SearchFacade):
    """A folder of images and its index folder: the settings, the generations searched and
    the network, built on first use."""

    def __init__(self, root: Path, index_dir: Path, settings: Settings) -> None:
        self.root = root
        self.index_dir = index_dir
        self.settings = settings
        self._generations = Generations(index_dir, root)
        self._extractor: Extractor | None = None

    def __len__(self) -> int:
        """The number of indexed images (0 before the first index run)."""
        if not IndexLayout(self.index_dir).catalog.is_file():
            return 0
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            return catalog.count("ok")

    def __bool__(self) -> bool:
        """Always true: a collection is an object, not a container that is false when empty."""
        return True

    def __repr__(self) -> str:
        return f"Collection({str(self.root)!r}, images={len(self)})"

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        *,
        index: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        model: str | os.PathLike[str] | None = None,
    ) -> Collection:
        """Open the collection at `root`, creating its index folder if needed.

        `index` puts the index folder elsewhere (default `root/.lookalike`); `model` points at a
        model bundle (from `lookalike train`) to use instead of learning one.
        """
        root_path = Path(root).expanduser().resolve()
        if not root_path.is_dir():
            raise FileNotFoundError(f"{root}: not a folder of images")
        index_dir = Path(index).expanduser().resolve() if index else root_path / INDEX_DIR_NAME
        try:
            index_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            hint = "" if index else ": pass --index FOLDER to keep the index elsewhere"
            raise CatalogError(
                f"cannot make the index folder {index_dir} ({e.strerror}){hint}"
            ) from e
        with Catalog.open(index_dir) as catalog:
            stored = catalog.get_meta(SETTINGS_KEY)
            if stored is not None and settings is None:
                settings = Settings.from_dict(json.loads(stored))
            settings = settings or Settings()
            catalog.set_meta(SETTINGS_KEY, json.dumps(settings.as_dict()))
            if index_dir != root_path / INDEX_DIR_NAME:
                catalog.set_meta(ROOT_KEY, str(root_path))
        collection = cls(root_path, index_dir, settings)
        if model is not None:
            collection.use_model(Path(model))
        return collection

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, index: str | os.PathLike[str] | None = None
    ) -> Collection:
        """Open an indexed collection: `path` is the collection folder or its index folder."""
        index_dir = _find_index_dir(Path(path), Path(index) if index else None)
        with Catalog.open(index_dir, readonly=True) as catalog:
            stored = catalog.get_meta(SETTINGS_KEY)
            root_meta = catalog.get_meta(ROOT_KEY)
        settings = Settings.from_dict(json.loads(stored)) if stored else Settings()
        root = Path(root_meta) if root_meta else index_dir.parent
        return cls(root, index_dir, settings)

    def configure(self, settings: Settings) -> None:
        """Store new settings for this collection; the next `index` run applies them (adding
        what they ask for, such as RootSIFT features, to the images already indexed)."""
        with writer_lock(self.index_dir), Catalog.open(self.index_dir) as catalog:
            catalog.set_meta(SETTINGS_KEY, json.dumps(settings.as_dict()))
        self.settings = settings
        self._generations.forget()

    def use_model(self, model_dir: Path) -> None:
        """Index with a model bundle (weights, whitening, codebook) instead of learning one."""
        model = Model.load(model_dir)
        model = replace(model, meta={**model.meta, "origin": f"bundle {model_dir}"})
        settings = replace(self.settings, features=model.features)
        with writer_lock(self.index_dir):
            replace_model(self.index_dir, model)
            with Catalog.open(self.index_dir) as catalog, catalog.transaction(durable=True):
                catalog.set_meta("model_pinned", "1")
                catalog.set_meta(SETTINGS_KEY, json.dumps(settings.as_dict()))
        self.settings = settings
        self._extractor = None

    # --- indexing -------------------------------------------------------------------------

    def index(
        self,
        *,
        workers: int = 0,
        refit: bool = False,
        progress: ProgressCallback | None = None,
        shard_size: int = 64,
        ray: str | None = None,
    ) -> IndexReport:
        """Bring the index up to date with the folder: add new and changed files, drop deleted
        ones, (re)fit the model when needed, and write a new generation of the indexes.

        Features are made durable every `shard_size` images (and every 30 s): a run that is
        killed loses at most that much work, and the next run carries on from there.

        `workers`: extraction processes (0: one per core, up to 4). `ray`: describe the images
        on the Ray cluster at this address ('HOST:PORT' or 'auto'; `workers` actors, 0: one per
        CPU there) instead; the index written is the same (see `lookalike.scale.ray_index`).

        Raises:
            DiskFull: the disk (or a file size limit) ran out; what is published stays as it
                was, and a run with space again carries on.
        """
        extract: ExtractMany = (
            functools.partial(iter_extract, workers=workers)
            if ray is None  # Ray itself is imported only when a cluster is asked for
            else functools.partial(iter_extract_ray, address=ray, workers=workers)
        )
        indexer = Indexer(self.root, self.index_dir, self.settings)
        report = indexer.run(extract=extract, refit=refit, progress=progress, shard_size=shard_size)
        self._generations.forget()
        return report

    # --- searching ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The generation searches read now, with its images' records (a newer one published
        is loaded first)."""
        return self._generations.snapshot()

    def extractor(self) -> Extractor:
        """The network queries are described with, built on first use."""
        if self._extractor is None:
            model = current_model(self.index_dir)
            # One thread per query: as fast as two here (the feature maps are small), and it
            # does not thrash when other work (an index run, other queries) holds the cores.
            self._extractor = Extractor(
                self.settings.features,
                weights=model.weights if model is not None else None,
                threads=1,
            )
        return self._extractor

    @property
    def searcher(self) -> Searcher:
        return Searcher(self.snapshot, self.settings, self.extractor, self.index_dir, self.root)

    def stored_features(self, image_id: int) -> ImageFeatures:
        """The raw features of an indexed image, as stored (no re-extraction)."""
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            record = catalog.by_id(image_id)
        if record is None:
            raise KeyError(f"no indexed image with id {image_id}")
        return stored_features(self.index_dir, record)

    def id_of(self, path: str) -> int | None:
        """Catalog id of an indexed image by its path relative to the root."""
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            record = catalog.get(path)
        return record.id if record is not None and record.status == "ok" else None

    # --- information ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counts, failures, generation, last run and model: `info` without the disk sizes.

        `failed`: each file that could not be indexed, `{"path", "reason"}`; `model`: its `id`,
        `origin` and dimensions (None before the first index run)."""
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            ok = catalog.count("ok")
            generation = catalog.generation
            last_run = catalog.get_meta("last_run")
            failures = [(r.path, r.error) for r in catalog.records("failed")]
        model = current_model(self.index_dir)
        return {
            "root": str(self.root),
            "index": str(self.index_dir),
            "images": ok,
            "failed": [{"path": p, "reason": r} for p, r in failures],
            "generation": generation,
            "last_run": last_run,
            "model": None if model is None else _model_info(model),
        }

    def info(self) -> dict[str, Any]:
        """`status`, the settings, the on-disk sizes and the global index's kind.

        `bytes` (and `bytes_per_image`) by part; `indexes` is the whole current generation,
        of which `global_index` is the part of the global index held in RAM while searching
        and `global_refine` its float16 vectors, memory-mapped from disk (0 when exact);
        `asmk_index` the part of the ASMK index held in RAM and `asmk_codes` its codes,
        memory-mapped (0 for the inverted file). `global_index` and `asmk_index`: their kinds
        and parameters as recorded in the generation. `up_to_date`: whether the generation
        searches read holds every change the catalog records (not after a stopped run, until
        the next `index`)."""
        status = self.status()
        ok, generation = status["images"], status["generation"]
        layout = IndexLayout(self.index_dir)
        current = layout.generation(generation)
        sizes = {
            "features": _du(layout.features),
            "codes": _du(layout.codes_root),
            "classic": _du(layout.classic_root),
            "rootsift": _du(layout.sift_root),
            "model": _du(layout.model),
            "indexes": _du(current),
            **global_index.file_bytes(current),
            **asmk_shortlist.file_bytes(current),
            "catalog": sum(_du(p) for p in self.index_dir.glob("catalog.sqlite*")),
        }
        manifest = Manifest.read(current)
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            state = state_of(catalog.records("ok"))
        return {
            **status,
            "up_to_date": manifest is not None and manifest.catalog_state == state,
            "settings": self.settings.as_dict(),
            "bytes": sizes,
            "bytes_per_image": {k: (v / ok if ok else 0.0) for k, v in sizes.items()},
            "global_index": None if manifest is None else manifest.global_index,
            "asmk_index": None if manifest is None else manifest.asmk_index,
        }


def _model_info(model: Model) -> dict[str, Any]:
    return {
        "id": model.id,
        "origin": model.origin,
        "backbone": model.features.backbone,
        "features": model.features.key,
        "codebook_size": len(model.codebook),
        "local_dim": model.local_whitening.output_dim,
        "global_dim": model.global_whitening.output_dim,
    }


def _find_index_dir(path: Path, index: Path | None) -> Path:
    for candidate in [index, path] if index else [path]:
        if candidate is None:
            continue
        candidate = candidate.expanduser().resolve()
        if IndexLayout(candidate).catalog.is_file():
            return candidate
        if IndexLayout(candidate / INDEX_DIR_NAME).catalog.is_file():
            return candidate / INDEX_DIR_NAME
    where = index or path
    raise CatalogError(f"no lookalike index at {where}: run `lookalike index FOLDER` first")


def find_index_upwards(start: Path) -> Path | None:
    """The nearest `.lookalike` index folder at or above `start` (like git finds `.git`)."""
    start = start.resolve()
    for folder in [start, *start.parents]:
        if IndexLayout(folder / INDEX_DIR_NAME).catalog.is_file():
            return folder / INDEX_DIR_NAME
    return None


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
