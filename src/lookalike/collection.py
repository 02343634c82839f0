"""`Collection`: one object through which the CLI, the Python API and the server run every stage.

collection = Collection.create("photos")          # or Collection.open("photos")
report = collection.index()                       # incremental
hits = collection.search("query.jpg", k=10)
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.catalog import Catalog, CatalogError, ImageRecord, writer_lock
from lookalike.images import find_images, load_image
from lookalike.index import build, classic_store, sift_store
from lookalike.settings import (
    CNN_MODES,
    DEDUP_THRESHOLD,
    SEARCH_MODES,
    IndexSettings,
    RerankSettings,
    SearchSettings,
    Settings,
)

if TYPE_CHECKING:
    from lookalike.search.verify import Verified

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
    match: Verified | None = None
    """Spatial verification against the query (None when the hit was not verified)."""
    box: np.ndarray | None = None
    """(4, 2) corners, in the hit's pixels, of the query (or its region) mapped by the match."""
    size: tuple[int, int] | None = None
    """The image's (width, height) as seen (EXIF orientation applied)."""

    @property
    def abspath(self) -> Path:
        return self.root / self.path

    @property
    def inliers(self) -> int | None:
        return None if self.match is None else self.match.inliers

    def as_dict(self) -> dict[str, Any]:
        matrix = None if self.match is None else self.match.matrix
        return {
            "rank": self.rank,
            "id": self.id,
            "path": self.path,
            "score": round(self.score, 6),
            "asmk_score": None if self.asmk_score is None else round(self.asmk_score, 6),
            "global_score": None if self.global_score is None else round(self.global_score, 6),
            "inliers": self.inliers,
            "homography": None if matrix is None else np.round(matrix, 6).tolist(),
            "box": None if self.box is None else np.round(self.box, 1).tolist(),
            "width": None if self.size is None else self.size[0],
            "height": None if self.size is None else self.size[1],
        }


@dataclass(frozen=True)
class QueryDescription:
    """A query image described once, to be searched many ways (`Collection.search` takes it
    as its query): CNN features with positions in the query's pixels, classic descriptors by
    name, and the query's (width, height). Spatial verification outcomes are kept in `memo`,
    so that searching it again verifies only images not verified before, and its second looks
    (see `RerankSettings.retry`) are described once."""

    features: Any
    classic: dict[str, np.ndarray]
    size: tuple[int, int]
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    # the pixels described (a `QueryPixels`), kept for second looks (`RerankSettings.retry`);
    # None for an indexed image searched with its stored features
    pixels: Any = field(default=None, compare=False, repr=False)
    # second looks described so far, by name: each one a description of its own
    looks: dict[str, QueryDescription] = field(default_factory=dict, compare=False, repr=False)
    # how much fine detail the query holds (`features.detail`); None when unknown
    detail: float | None = None


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
        self._records: dict[int, ImageRecord] = {}
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

    def configure(self, settings: Settings) -> None:
        """Store new settings for this collection; the next `index` run applies them (adding
        what they ask for, such as RootSIFT features, to the images already indexed)."""
        with writer_lock(self.index_dir), Catalog.open(self.index_dir) as catalog:
            catalog.set_meta(SETTINGS_KEY, json.dumps(settings.as_dict()))
        self.settings = settings
        self._loaded = None

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
        ray: str | None = None,
    ) -> IndexReport:
        """Bring the index up to date with the folder: add new and changed files, drop deleted
        ones, (re)fit the model when needed, and write a new generation of the indexes.

        Features are made durable every `shard_size` images (and every 30 s): a run that is
        killed loses at most that much work, and the next run carries on from there.

        `ray`: describe the images on the Ray cluster at this address ('HOST:PORT' or 'auto';
        `workers` actors, 0: one per CPU there) instead of local processes; the index written
        is the same (see `lookalike.scale.ray_index`).

        Raises:
            DiskFull: the disk (or a file size limit) ran out; what is published stays as it
                was, and a run with space again carries on.
        """
        try:
            return self._index(workers, refit, progress, shard_size, ray)
        except (OSError, sqlite3.OperationalError, CatalogError) as e:
            if not _disk_full(e):
                raise
            raise DiskFull(
                f"{self.index_dir}: the disk is full ({e}); the previous index is intact and "
                "searchable. Free some space and run the index again: it carries on."
            ) from e

    def _index(
        self,
        workers: int,
        refit: bool,
        progress: ProgressCallback | None,
        shard_size: int,
        ray: str | None = None,
    ) -> IndexReport:
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        with writer_lock(self.index_dir), Catalog.open(self.index_dir) as catalog:
            paths = find_images(self.root, exclude_dirs=(INDEX_DIR_NAME,))
            index_inside = _inside(self.index_dir, self.root)
            files: dict[str, tuple[int, int]] = {}
            unstorable: list[tuple[str, str]] = []  # names the catalog cannot hold
            for path in paths:
                if index_inside and _inside(path, self.index_dir):
                    continue
                try:
                    st = path.stat()
                except OSError:
                    continue  # deleted or unreadable mid-scan; the next run sees it
                rel = path.relative_to(self.root).as_posix()
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:  # bytes that are not UTF-8 in a POSIX file name
                    shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
                    unstorable.append((shown, "file name is not valid UTF-8; rename the file"))
                    continue
                files[rel] = (st.st_size, st.st_mtime_ns)
            plan = catalog.plan(files)
            catalog.remove(plan.removed)
            touched = _same_bytes(catalog, self.root, plan.changed, files)
            catalog.touch({path: files[path][1] for path in touched})
            todo = plan.new + [p for p in plan.changed if p not in touched]
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
            extras = build.Extras(self.settings.classic, self.settings.sift)

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
                extras=extras,
                ray=ray,
            )
            timings["extract"] = time.perf_counter() - t
            catalog.set_meta("extracted_with", extracted_with)
            failed_paths = {f.path for f in failures}

            records = catalog.records("ok")
            t = time.perf_counter()
            described = self._backfill(records, progress)
            if described:
                timings["backfill"] = time.perf_counter() - t
            t = time.perf_counter()
            sift_codebook = None
            if extras.has_sift:
                sift_codebook = sift_store.codebook(
                    self.index_dir, self.settings.sift, records, self.settings.learn, refit
                )
                timings["rootsift"] = time.perf_counter() - t
            t = time.perf_counter()
            model, fitted = self._ensure_model(catalog, records, refit=refit, progress=progress)
            timings["learn"] = time.perf_counter() - t

            generation = catalog.generation
            current = build.generation_dir(self.index_dir, generation)
            stale = (
                not (current / "global.json").is_file()
                or _built_with(current) != model.id
                or _built_with(current, "classic") != self.settings.classic.key
                or _built_with(current, "sift")
                != (self.settings.sift.key if extras.has_sift else None)
                or _global_stale(current, self.settings.index)
            )
            if todo or plan.removed or fitted or stale or described:
                t = time.perf_counter()
                if progress is not None:
                    progress("build", 0, 1)
                generation += 1
                build.build_generation(
                    self.index_dir,
                    model,
                    records,
                    generation,
                    extras,
                    sift_codebook,
                    self.settings.index,
                )
                with catalog.transaction(durable=True):
                    catalog.set_meta("generation", str(generation))
                    catalog.set_meta("last_run", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                build.remove_stale(self.index_dir, catalog, model, generation, extras)
                if progress is not None:
                    progress("build", 1, 1)
                timings["build"] = time.perf_counter() - t
            unchanged = set(plan.unchanged) | touched
            unchanged_failed = [
                (r.path, r.error or "") for r in catalog.records("failed") if r.path in unchanged
            ]
            redone = set(todo) - set(plan.new)
            report = IndexReport(
                added=[p for p in plan.new if p not in failed_paths],
                updated=[p for p in sorted(redone) if p not in failed_paths],
                removed=plan.removed,
                skipped=len(unchanged - redone),
                failed=[(f.path, f.error or "") for f in failures] + unchanged_failed + unstorable,
                images=len(records),
                model=model.origin,
                model_fitted=fitted,
                generation=generation,
                seconds=time.perf_counter() - t0,
                timings=timings,
            )
        self._loaded = None
        return report

    def _backfill(self, records: list[ImageRecord], progress: ProgressCallback | None) -> int:
        """Classic descriptors and RootSIFT features for images extracted before they were
        stored (or before their settings changed): decodes those images again, without the
        network. Returns how many images were described (once per kind)."""
        from lookalike.index.store import open_shard

        features_dir = self.index_dir / build.FEATURES_DIR

        def rows(shard: int) -> int:
            return len(open_shard(features_dir, shard))

        def stage(name: str) -> Callable[[int, int], None] | None:
            return None if progress is None else lambda done, total: progress(name, done, total)

        settings = self.settings
        return classic_store.backfill(
            self.index_dir,
            self.root,
            records,
            settings.classic,
            settings.features.decode_size,
            rows,
            stage("classic"),
        ) + sift_store.backfill(
            self.index_dir, self.root, records, settings.sift, rows, stage("rootsift")
        )

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
                records = {r.id: r for r in catalog.records("ok")}
            folder = build.generation_dir(self.index_dir, generation)
            if generation == 0 or not folder.is_dir():
                raise CatalogError(
                    f"{self.root} has no index yet: run `lookalike index {self.root}`"
                )
            self._loaded = load_generation(folder, self._current_model())
            self._records = records
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
        region: tuple[float, float, float, float] | None = None,
        verify: int | None = None,
        expand: bool | None = None,
        fuse: tuple[str, ...] | None = None,
        retry: bool | None = None,
    ) -> list[Hit]:
        """The `k` images most like `query`: a path, bytes, PIL image, (H, W, 3) array, the
        id (int) of an indexed image (searched with its stored features; `exclude_self` drops
        it from the hits), or a `QueryDescription` from `describe`.

        mode: 'fused' (default), 'asmk' or 'global' first stage; or 'colour', 'texture' or
            'shape' to rank by that classic descriptor alone (no second stage).
        fuse: classic descriptors whose scores are added to the first stage's.
        region: `(x, y, w, h)` in pixels of the query as seen (EXIF orientation applied, full
            size): search for what lies inside this box only.
        verify: how many of the first stage's best to verify spatially (0: none); default from
            the collection's settings (100).
        expand: query expansion from the best verified hits; default from the settings (off).
        retry: when nothing verifies for sure, look again at the query image coarser and
            turned (see `RerankSettings.retry`); default from the settings (on).
        """
        from lookalike.search.query import score, top_rows
        from lookalike.search.rerank import rerank

        settings = self._search_settings(mode, fuse)
        second = self._rerank_settings(verify, expand, retry)
        loaded = self._generation()
        described, self_rows = self._query(
            loaded,
            query,
            region,
            cnn=settings.mode in CNN_MODES,
            classic=settings.classic,
            sift=settings.sift,
            optional=settings.blurred,
        )
        scores = score(
            loaded, described.features, settings, self_rows, described.classic, described.detail
        )
        final, verified = scores.final, {}
        if second.shortlist > 0 and described.features is not None:
            stored = self._stored_images(loaded)
            reranked = rerank(
                loaded, described.features, scores, stored, settings, second, self_rows,
                described.memo,
            )  # fmt: skip
            best = _most_inliers(reranked.verified, self_rows)
            if second.retry and best < second.saturation:
                for look in self._second_looks(described):
                    look_scores = score(
                        loaded, look.features, settings, self_rows, look.classic, look.detail
                    )
                    again = rerank(
                        loaded, look.features, look_scores, stored, settings, second, self_rows,
                        look.memo,
                    )  # fmt: skip
                    most = _most_inliers(again.verified, self_rows)
                    if most >= second.min_inliers and most > best:
                        scores, reranked, best = look_scores, again, most
                    if best >= second.saturation:
                        break
            final, verified = reranked.final, reranked.verified
        rows = top_rows(final, k, self_rows if exclude_self else None)
        size = described.size
        query_box = region or (0.0, 0.0, float(size[0]), float(size[1]))
        hits = []
        for rank, row in enumerate(rows, start=1):
            image_id = int(loaded.ids[row])
            record = self._records.get(image_id)
            match = verified.get(int(row))
            hits.append(
                Hit(
                    rank=rank,
                    id=image_id,
                    path=record.path if record else f"<removed image {image_id}>",
                    score=float(final[row]),
                    asmk_score=None if scores.asmk is None else float(scores.asmk[row]),
                    global_score=None if scores.global_ is None else float(scores.global_[row]),
                    root=self.root,
                    match=match,
                    box=None if match is None else match.map_box(query_box),
                    size=None if record is None else (record.width or 0, record.height or 0),
                )
            )
        return hits

    def _stored_images(self, loaded: Any) -> Any:
        """What the second stage reads of the images of `loaded` (a `StoredImages`)."""
        return _StoredImages(self.index_dir, loaded, self._records)

    def dedup(
        self,
        *,
        threshold: int = DEDUP_THRESHOLD,
        neighbours: int = 10,
        progress: ProgressCallback | None = None,
    ) -> list[Any]:
        """Groups of exact copies (same content hash) and near duplicates: images whose spatial
        verification finds at least `threshold` inliers, among each image's `neighbours` best
        first-stage hits. Returns `DuplicateGroup`s ordered by their first path."""
        from lookalike.search.dedup import build_groups

        near = self.verified_pairs(neighbours=neighbours, min_inliers=threshold, progress=progress)
        paths = {i: r.path for i, r in self._records.items()}
        hashes = {i: r.hash for i, r in self._records.items()}
        return build_groups(paths, hashes, near)

    def verified_pairs(
        self,
        *,
        neighbours: int = 10,
        min_inliers: int = 1,
        progress: ProgressCallback | None = None,
    ) -> dict[tuple[int, int], int]:
        """Each indexed image searched by its stored features, its `neighbours` best first-stage
        hits verified: `{(id_a, id_b): inliers}` (id_a < id_b, the larger count of the two
        directions) for pairs with at least `min_inliers`."""
        if min_inliers < 1 or neighbours < 1:
            raise ValueError("the inlier threshold and neighbours must be positive")
        ids = [int(i) for i in self._generation().ids]
        near: dict[tuple[int, int], int] = {}
        for done, image_id in enumerate(ids, start=1):
            hits = self.search(image_id, k=neighbours, exclude_self=True, verify=neighbours + 1)
            for hit in hits:
                if hit.inliers is not None and hit.inliers >= min_inliers:
                    pair = (min(image_id, hit.id), max(image_id, hit.id))
                    near[pair] = max(near.get(pair, 0), hit.inliers)
            if progress is not None:
                progress("dedup", done, len(ids))
        return near

    def explain(
        self,
        query: Any,
        hits: list[Hit],
        out_dir: str | os.PathLike[str],
        *,
        region: tuple[float, float, float, float] | None = None,
        height: int = 480,
    ) -> list[Path]:
        """Write one side-by-side PNG per verified hit into `out_dir`: the query (its region
        boxed) and the hit, with the inlier correspondences and the matched region drawn.
        Returns the files written, in rank order."""
        from lookalike.images import source_size
        from lookalike.search.explain import save_png, side_by_side

        if isinstance(query, int | np.integer):
            record = self._records.get(int(query))
            if record is None:
                raise KeyError(f"no indexed image with id {int(query)}")
            query = self.root / record.path
        size = source_size(query)
        picture = load_image(query, max_side=2 * height)
        written = []
        for hit in hits:
            if hit.match is None:
                continue
            hit_size = source_size(hit.abspath)
            drawn = side_by_side(
                picture,
                size,
                load_image(hit.abspath, max_side=2 * height),
                hit_size,
                hit.match,
                query_box=region,
                hit_box=hit.box,
                height=height,
            )
            name = f"{hit.rank:02d}-{hit.id}-{_safe_stem(hit.path)}.png"
            text = {"query": str(query), "hit": hit.path, "inliers": str(hit.match.inliers)}
            written.append(save_png(drawn, Path(out_dir) / name, text))
        return written

    def _query(
        self,
        loaded: Any,
        query: Any,
        region: tuple[float, float, float, float] | None,
        *,
        cnn: bool,
        classic: tuple[str, ...],
        sift: bool,
        optional: tuple[str, ...] = (),
    ) -> tuple[QueryDescription, np.ndarray | None]:
        """(The query described: CNN features with positions in query pixels, when `cnn`; the
        `classic` descriptors, and its RootSIFT features as 'rootsift' when `sift`; its (width,
        height), pixels and detail; its rows in `loaded`, the generation being searched, when
        it is an indexed image). `optional`: classic descriptors a blurred query may use
        (`SearchSettings.blurred`); those the index stores are described, and the query's detail
        measured, when its pixels are read with `cnn`, and left out otherwise (a described or
        an indexed query)."""
        from lookalike.features.classic import describe, rootsift
        from lookalike.features.detail import detail
        from lookalike.images import source_size
        from lookalike.search.region import clip_region, query_pixels

        self_rows = None
        needed = (*classic, *(("rootsift",) if sift else ()))
        if isinstance(query, QueryDescription):
            if region is not None:
                raise ValueError("a described query is searched whole: describe the region")
            missing = [n for n in needed if n not in query.classic]
            if missing:
                raise ValueError(f"the described query has no {missing[0]!r} descriptor")
            return query if cnn else replace(query, features=None, pixels=None), None
        if isinstance(query, int | np.integer):
            record = self._records.get(int(query))
            if record is None:
                raise KeyError(f"no indexed image with id {int(query)}")
            self_rows = np.flatnonzero(loaded.ids == int(query))
            size = (record.width or 0, record.height or 0)
            stored = [n for n in classic if n in loaded.classic]
            has_sift = record.shard is not None and sift_store.has_sift(
                self.index_dir, self.settings.sift, record.shard
            )
            if (
                region is None
                and len(self_rows)
                and len(stored) == len(classic)
                and (has_sift or not sift)
            ):
                described = {n: np.asarray(loaded.classic[n][self_rows[0]]) for n in stored}
                if sift:
                    assert record.shard is not None
                    described["rootsift"] = sift_store.read_sift(
                        self.index_dir, self.settings.sift, record.shard, record.row or 0
                    )
                features = self.stored_features(int(query)) if cnn else None
                return QueryDescription(features, described, size), self_rows
            query = self.root / record.path
        size = source_size(query)
        box = None if region is None else clip_region(region, size)
        described = {}
        if cnn or classic:
            pixels = query_pixels(query, size, self.settings.features.decode_size, box)
            blurred = [n for n in optional if n in loaded.classic] if cnn else []
            wanted = (*classic, *(n for n in blurred if n not in classic))
            described = describe(pixels.image, wanted, self.settings.classic)
        if sift:
            sharp = query_pixels(query, size, self.settings.sift.max_side, box)
            described["rootsift"] = rootsift(sharp.image, self.settings.sift).desc
        if not cnn:
            return QueryDescription(None, described, size), self_rows
        features = _in_query(self.extractor().extract(pixels.image), pixels)
        # the detail matters only where colour may weigh in for a blurred query
        sharpness = detail(pixels.image) if blurred else None
        described_query = QueryDescription(
            features, described, size, pixels=pixels, detail=sharpness
        )
        return described_query, self_rows

    def _second_looks(self, described: QueryDescription) -> Iterator[QueryDescription]:
        """`described` read again each way of `search.retry.second_looks`, each described only
        the first time it is asked for."""
        from lookalike.search.retry import read, second_looks

        pixels = described.pixels
        if pixels is None:
            return
        for look in second_looks(self.settings.features.scales):
            if look.name not in described.looks:
                features = read(self.extractor().extract, pixels.image, look)
                described.looks[look.name] = QueryDescription(
                    _in_query(features, pixels),
                    described.classic,
                    described.size,
                    detail=described.detail,  # the query's, however the look reads it
                )
            yield described.looks[look.name]

    def images(self) -> list[tuple[int, str]]:
        """`(id, path)` of every searchable image, in the order of the index's rows."""
        loaded = self._generation()
        return [(int(i), self._records[int(i)].path) for i in loaded.ids if int(i) in self._records]

    def describe(
        self,
        query: Any,
        *,
        region: tuple[float, float, float, float] | None = None,
        classic: tuple[str, ...] | None = None,
        cnn: bool = True,
        sift: bool | None = None,
    ) -> QueryDescription:
        """Describe a query image (a path, bytes, PIL image or (H, W, 3) array) once, to search
        it in several modes without describing it again: its CNN features (unless not `cnn`),
        the `classic` descriptors (default: those the index stores) and its RootSIFT features
        (`sift`; default: when the index has them)."""
        loaded = self._generation()
        described, _ = self._query(
            loaded,
            query,
            region,
            cnn=cnn,
            classic=tuple(self.settings.classic.descriptors if classic is None else classic),
            sift=loaded.sift is not None if sift is None else sift,
            optional=self.settings.search.blurred,
        )
        return described

    def _search_settings(self, mode: str | None, fuse: tuple[str, ...] | None) -> SearchSettings:
        settings = self.settings.search
        if mode is not None:
            if mode not in SEARCH_MODES:
                raise ValueError(
                    f"unknown search mode {mode!r}; allowed: {', '.join(SEARCH_MODES)}"
                )
            settings = replace(settings, mode=mode)
        if fuse is not None:
            settings = replace(settings, fuse=tuple(fuse))
        return settings

    def _rerank_settings(
        self, verify: int | None, expand: bool | None, retry: bool | None = None
    ) -> RerankSettings:
        second = self.settings.rerank
        if verify is not None:
            if verify < 0:
                raise ValueError(f"verify must be 0 (off) or a positive count, got {verify}")
            second = replace(second, shortlist=verify)
        if expand is not None:
            second = replace(second, expand=expand)
        if retry is not None:
            second = replace(second, retry=retry)
        return second

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

    @property
    def generation(self) -> int:
        """The index generation searches read now (a newer one published is loaded first)."""
        return int(self._generation().generation)

    def record(self, image_id: int) -> ImageRecord | None:
        """The catalog record of a searchable image (in the generation being searched)."""
        self._generation()
        return self._records.get(int(image_id))

    def status(self) -> dict[str, Any]:
        """Counts, failures, generation, last run and model: `info` without the disk sizes."""
        with Catalog.open(self.index_dir, readonly=True) as catalog:
            ok, failed = catalog.count("ok"), catalog.count("failed")
            generation = catalog.generation
            last_run = catalog.get_meta("last_run")
            failures = [(r.path, r.error) for r in catalog.records("failed")]
        model = self._current_model()
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
        }

    def info(self) -> dict[str, Any]:
        """`status`, the settings, the on-disk sizes and the global index's kind.

        `bytes` (and `bytes_per_image`) by part; `indexes` is the whole current generation,
        of which `global_index` is the part of the global index held in RAM while searching
        and `global_refine` its float16 vectors, memory-mapped from disk (0 when exact);
        `asmk_index` the part of the ASMK index held in RAM and `asmk_codes` its codes,
        memory-mapped (0 for the inverted file). `global_index` and `asmk_index`: their kinds
        and parameters as recorded in the generation."""
        from lookalike.index import asmk_shortlist
        from lookalike.index.global_index import file_bytes

        status = self.status()
        ok, generation = status["images"], status["generation"]
        current = build.generation_dir(self.index_dir, generation)
        sizes = {
            "features": _du(self.index_dir / build.FEATURES_DIR),
            "codes": _du(self.index_dir / build.CODES_DIR),
            "classic": _du(self.index_dir / classic_store.CLASSIC_DIR),
            "rootsift": _du(self.index_dir / sift_store.SIFT_DIR),
            "model": _du(self.index_dir / build.MODEL_DIR),
            "indexes": _du(current),
            **file_bytes(current),
            **asmk_shortlist.file_bytes(current),
            "catalog": sum(_du(p) for p in self.index_dir.glob("catalog.sqlite*")),
        }
        try:
            recorded = json.loads((current / "global.json").read_text())
        except (OSError, ValueError):
            recorded = {}
        return {
            **status,
            "settings": self.settings.as_dict(),
            "bytes": sizes,
            "bytes_per_image": {k: (v / ok if ok else 0.0) for k, v in sizes.items()},
            "global_index": recorded.get("global_index")
            or ({"kind": "exact", "faiss": recorded["index"]} if "index" in recorded else None),
            "asmk_index": recorded.get("asmk_index")
            or ({"kind": "inverted"} if "index" in recorded else None),
        }


def _in_query(features: Any, pixels: Any) -> Any:
    """`features` (an `ImageFeatures`) read off `pixels` (a `QueryPixels`), with positions
    moved to the query's own pixels."""
    from lookalike.features import ImageFeatures, LocalFeatures

    local = features.local
    moved = LocalFeatures(
        xy=pixels.to_query(local.xy), scale=local.scale, strength=local.strength, desc=local.desc
    )
    return ImageFeatures(moved, features.global_)


def _most_inliers(verified: dict[int, Verified], self_rows: np.ndarray | None) -> int:
    """The most inliers of any verified row other than `self_rows` (0 when none)."""
    own = set() if self_rows is None else {int(r) for r in self_rows}
    return max((v.inliers for row, v in verified.items() if row not in own), default=0)


class DiskFull(CatalogError):
    """The index could not be written for want of space."""


def _disk_full(e: BaseException) -> bool:
    """Whether an error means no space: ENOSPC, EFBIG (a file size limit), EDQUOT, or SQLite's
    own 'database or disk is full' (also as the catalog reports it)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    text = str(e)
    # numpy reports a short write as "N requested and M written", without an errno
    short_write = isinstance(e, OSError) and "requested and" in text and "written" in text
    return short_write or "disk is full" in text


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


def _built_with(folder: Path, what: str = "model_id") -> str | None:
    """What the generation in `folder` was built with: its model id, or its 'classic' key."""
    try:
        value = json.loads((folder / "global.json").read_text()).get(what)
    except (OSError, ValueError):
        return None
    return None if value is None else str(value)


def _global_stale(folder: Path, settings: IndexSettings) -> bool:
    """Whether the generation in `folder` was built under other global index settings
    (generations from before they were recorded count as built under the defaults)."""
    return (_built_with(folder, "global_settings") or IndexSettings().key) != settings.key


def _same_bytes(
    catalog: Catalog, root: Path, changed: list[str], files: dict[str, tuple[int, int]]
) -> set[str]:
    """Those of `changed` (files whose modification time moved) with the size and content hash
    they were indexed with: copied, restored or touched, not edited. They are not described
    again."""
    from lookalike.images import ImageError, content_hash

    same = set()
    for path in changed:
        record = catalog.get(path)
        if record is None or record.hash is None or record.size != files[path][0]:
            continue
        try:
            if content_hash(root / path) == record.hash:
                same.add(path)
        except ImageError:
            continue  # unreadable now: extraction reports it
    return same


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def _safe_stem(path: str, limit: int = 60) -> str:
    """A file-name-safe short form of an image's name."""
    stem = Path(path).stem
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:limit] or "image"


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _StoredImages:
    """The second stage's view of an indexed image: stored features, size and ASMK code."""

    def __init__(self, index_dir: Path, loaded: Any, records: dict[int, ImageRecord]) -> None:
        self.features_dir = index_dir / build.FEATURES_DIR
        self.codes_dir = index_dir / build.CODES_DIR / loaded.model.id
        self.ids = loaded.ids
        self.records = records

    def _record(self, row: int) -> ImageRecord:
        record = self.records.get(int(self.ids[row]))
        if record is None or record.shard is None:
            raise KeyError(f"row {row} (image {int(self.ids[row])}) has no stored features")
        return record

    def local(self, row: int, limit: int) -> Any:
        from lookalike.index.store import open_shard

        record = self._record(row)
        return open_shard(self.features_dir, record.shard or 0).local(record.row or 0, limit)

    def side(self, row: int) -> float:
        record = self._record(row)
        return float(max(record.width or 0, record.height or 0))

    def code(self, row: int) -> Any:
        record = self._record(row)
        folder = self.codes_dir / f"shard-{record.shard or 0:06d}"
        codes, _ = build.load_codes(folder, [record.row or 0])
        return codes[0]
