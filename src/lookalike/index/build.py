"""Index-building stages: extract features into shards, fit the model, encode, build indexes.

Each stage is a function that skips what is already stored. `Collection.index` runs them in
order; each can be called alone.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import multiprocessing
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog import Catalog, ImageRecord
from lookalike.features import Extractor, ImageFeatures
from lookalike.images import ImageError, content_hash, image_size, load_image
from lookalike.index import classic_store, sift_store
from lookalike.index.asmk_index import AsmkIndex, ImageCode, Vocabulary
from lookalike.index.asmk_shortlist import CodeBlock, Part, save_asmk, write_shortlist
from lookalike.index.atomic import atomic_dir, save_npy, write_json_atomic
from lookalike.index.global_index import build_global, save_global
from lookalike.index.store import existing_shards, open_shard, write_shard
from lookalike.learn.codebook import fit_codebook
from lookalike.learn.model import Model
from lookalike.learn.whitening import fit_whitening
from lookalike.settings import (
    ClassicSettings,
    FeatureSettings,
    IndexSettings,
    LearnSettings,
    SiftSettings,
)

logger = logging.getLogger("lookalike")

FEATURES_DIR = "features"
CODES_DIR = "codes"
MODEL_DIR = "model"
GENERATION_PREFIX = "gen-"


# --- extraction ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Extracted:
    """The outcome for one file: features, or the reason it failed."""

    path: str
    features: ImageFeatures | None
    width: int
    height: int
    hash: str | None
    error: str | None
    classic: dict[str, np.ndarray] | None = None
    sift: np.ndarray | None = None  # (N, 128) float16 RootSIFT descriptors


@dataclass(frozen=True)
class Extras:
    """What is stored for each image besides its CNN features: the `classic` descriptors its
    settings name, and RootSIFT features when `sift` is given and enabled."""

    classic: ClassicSettings | None = None
    sift: SiftSettings | None = None

    @property
    def has_classic(self) -> bool:
        return self.classic is not None and bool(self.classic.descriptors)

    @property
    def has_sift(self) -> bool:
        return self.sift is not None and self.sift.enabled


_worker_extractor: Extractor | None = None
_worker_extras = Extras()


def _init_worker(settings: FeatureSettings, weights: str | None, extras: Extras) -> None:
    global _worker_extractor, _worker_extras
    _exit_with(os.getppid())
    _worker_extractor = Extractor(settings, weights=weights, threads=1)
    _worker_extras = extras


def _exit_with(parent: int, every: float = 0.5) -> None:
    """End this worker when `parent`, the index run, ends: a run killed with SIGKILL cannot
    shut its pool down, and its workers would otherwise live on, each holding a network."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def extract_file(
    extractor: Extractor, root: Path, rel: str, extras: Extras = Extras()
) -> Extracted:
    """Decode and describe `root / rel` (with the `extras` too); a bad file gives an `Extracted`
    with its error."""
    path = root / rel
    try:
        width, height = image_size(path)
        image = load_image(path, max_side=extractor.settings.decode_size)
        features = extractor.extract(image)
        described = sift = None
        if extras.has_classic:
            from lookalike.features.classic import describe

            assert extras.classic is not None
            described = describe(image, extras.classic.descriptors, extras.classic)
        if extras.has_sift:
            assert extras.sift is not None
            sift = sift_store.describe_file(path, extras.sift)  # decoded at its own size
        factor = max(width, height) / max(image.shape[:2])
        local = features.local
        if factor != 1.0:
            local = type(local)(
                xy=local.xy * np.float32(factor),
                scale=local.scale,
                strength=local.strength,
                desc=local.desc,
            )
        return Extracted(
            rel,
            ImageFeatures(local, features.global_),
            width,
            height,
            content_hash(path),
            None,
            described,
            sift,
        )
    except ImageError as exc:
        return Extracted(rel, None, 0, 0, None, exc.reason)
    except OSError as exc:
        return Extracted(rel, None, 0, 0, None, exc.strerror or str(exc))
    except Exception as exc:  # a bug must not stop a run over thousands of files
        logger.exception("unexpected failure on %s", path)
        return Extracted(rel, None, 0, 0, None, f"unexpected error: {exc!r}")


def _worker_extract(root: Path, rel: str) -> Extracted:
    assert _worker_extractor is not None
    return extract_file(_worker_extractor, root, rel, _worker_extras)


def iter_extract(
    root: Path,
    paths: Sequence[str],
    settings: FeatureSettings,
    *,
    weights: Path | None = None,
    workers: int = 0,
    extras: Extras = Extras(),
) -> Iterator[Extracted]:
    """Extract `paths` (relative to `root`) in order, in `workers` processes (0: automatic),
    with the `extras`."""
    if workers <= 0:
        workers = min(os.cpu_count() or 1, 4)
    workers = min(workers, max(1, len(paths) // 4))
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.isfile(main_file):
        workers = 1  # e.g. a script read from stdin: spawned workers could not re-import it
    if workers == 1:
        extractor = Extractor(settings, weights=weights)
        for rel in paths:
            yield extract_file(extractor, root, rel, extras)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(settings, str(weights) if weights else None, extras),
    ) as pool:
        # A bounded window keeps memory flat on huge collections.
        window = workers * 4
        pending = [pool.submit(_worker_extract, root, rel) for rel in paths[:window]]
        next_index = len(pending)
        while pending:
            result = pending.pop(0).result()
            if next_index < len(paths):
                pending.append(pool.submit(_worker_extract, root, paths[next_index]))
                next_index += 1
            yield result


def extract_into_shards(
    catalog: Catalog,
    root: Path,
    index_dir: Path,
    paths: Sequence[str],
    files: dict[str, tuple[int, int]],
    settings: FeatureSettings,
    *,
    weights: Path | None = None,
    workers: int = 0,
    shard_size: int = 64,
    on_result: Callable[[Extracted], None] | None = None,
    extras: Extras = Extras(),
    ray: str | None = None,
) -> list[Extracted]:
    """Extract `paths` and record them: features (and the `extras`) go to new shards, failures
    to the catalog. `ray`: the address of a Ray cluster to extract on (`workers` actors there;
    see `lookalike.scale.ray_index`) instead of local processes.

    The catalog points at a shard only after the shard is durable. Returns the failures.
    """
    features_dir = index_dir / FEATURES_DIR
    next_shard = max(existing_shards(features_dir), default=0) + 1
    failures: list[Extracted] = []
    buffer: list[Extracted] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal next_shard, last_flush
        if not buffer:
            return
        write_shard(
            features_dir,
            next_shard,
            [b.features for b in buffer if b.features is not None],
            {"features": settings.key},
        )
        # after the features shard (whose folder claims the number, even if we are killed
        # now) and before the catalog names it
        if extras.classic is not None and extras.has_classic:
            classic_store.write_classic(
                index_dir, extras.classic, next_shard, [b.classic for b in buffer]
            )
        if extras.sift is not None and extras.has_sift:
            sift_store.write_sift(index_dir, extras.sift, next_shard, [b.sift for b in buffer])
        with catalog.transaction(durable=True):
            for row, item in enumerate(buffer):
                size, mtime_ns = files[item.path]
                catalog.put_ok(
                    item.path,
                    size=size,
                    mtime_ns=mtime_ns,
                    hash=item.hash,
                    shard=next_shard,
                    row=row,
                    width=item.width,
                    height=item.height,
                )
        next_shard += 1
        buffer.clear()
        last_flush = time.monotonic()

    if ray is None:
        results = iter_extract(
            root, paths, settings, weights=weights, workers=workers, extras=extras
        )
    else:
        from lookalike.scale.ray_index import iter_extract_ray

        results = iter_extract_ray(
            root, paths, settings, address=ray, weights=weights, workers=workers, extras=extras
        )
    for item in results:
        if item.features is None:
            size, mtime_ns = files[item.path]
            catalog.put_failed(
                item.path, size=size, mtime_ns=mtime_ns, error=item.error or "unknown error"
            )
            failures.append(item)
        else:
            buffer.append(item)
        if len(buffer) >= shard_size or (buffer and time.monotonic() - last_flush > 30):
            flush()
        if on_result is not None:
            on_result(item)
    flush()
    return failures


# --- learning ----------------------------------------------------------------------------


def sample_descriptors(
    features_dir: Path, records: Sequence[ImageRecord], n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `n` local descriptors `(n', C)` spread over the images, and all globals `(M, G)`."""
    rng = np.random.default_rng(seed)
    total = 0
    per_image: list[tuple[ImageRecord, int]] = []
    for rec in records:
        shard = open_shard(features_dir, rec.shard or 0)
        count = int(shard.offsets[rec.row + 1] - shard.offsets[rec.row])  # type: ignore[operator]
        per_image.append((rec, count))
        total += count
    keep = min(1.0, n / max(total, 1))
    local, global_ = [], []
    for rec, count in per_image:
        shard = open_shard(features_dir, rec.shard or 0)
        desc = shard.local(rec.row or 0).desc
        take = rng.random(count) < keep
        local.append(np.asarray(desc[take], dtype=np.float32))
        global_.append(np.asarray(shard.global_[rec.row], dtype=np.float32))
    return np.concatenate(local), np.stack(global_)


def fit_model(
    features_dir: Path,
    records: Sequence[ImageRecord],
    features: FeatureSettings,
    learn: LearnSettings,
) -> Model:
    """Fit whitening (local and global) and the codebook on the collection, without labels."""
    t0 = time.perf_counter()
    local, global_ = sample_descriptors(features_dir, records, learn.sample_features, learn.seed)
    model = fit_model_on(local, global_, features, learn)
    seconds = round(time.perf_counter() - t0, 2)
    return dataclasses.replace(
        model, meta={**model.meta, "origin": "collection", "fit_seconds": seconds}
    )


def fit_model_on(
    local: np.ndarray, global_: np.ndarray, features: FeatureSettings, learn: LearnSettings
) -> Model:
    """Whitening and codebook from raw descriptors: `local: (N, C)`, `global_: (M, G)`."""
    local_w = fit_whitening(local, learn.local_dim)
    # Global whitening needs several images per dimension to be stable.
    global_dim = min(learn.global_dim, max(16, len(global_) // 3))
    shrinkage = learn.small_shrinkage if len(global_) < learn.min_images else 0.0
    global_w = fit_whitening(global_, global_dim, shrinkage=shrinkage)
    codebook = fit_codebook(
        local_w.apply(local),
        learn.codebook_size,
        iterations=learn.kmeans_iterations,
        seed=learn.seed,
    )
    meta = {
        "fitted_on_images": len(global_),
        "fitted_on_descriptors": len(local),
        "learn": learn.__dict__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return Model(features, local_w, global_w, codebook, meta)


# --- encoding ----------------------------------------------------------------------------


def encode_shard(model: Model, vocabulary: Vocabulary, features_dir: Path, shard: int) -> Path:
    """ASMK codes and whitened global descriptors of every row of a shard, for this model.

    Stored in `codes/<model id>/shard-NNNNNN/`; skipped when present.
    """
    codes_dir = features_dir.parent / CODES_DIR / model.id
    final = codes_dir / f"shard-{shard:06d}"
    if final.is_dir():
        return final
    codes_dir.mkdir(parents=True, exist_ok=True)
    data = open_shard(features_dir, shard)
    desc = model.local_whitening.apply(np.asarray(data.desc, dtype=np.float32))
    bounds = data.offsets
    codes = vocabulary.encode_many([desc[bounds[r] : bounds[r + 1]] for r in range(len(data))])
    global_ = model.global_whitening.apply(np.asarray(data.global_, dtype=np.float32))
    with atomic_dir(final) as tmp:
        save_npy(tmp, "word_offsets", np.cumsum([0] + [len(c.words) for c in codes]))
        save_npy(tmp, "words", np.concatenate([c.words for c in codes]))
        save_npy(tmp, "residuals", np.concatenate([c.residuals for c in codes]))
        save_npy(tmp, "global", global_.astype(np.float32))
    return final


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


# --- generations -------------------------------------------------------------------------


def generation_dir(index_dir: Path, generation: int) -> Path:
    return index_dir / f"{GENERATION_PREFIX}{generation:06d}"


def build_generation(
    index_dir: Path,
    model: Model,
    records: Sequence[ImageRecord],
    generation: int,
    extras: Extras = Extras(),
    sift_codebook: np.ndarray | None = None,
    global_settings: IndexSettings = IndexSettings(),
) -> Path:
    """Write the global index and the ASMK index (of the kinds `global_settings` choose for
    this many images) over `records` (row i = records[i]); the matrices of their classic
    descriptors (see `classic_store.backfill`); and with RootSIFT enabled, its inverted file
    under `sift_codebook` (see `sift_store.codebook`).

    The ASMK inverted file is built in memory; the shortlist kind's codes are copied from the
    encoded shards straight into the generation folder (memory stays that of one shard)."""
    features_dir = index_dir / FEATURES_DIR
    vocabulary = Vocabulary(model.codebook)
    by_shard: dict[int, list[tuple[int, int]]] = {}
    for i, rec in enumerate(records):
        by_shard.setdefault(rec.shard or 0, []).append((i, rec.row or 0))
    shortlist = global_settings.asmk_shortlist(len(records))
    codes: list[ImageCode | None] = [None] * len(records)
    parts: list[Part] = []
    globals_ = np.zeros((len(records), model.global_whitening.output_dim), np.float32)
    for shard, items in sorted(by_shard.items()):
        folder = encode_shard(model, vocabulary, features_dir, shard)
        rows = np.array([i for i, _ in items], np.int64)
        theirs = np.array([row for _, row in items], np.int64)
        if shortlist:
            parts.append((rows, theirs, functools.partial(CodeBlock.open, folder)))
            globals_[rows] = np.load(folder / "global.npy", mmap_mode="r")[theirs]
            continue
        shard_codes, shard_global = load_codes(folder, theirs.tolist())
        for i, code, g in zip(rows, shard_codes, shard_global, strict=True):
            codes[i] = code
            globals_[i] = g
    asmk = None if shortlist else AsmkIndex.build(vocabulary, [c for c in codes if c is not None])
    del codes
    global_index = build_global(globals_, global_settings)
    del globals_  # the index holds what it needs (a float16 copy, for the compressed kind)
    classic = extras.classic
    described = {} if classic is None else classic_store.gather(index_dir, classic, records)
    sift = None
    if extras.sift is not None and extras.has_sift:
        assert sift_codebook is not None, "RootSIFT is enabled: its codebook is needed"
        sift = sift_store.build_index(index_dir, extras.sift, records, sift_codebook)
    final = generation_dir(index_dir, generation)
    if final.exists():
        shutil.rmtree(final)
    with atomic_dir(final) as tmp:
        recorded = save_global(global_index, tmp)
        if asmk is None:
            candidates = global_settings.candidates
            written = write_shortlist(tmp, vocabulary, len(records), parts, candidates)
            recorded["asmk_index"] = written.params()
        else:
            recorded.update(save_asmk(asmk, tmp))
        save_npy(tmp, "ids", np.asarray([r.id for r in records], dtype=np.int64))
        for name, matrix in described.items():
            save_npy(tmp, f"classic-{name}", matrix)
        if sift is not None and sift_codebook is not None:
            sift.save(tmp / "sift-asmk")
            save_npy(tmp, "sift-codebook", sift_codebook)
        write_json_atomic(
            tmp / "global.json",
            {
                **recorded,
                "global_settings": global_settings.key,
                "dim": global_index.dim,
                "images": len(records),
                "model_id": model.id,
                "generation": generation,
                "codebook_size": vocabulary.size,
                "classic": None if classic is None else classic.key,
                "classic_descriptors": sorted(described),
                "sift": extras.sift.key if sift is not None and extras.sift else None,
            },
        )
    return final


def remove_stale(
    index_dir: Path,
    catalog: Catalog,
    model: Model,
    keep_generation: int,
    extras: Extras = Extras(),
) -> None:
    """Delete shards no image points at, codes of other models, classic descriptors and
    RootSIFT features of other settings, and old generations."""
    in_use = catalog.shards_in_use()
    if extras.classic is not None:
        classic_store.remove_unused(index_dir, extras.classic, set(in_use))
    if extras.sift is not None:
        sift_store.remove_unused(index_dir, extras.sift, set(in_use))
    features_dir = index_dir / FEATURES_DIR
    for shard in existing_shards(features_dir):
        if shard not in in_use:
            shutil.rmtree(features_dir / f"shard-{shard:06d}", ignore_errors=True)
            shutil.rmtree(
                index_dir / CODES_DIR / model.id / f"shard-{shard:06d}", ignore_errors=True
            )
    codes_root = index_dir / CODES_DIR
    if codes_root.is_dir():
        for folder in codes_root.iterdir():
            if folder.name != model.id:
                shutil.rmtree(folder, ignore_errors=True)
    for folder in index_dir.glob(f"{GENERATION_PREFIX}*"):
        number = folder.name[len(GENERATION_PREFIX) :]
        # Keep the previous generation for readers that opened it a moment ago.
        if number.isdigit() and int(number) < keep_generation - 1:
            shutil.rmtree(folder, ignore_errors=True)
    for leftover in index_dir.rglob(".*.tmp-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
