"""`Collection`: one object through which the CLI, the Python API and the server run every stage.

collection = Collection.create("photos")          # or Collection.open("photos")
report = collection.index()                       # incremental
hits = collection.search("query.jpg", k=10)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog import Catalog, CatalogError, ImageRecord, writer_lock
from lookalike.images import find_images, load_image
from lookalike.index import build
from lookalike.settings import SEARCH_MODES, SearchSettings, Settings

logger = logging.getLogger("lookalike")

INDEX_DIR_NAME = ".lookalike"
SETTINGS_KEY = "settings"
ROOT_KEY = "root"


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    id: int
    path: str  # relative to the collection root
    score: float
    asmk_score: float | None
    global_score: float | None
    root: Path

    @property
    def abspath(self) -> Path:
        return self.root / self.path

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "path": self.path,
            "score": round(self.score, 6),
            "asmk_score": None if self.asmk_score is None else round(self.asmk_score, 6),
            "global_score": None if self.global_score is None else round(self.global_score, 6),
        }


@dataclass(frozen=True)
class IndexReport:
    """What an index run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    images: int = 0
    model: str = ""
    model_fitted: bool = False
    generation: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "removed": len(self.removed),
            "skipped": self.skipped,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "images": self.images,
            "model": self.model,
            "model_fitted": self.model_fitted,
            "generation": self.generation,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


ProgressCallback = Callable[[str, int, int], None]
"""Called as `progress(stage, done, total)` during long work."""


class Collection:
    """A folder of images and its index folder. Thin: state is the paths and opened indexes."""

    def __init__(self, root: Path, index_dir: Path, settings: Settings) -> None:
        self.root = root
        self.index_dir = index_dir
        self.settings = settings
        self._lock = threading.Lock()
        self._loaded: Any = None
        self._paths: dict[int, str] = {}
        self._extractor: Any = None

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
        index_dir.mkdir(parents=True, exist_ok=True)
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

    def use_model(self, model_dir: Path) -> None:
        """Index with a model bundle (weights, whitening, codebook) instead of learning one."""
        from lookalike.learn.model import Model

        model = Model.load(model_dir)
        model = replace(model, meta={**model.meta, "origin": f"bundle {model_dir}"})
        settings = replace(self.settings, features=model.features)
        with writer_lock(self.index_dir):
            model.save(self.index_dir / build.MODEL_DIR)
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
    ) -> IndexReport:
        """Bring the index up to date with the folder: add new and changed files, drop deleted
        ones, (re)fit the model when needed, and write a new generation of the indexes.

        Features are made durable every `shard_size` images (and every 30 s): a run that is
        killed loses at most that much work, and the next run carries on from there.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        with writer_lock(self.index_dir), Catalog.open(self.index_dir) as catalog:
            paths = find_images(self.root, exclude_dirs=(INDEX_DIR_NAME,))
            index_inside = _inside(self.index_dir, self.root)
            files: dict[str, tuple[int, int]] = {}
            for path in paths:
                if index_inside and _inside(path, self.index_dir):
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue  # deleted or unreadable mid-scan; the next run sees it
                files[path.relative_to(self.root).as_posix()] = (st.st_size, st.st_mtime_ns)
            plan = catalog.plan(files)
            catalog.remove(plan.removed)
            todo = plan.new + plan.changed
            model = self._current_model()
            weights = model.weights if model is not None else None
            extracted_with = _extractor_key(self.settings.features.key, weights)
            previous = catalog.get_meta("extracted_with")
            if previous is not None and previous != extracted_with:
                # other network weights or feature settings: every image is described anew
                logger.info("the network or feature settings changed: re-extracting everything")
                todo = sorted(files)
            timings["scan"] = time.perf_counter() - t0

            t = time.perf_counter()
            done = 0

            def on_result(_: build.Extracted) -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress("extract", done, len(todo))

            if progress is not None and todo:
                progress("extract", 0, len(todo))
            failures = build.extract_into_shards(
                catalog,
                self.root,
                self.index_dir,
                todo,
                files,
                self.settings.features,
                weights=weights,
                workers=workers,
                shard_size=shard_size,
                on_result=on_result,
            )
            timings["extract"] = time.perf_counter() - t
            catalog.set_meta("extracted_with", extracted_with)
            failed_paths = {f.path for f in failures}

            records = catalog.records("ok")
            t = time.perf_counter()
            model, fitted = self._ensure_model(catalog, records, refit=refit, progress=progress)
            timings["learn"] = time.perf_counter() - t

            generation = catalog.generation
            current = build.generation_dir(self.index_dir, generation)
            stale = not (current / "global.json").is_file() or _built_with(current) != model.id
            if todo or plan.removed or fitted or stale:
                t = time.perf_counter()
                if progress is not None:
                    progress("build", 0, 1)
                generation += 1
                build.build_generation(self.index_dir, model, records, generation)
                with catalog.transaction(durable=True):
                    catalog.set_meta("generation", str(generation))
                    catalog.set_meta("last_run", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                build.remove_stale(self.index_dir, catalog, model, generation)
                if progress is not None:
                    progress("build", 1, 1)
                timings["build"] = time.perf_counter() - t
            unchanged = set(plan.unchanged)
            unchanged_failed = [
                (r.path, r.error or "") for r in catalog.records("failed") if r.path in unchanged
            ]
            redone = set(todo) - set(plan.new)
            report = IndexReport(
                added=[p for p in plan.new if p not in failed_paths],
                updated=[p for p in sorted(redone) if p not in failed_paths],
                removed=plan.removed,
                skipped=len(set(plan.unchanged) - redone),
                failed=[(f.path, f.error or "") for f in failures] + unchanged_failed,
                images=len(records),
                model=model.origin,
                model_fitted=fitted,
                generation=generation,
                seconds=time.perf_counter() - t0,
                timings=timings,
            )
        self._loaded = None
        return report

    def _current_model(self) -> Any:
        from lookalike.learn.model import Model

        folder = self.index_dir / build.MODEL_DIR
        return Model.load(folder) if (folder / "meta.json").is_file() else None

    def _ensure_model(
        self,
        catalog: Catalog,
        records: list[ImageRecord],
        *,
        refit: bool,
        progress: ProgressCallback | None,
    ) -> tuple[Any, bool]:
        """The model to encode with, fitting one on the collection when that is due."""
        from lookalike.learn.model import generic_model

        learn = self.settings.learn
        model = self._current_model()
        pinned = catalog.get_meta("model_pinned") == "1"
        if model is not None and pinned and not refit:
            return model, False
        enough = len(records) >= learn.min_images
        fitted_on = int(model.meta.get("fitted_on_images", 0)) if model is not None else 0
        due = (
            refit
            or model is None
            or (model.origin != "collection" and enough)
            or (model.origin == "collection" and not enough)
            or (model.origin == "collection" and len(records) >= 2 * fitted_on)
            or model.features != self.settings.features
        )
        if not due:
            return model, False
        if not enough:
            generic = generic_model()
            if generic.features == self.settings.features:
                if model is None or model.id != generic.id:
                    logger.warning(
                        "%d images is too few to learn from (under %d): using the generic "
                        "whitening and codebook learned from public images",
                        len(records),
                        learn.min_images,
                    )
                    generic.save(self.index_dir / build.MODEL_DIR)
                    return generic, True
                return model, False
            if not records:
                raise RuntimeError("no image could be indexed, so there is nothing to learn from")
            logger.warning(
                "the generic model was learned with other feature settings; fitting on only "
                "%d images",
                len(records),
            )
        if progress is not None:
            progress("learn", 0, 1)
        model = build.fit_model(
            self.index_dir / build.FEATURES_DIR, records, self.settings.features, learn
        )
        model.save(self.index_dir / build.MODEL_DIR)
        if progress is not None:
            progress("learn", 1, 1)
        return model, True

    # --- searching ------------------------------------------------------------------------

    def _generation(self) -> Any:
        """The current generation, loaded once and reloaded when a writer publishes a new one.

        The generation number and the paths of its images are read in one catalog snapshot.
        """
        from lookalike.search.query import load_generation

        with self._lock, Catalog.open(self.index_dir, readonly=True) as catalog:
            with catalog.snapshot():
                generation = catalog.generation
                if self._loaded is not None and self._loaded.generation == generation:
                    return self._loaded
                paths = {r.id: r.path for r in catalog.records("ok")}
            folder = build.generation_dir(self.index_dir, generation)
            if generation == 0 or not folder.is_dir():
                raise CatalogError(
                    f"{self.root} has no index yet: run `lookalike index {self.root}`"
                )
            self._loaded = load_generation(folder, self._current_model())
            self._paths = paths
            return self._loaded

    def extractor(self) -> Any:
        from lookalike.features import Extractor

        if self._extractor is None:
            model = self._current_model()
            # One thread per query: as fast as two here (the feature maps are small), and it
            # does not thrash when other work (an index run, other queries) holds the cores.
            self._extractor = Extractor(
                self.settings.features,
                weights=model.weights if model is not None else None,
                threads=1,
            )
        return self._extractor

    def search(
        self,
        query: Any,
        *,
        k: int = 20,
        mode: str | None = None,
        exclude_self: bool = False,
    ) -> list[Hit]:
        """The `k` images most like `query`: a path, bytes, PIL image, (H, W, 3) array, or the
        id (int) of an indexed image (searched with its stored features; `exclude_self` drops
        it from the hits). `mode` is 'fused' (default), 'asmk' or 'global'."""
        from lookalike.search.query import score, top_rows

        settings = self._search_settings(mode)
        loaded = self._generation()
        self_rows = None
        if isinstance(query, int | np.integer):
            features = self.stored_features(int(query))
            self_rows = np.flatnonzero(loaded.ids == int(query))
        else:
            image = load_image(query, max_side=self.settings.features.decode_size)
            features = self.extractor().extract(image)
        scores = score(loaded, features, settings, self_rows)
        rows = top_rows(scores.final, k, self_rows if exclude_self else None)
        paths = self._paths
        hits = []
        for rank, row in enumerate(rows, start=1):
            image_id = int(loaded.ids[row])
            hits.append(
                Hit(
                    rank=rank,
                    id=image_id,
                    path=paths.get(image_id, f"<removed image {image_id}>"),
                    score=float(scores.final[row]),
                    asmk_score=None if scores.asmk is None else float(scores.asmk[row]),
                    global_score=None if scores.global_ is None else float(scores.global_[row]),
                    root=self.root,
                )
            )
        return hits

    def _search_settings(self, mode: str | None) -> SearchSettings:
        if mode is None:
            return self.settings.search
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; allowed: {', '.join(SEARCH_MODES)}")
        return replace(self.settings.search, mode=mode)

    def stored_features(self, image_id: int) -> Any:
        """The raw features of an indexed image, as stored (no re-extraction)."""
        from lookalike.features import ImageFeatures
        from lookalike.index.store import open_shard

        with Catalog.open(self.index_dir, readonly=True) as catalog:
            record = catalog.by_id(image_id)
        if record is None or record.status != "ok" or record.shard is None:
            raise KeyError(f"no indexed image with id {image_id}")
        shard = open_shard(self.index_dir / build.FEATURES_DIR, record.shard)
        row = record.row or 0
        return ImageFeatures(
            local=shard.local(row), global_=np.asarray(shard.global_[row], dtype=np.float32)
        )

    def id_of(self, path: str) -> int | None:
        """Catalog id of an indexed image by its path relative to the root."""
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            record = catalog.get(path)
        return record.id if record is not None and record.status == "ok" else None

    # --- information ----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Counts, model, generation and on-disk sizes."""
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            ok, failed = catalog.count("ok"), catalog.count("failed")
            generation = catalog.generation
            last_run = catalog.get_meta("last_run")
            failures = [(r.path, r.error) for r in catalog.records("failed")]
        model = self._current_model()
        sizes = {
            "features": _du(self.index_dir / build.FEATURES_DIR),
            "codes": _du(self.index_dir / build.CODES_DIR),
            "model": _du(self.index_dir / build.MODEL_DIR),
            "indexes": _du(build.generation_dir(self.index_dir, generation)),
            "catalog": sum(_du(p) for p in self.index_dir.glob("catalog.sqlite*")),
        }
        return {
            "root": str(self.root),
            "index": str(self.index_dir),
            "images": ok,
            "failed": failed,
            "failures": [{"path": p, "reason": r} for p, r in failures],
            "generation": generation,
            "last_run": last_run,
            "model": None
            if model is None
            else {
                "id": model.id,
                "origin": model.origin,
                "backbone": model.features.backbone,
                "features": model.features.key,
                "codebook_size": len(model.codebook),
                "local_dim": model.local_whitening.output_dim,
                "global_dim": model.global_whitening.output_dim,
            },
            "settings": self.settings.as_dict(),
            "bytes": sizes,
            "bytes_per_image": {k: (v / ok if ok else 0.0) for k, v in sizes.items()},
        }


def _find_index_dir(path: Path, index: Path | None) -> Path:
    for candidate in [index, path] if index else [path]:
        if candidate is None:
            continue
        candidate = candidate.expanduser().resolve()
        if (candidate / "catalog.sqlite").is_file():
            return candidate
        if (candidate / INDEX_DIR_NAME / "catalog.sqlite").is_file():
            return candidate / INDEX_DIR_NAME
    where = index or path
    raise CatalogError(f"no lookalike index at {where}: run `lookalike index FOLDER` first")


def find_index_upwards(start: Path) -> Path | None:
    """The nearest `.lookalike` index folder at or above `start` (like git finds `.git`)."""
    start = start.resolve()
    for folder in [start, *start.parents]:
        if (folder / INDEX_DIR_NAME / "catalog.sqlite").is_file():
            return folder / INDEX_DIR_NAME
    return None


def _extractor_key(features_key: str, weights: Path | None) -> str:
    """What the stored features depend on: feature settings and the network's weights."""
    if weights is None:
        return f"{features_key}|imagenet"
    digest = hashlib.blake2b(weights.read_bytes(), digest_size=8).hexdigest()
    return f"{features_key}|{digest}"


def _built_with(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / "global.json").read_text()).get("model_id"))
    except (OSError, ValueError):
        return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
