"""The `Indexer`: bring an index folder up to date with its collection folder.

scan (new, changed, deleted files) -> extract (new shards) -> backfill (classic descriptors,
RootSIFT) -> learn (whitening, codebook: when due) -> build and publish a generation ->
remove what no generation needs. Each step skips what is stored; a killed run loses at most
the images in flight, and the next run carries on.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog import Catalog, CatalogError, ImageRecord, ScanPlan, writer_lock
from lookalike.features.batch import Extracted, ExtractMany, Extras, iter_extract
from lookalike.features.minutiae import check_available as check_minutiae
from lookalike.images import ImageError, content_hash, find_images
from lookalike.index import build, classic_store, compaction, minutiae_store, sift_store
from lookalike.index.check import check_index, generation_damage, repair
from lookalike.index.compaction import compact_shards, ensure_codec
from lookalike.index.generation import Manifest, current_model, replace_model, state_of
from lookalike.index.layout import INDEX_DIR_NAME, IndexLayout
from lookalike.index.store import open_shard
from lookalike.learn.model import Model, generic_model
from lookalike.settings import Settings

logger = logging.getLogger("lookalike")

ProgressCallback = Callable[[str, int, int], None]
"""Called as `progress(stage, done, total)` during long work."""


@dataclass(frozen=True)
class IndexReport:
    """What an index run did.

    `unchanged`: images already indexed and not described again (unchanged files that failed
    before are in `failed` instead, with their reason). `model`: where the model comes from
    (generic, learned, bundle ...), `model_id` its id, `learned_now` whether this run learned
    it from the collection.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    images: int = 0
    model: str = ""
    model_id: str = ""
    learned_now: bool = False
    generation: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON gives it everywhere (CLI `index --json`, the server's job)."""
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "removed": len(self.removed),
            "unchanged": self.unchanged,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "images": self.images,
            "model": {"id": self.model_id, "origin": self.model, "learned_now": self.learned_now},
            "generation": self.generation,
            "seconds": round(self.seconds, 6),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
        }


class DiskFull(CatalogError):
    """The index could not be written for want of space."""


@dataclass(frozen=True)
class _Scan:
    """The folder as scanned against the catalog: `files` path -> (size, mtime_ns); `todo` the
    paths to describe; `touched` the changed files with the bytes they were indexed with."""

    files: dict[str, tuple[int, int]]
    plan: ScanPlan
    todo: list[str]
    touched: set[str]
    unstorable: list[tuple[str, str]]
    weights: Path | None
    """The network's weights the images are described with (None: ImageNet's)."""
    extracted_with: str
    """What the features described now depend on (`_extractor_key`)."""


class Indexer:
    """Runs index updates of the collection `root` into `index_dir` under `settings`."""

    def __init__(self, root: Path, index_dir: Path, settings: Settings) -> None:
        self.root = root
        self.index_dir = index_dir
        self.layout = IndexLayout(index_dir)
        self.settings = settings

    def run(
        self,
        *,
        extract: ExtractMany = iter_extract,
        refit: bool = False,
        progress: ProgressCallback | None = None,
        shard_size: int = 64,
    ) -> IndexReport:
        """Bring the index up to date with the folder: add new and changed files, drop deleted
        ones, (re)fit the model when needed, and publish a new generation when anything
        changed. `extract` describes the new files (local processes by default).

        Raises:
            DiskFull: the disk (or a file size limit) ran out; what is published stays as it
                was, and a run with space again carries on.
        """
        try:
            return self._run(extract, refit, progress, shard_size)
        except (OSError, sqlite3.OperationalError, CatalogError) as e:
            if not disk_full(e):
                raise
            raise DiskFull(
                f"{self.index_dir}: the disk is full ({e}); the previous index is intact and "
                "searchable. Free some space and run the index again: it carries on."
            ) from e

    def _run(
        self,
        extract: ExtractMany,
        refit: bool,
        progress: ProgressCallback | None,
        shard_size: int,
    ) -> IndexReport:
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        if self.extras.has_minutiae:
            check_minutiae()  # before any work: MinutiaeUnavailable says how to install them
        with writer_lock(self.index_dir):
            repaired = self.repair()
            if repaired:
                timings["repair"] = time.perf_counter() - t0
            report = self._update(extract, refit, progress, shard_size, timings)
        return replace(report, seconds=time.perf_counter() - t0, timings=timings)

    def repair(self, *, full: bool = False) -> list[str]:
        """Check the index (`check.check_index`; quick unless `full`) and undo its damage so
        that this run makes it again; what was found and done is logged and returned. The
        caller holds the writer lock."""
        if not self.layout.catalog.is_file():
            return []  # a new index
        damages = check_index(self.index_dir, full=full)
        for damage in damages:
            logger.warning("damaged %s %s: %s", damage.part, damage.path, damage.reason)
        done = repair(self.index_dir, damages)
        for line in done:
            logger.warning("repair: %s", line)
        return done

    def _update(
        self,
        extract: ExtractMany,
        refit: bool,
        progress: ProgressCallback | None,
        shard_size: int,
        timings: dict[str, float],
    ) -> IndexReport:
        t0 = time.perf_counter()
        compaction.recover(self.layout.features)  # a compaction a killed run left half done
        with Catalog.open(self.index_dir) as catalog:
            scan = self._scan(catalog)
            timings["scan"] = time.perf_counter() - t0
            t = time.perf_counter()
            failures = self._extract(catalog, scan, extract, progress, shard_size)
            timings["extract"] = time.perf_counter() - t
            records = catalog.records("ok")
            t = time.perf_counter()
            described = self._backfill(records, progress, catalog.generation)
            if described:
                timings["backfill"] = time.perf_counter() - t
            extras = self.extras
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
            changed = scan.todo or scan.plan.removed or fitted or described
            if changed or self.stale(generation, model, records):
                t = time.perf_counter()
                generation = self._publish(catalog, model, records, sift_codebook, progress)
                timings["build"] = time.perf_counter() - t
            t = time.perf_counter()
            if self._compact(model.id, generation):
                timings["compact"] = time.perf_counter() - t
            return self._report(catalog, scan, failures, records, model, fitted, generation)

    def _compact(self, model_id: str, generation: int) -> int:
        """With compact features on, the shards whose codes are made rewritten compact (the
        codec learned first when there is none); how many were. `generation`: the one
        published, which holds the codes of shards whose `codes/` are deleted."""
        store = self.settings.store
        codec = ensure_codec(self.index_dir, store)
        if codec is None:
            return 0
        return compact_shards(self.index_dir, model_id, codec, store, generation)

    @property
    def extras(self) -> Extras:
        """What is stored for each image besides its CNN features."""
        return Extras(self.settings.classic, self.settings.sift, self.settings.minutiae)

    def _scan(self, catalog: Catalog) -> _Scan:
        """The collection's image files against the catalog; deleted files are dropped from it,
        files touched but not changed get their new times."""
        files, unstorable = scan_files(self.root, self.index_dir)
        plan = catalog.plan(files)
        catalog.remove(plan.removed)
        touched = _same_bytes(catalog, self.root, plan.changed, files)
        catalog.touch({path: files[path][1] for path in touched})
        todo = plan.new + [p for p in plan.changed if p not in touched]
        model = current_model(self.index_dir)
        weights = model.weights if model is not None else None
        extracted_with = _extractor_key(self.settings.features.key, weights)
        previous = catalog.get_meta("extracted_with")
        if previous is not None and previous != extracted_with:
            # other network weights or feature settings: every image is described anew
            logger.info("the network or feature settings changed: re-extracting everything")
            todo = sorted(files)
        return _Scan(files, plan, todo, touched, unstorable, weights, extracted_with)

    def _extract(
        self,
        catalog: Catalog,
        scan: _Scan,
        extract: ExtractMany,
        progress: ProgressCallback | None,
        shard_size: int,
    ) -> list[Extracted]:
        """Describe `scan.todo` into new shards; returns the failures."""
        done = 0
        todo = scan.todo

        def on_result(_: Extracted) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress("extract", done, len(todo))

        if progress is not None and todo:
            progress("extract", 0, len(todo))
        extras = self.extras
        results = extract(
            self.root, todo, self.settings.features, weights=scan.weights, extras=extras
        )
        failures = build.extract_into_shards(
            catalog,
            self.index_dir,
            results,
            scan.files,
            self.settings.features,
            shard_size=shard_size,
            on_result=on_result,
            extras=extras,
        )
        catalog.set_meta("extracted_with", scan.extracted_with)
        return failures

    def _backfill(
        self, records: list[ImageRecord], progress: ProgressCallback | None, generation: int
    ) -> int:
        """Classic descriptors, RootSIFT features and minutiae for images extracted before they
        were stored (or before their settings changed), and for those the published
        `generation` does not hold once their folders are deleted: decodes those images again,
        without the network. Returns how many images were described (once per kind)."""
        features_dir = self.layout.features

        def rows(shard: int) -> int:
            return len(open_shard(features_dir, shard))

        def stage(name: str) -> Callable[[int, int], None] | None:
            return None if progress is None else lambda done, total: progress(name, done, total)

        settings = self.settings
        return (
            classic_store.backfill(
                self.index_dir,
                self.root,
                records,
                settings.classic,
                settings.features.decode_size,
                rows,
                stage("classic"),
                generation,
            )
            + sift_store.backfill(
                self.index_dir, self.root, records, settings.sift, rows, stage("rootsift")
            )
            + minutiae_store.backfill(
                self.index_dir, self.root, records, settings.minutiae, rows, stage("minutiae")
            )
        )

    def _ensure_model(
        self,
        catalog: Catalog,
        records: list[ImageRecord],
        *,
        refit: bool,
        progress: ProgressCallback | None,
    ) -> tuple[Model, bool]:
        """The model to encode with, fitting one on the collection when that is due."""
        learn = self.settings.learn
        model = current_model(self.index_dir)
        pinned = catalog.get_meta("model_pinned") == "1"
        if model is not None and pinned and not refit:
            return model, False
        if model is not None and not refit and not self._model_due(model, len(records)):
            return model, False
        if len(records) < learn.min_images:
            generic = generic_model()
            if generic.features == self.settings.features:
                if model is None or model.id != generic.id:
                    logger.warning(
                        "%d images is too few to learn from (under %d): using the generic "
                        "whitening and codebook learned from public images",
                        len(records),
                        learn.min_images,
                    )
                    replace_model(self.index_dir, generic)
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
        model = build.fit_model(self.layout.features, records, self.settings.features, learn)
        replace_model(self.index_dir, model)
        if progress is not None:
            progress("learn", 1, 1)
        return model, True

    def _model_due(self, model: Model, n_records: int) -> bool:
        """Whether `model` should be fitted again for a collection of `n_records` images."""
        enough = n_records >= self.settings.learn.min_images
        fitted_on = int(str(model.meta.get("fitted_on_images", 0)))
        own = model.origin == "collection"
        return (
            (not own and enough)
            or (own and not enough)
            or (own and n_records >= 2 * fitted_on)
            or model.features != self.settings.features
        )

    def stale(self, generation: int, model: Model, records: Sequence[ImageRecord]) -> bool:
        """Whether the published `generation` must be built again: missing, of another
        manifest version, built with another model or other settings, or over another state
        of the catalog than `records` (a run stopped after changing the catalog and before
        publishing)."""
        folder = self.layout.generation(generation)
        manifest = Manifest.read(folder)
        extras = self.extras
        if manifest is None or not manifest.built_with(
            model.id,
            self.settings.classic.key,
            self.settings.sift.key if extras.has_sift else None,
            self.settings.index.key,
            state_of(records),
            self.settings.similar,
        ):
            return True
        for damage in generation_damage(folder):
            logger.warning("building the generation again: %s", damage.reason)
            return True
        return False

    def _publish(
        self,
        catalog: Catalog,
        model: Model,
        records: Sequence[ImageRecord],
        sift_codebook: np.ndarray | None,
        progress: ProgressCallback | None,
    ) -> int:
        """Build the next generation over `records`, publish it, and remove what no
        generation needs any more. Returns its number."""
        if progress is not None:
            progress("build", 0, 1)
        generation = catalog.generation + 1
        extras = self.extras
        build.build_generation(
            self.index_dir,
            model,
            records,
            generation,
            extras,
            sift_codebook,
            self.settings.index,
            self.settings.similar,
        )
        with catalog.transaction(durable=True):
            catalog.set_meta("generation", str(generation))
            catalog.set_meta("last_run", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        build.remove_stale(self.index_dir, catalog, model, generation, extras)
        if progress is not None:
            progress("build", 1, 1)
        return generation

    def _report(
        self,
        catalog: Catalog,
        scan: _Scan,
        failures: list[Extracted],
        records: list[ImageRecord],
        model: Model,
        fitted: bool,
        generation: int,
    ) -> IndexReport:
        plan, todo = scan.plan, scan.todo
        failed_paths = {f.path for f in failures}
        unchanged = set(plan.unchanged) | scan.touched
        unchanged_failed = [
            (r.path, r.error or "") for r in catalog.records("failed") if r.path in unchanged
        ]
        redone = set(todo) - set(plan.new)
        return IndexReport(
            added=[p for p in plan.new if p not in failed_paths],
            updated=[p for p in sorted(redone) if p not in failed_paths],
            removed=plan.removed,
            unchanged=len(unchanged - redone - {p for p, _ in unchanged_failed}),
            failed=[(f.path, f.error or "") for f in failures] + unchanged_failed + scan.unstorable,
            images=len(records),
            model=model.origin,
            model_id=model.id,
            # fitted: the model changed in this run, which the generic one taken also does
            learned_now=fitted and model.origin == "collection",
            generation=generation,
        )


def scan_files(
    root: Path, index_dir: Path
) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]]]:
    """The image files under `root` (not those inside `index_dir`): path relative to `root`
    -> (size, mtime_ns); and `(path, reason)` of the names the catalog cannot hold."""
    index_inside = _inside(index_dir, root)
    files: dict[str, tuple[int, int]] = {}
    unstorable: list[tuple[str, str]] = []
    for path in find_images(root, exclude_dirs=(INDEX_DIR_NAME,)):
        if index_inside and _inside(path, index_dir):
            continue
        try:
            st = path.stat()
        except OSError:
            continue  # deleted or unreadable mid-scan; the next run sees it
        rel = path.relative_to(root).as_posix()
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 in a POSIX file name
            shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
            unstorable.append((shown, "file name is not valid UTF-8; rename the file"))
            continue
        files[rel] = (st.st_size, st.st_mtime_ns)
    return files, unstorable


def disk_full(e: BaseException) -> bool:
    """Whether an error means no space: ENOSPC, EFBIG (a file size limit), EDQUOT, or SQLite's
    own 'database or disk is full' (also as the catalog reports it)."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    text = str(e)
    # numpy reports a short write as "N requested and M written", without an errno
    short_write = isinstance(e, OSError) and "requested and" in text and "written" in text
    return short_write or "disk is full" in text


def _extractor_key(features_key: str, weights: Path | None) -> str:
    """What the stored features depend on: feature settings and the network's weights."""
    if weights is None:
        return f"{features_key}|imagenet"
    digest = hashlib.blake2b(weights.read_bytes(), digest_size=8).hexdigest()
    return f"{features_key}|{digest}"


def _same_bytes(
    catalog: Catalog, root: Path, changed: list[str], files: dict[str, tuple[int, int]]
) -> set[str]:
    """Those of `changed` (files whose modification time moved) with the size and content hash
    they were indexed with: copied, restored or touched, not edited. They are not described
    again."""
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
