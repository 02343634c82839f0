"""Index-building stages: extract features into shards, fit the model, encode, build indexes.

Each stage is a function that skips what is already stored. `Collection.index` runs them in
order; each can be called alone.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lookalike.catalog import Catalog, ImageRecord
from lookalike.features.batch import Extracted, Extras
from lookalike.index import classic_store, minutiae_store, sift_store
from lookalike.index.asmk_index import AsmkIndex, ImageCode, Vocabulary
from lookalike.index.asmk_shortlist import CodeBlock, Part, save_asmk, write_shortlist
from lookalike.index.atomic import atomic_dir, save_npy
from lookalike.index.codes import encode_shard, whitened_globals
from lookalike.index.generation import (
    Manifest,
    generation_shards,
    remove_kept_models,
    save_images,
    state_of,
)
from lookalike.index.global_index import build_global, save_global
from lookalike.index.layout import IndexLayout, shard_name
from lookalike.index.published import Published, classic_held, codes_held, latest
from lookalike.index.similar_index import build_similar, save_similar
from lookalike.index.store import existing_shards, new_uid, open_shard, shard_uid, write_shard
from lookalike.learn.fit import fit_model_on
from lookalike.learn.model import Model
from lookalike.settings import (
    FeatureSettings,
    IndexSettings,
    LearnSettings,
    SimilarSettings,
)

logger = logging.getLogger("lookalike")


def extract_into_shards(
    catalog: Catalog,
    index_dir: Path,
    results: Iterable[Extracted],
    files: dict[str, tuple[int, int]],
    settings: FeatureSettings,
    *,
    shard_size: int = 64,
    on_result: Callable[[Extracted], None] | None = None,
    extras: Extras = Extras(),
) -> list[Extracted]:
    """Record extracted images as they come (`results`, from `features.batch.iter_extract` or
    its Ray twin): features (and the `extras`) go to new shards, failures to the catalog.
    `files`: path -> (size, mtime_ns) as scanned.

    The catalog points at a shard only after the shard is durable. Returns the failures.
    """
    features_dir = IndexLayout(index_dir).features
    next_shard = max(existing_shards(features_dir), default=0) + 1
    failures: list[Extracted] = []
    buffer: list[Extracted] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal next_shard, last_flush
        if not buffer:
            return
        _write_buffer(catalog, index_dir, next_shard, buffer, files, settings, extras)
        next_shard += 1
        buffer.clear()
        last_flush = time.monotonic()

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


def _write_buffer(
    catalog: Catalog,
    index_dir: Path,
    shard: int,
    buffer: Sequence[Extracted],
    files: dict[str, tuple[int, int]],
    settings: FeatureSettings,
    extras: Extras,
) -> None:
    """Write `buffer` as shard number `shard`, then name it in the catalog (durably)."""
    layout = IndexLayout(index_dir)
    write_shard(
        layout.features,
        shard,
        [b.features for b in buffer if b.features is not None],
        {"features": settings.key, "uid": new_uid()},
    )
    # A number is reused when the shards above it were deleted (a repair describes their
    # images again): codes made for what it held before would be taken for this shard's.
    if layout.codes_root.is_dir():
        for model_codes in layout.codes_root.iterdir():
            shutil.rmtree(model_codes / shard_name(shard), ignore_errors=True)
    # after the features shard (whose folder claims the number, even if we are killed now)
    # and before the catalog names it
    if extras.classic is not None and extras.has_classic:
        classic_store.write_classic(index_dir, extras.classic, shard, [b.classic for b in buffer])
    if extras.sift is not None and extras.has_sift:
        sift_store.write_sift(index_dir, extras.sift, shard, [b.sift for b in buffer])
    if extras.minutiae is not None and extras.has_minutiae:
        rows = [b.minutiae for b in buffer]
        minutiae_store.write_minutiae(index_dir, extras.minutiae, shard, rows)
    with catalog.transaction(durable=True):
        for row, item in enumerate(buffer):
            size, mtime_ns = files[item.path]
            catalog.put_ok(
                item.path,
                size=size,
                mtime_ns=mtime_ns,
                hash=item.hash,
                shard=shard,
                row=row,
                width=item.width,
                height=item.height,
            )


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


# --- generations -------------------------------------------------------------------------


def build_generation(
    index_dir: Path,
    model: Model,
    records: Sequence[ImageRecord],
    generation: int,
    extras: Extras = Extras(),
    sift_codebook: np.ndarray | None = None,
    global_settings: IndexSettings = IndexSettings(),
    similar: SimilarSettings = SimilarSettings(),
) -> Path:
    """Write the global index and the ASMK index (of the kinds `global_settings` choose for
    this many images) over `records` (row i = records[i]); the matrices of their classic
    descriptors (see `classic_store.backfill`); the 'similar' mode's vectors (`similar`); and
    with RootSIFT enabled, its inverted file under `sift_codebook` (see
    `sift_store.codebook`).

    The ASMK inverted file is built in memory; the shortlist kind's codes are copied from their
    sources straight into the generation folder (memory stays that of one shard). A shard's
    codes come from `codes/` when encoded and not yet published, else from the generation
    published before when it holds them (`published`), else they are encoded now."""
    layout = IndexLayout(index_dir)
    features_dir = layout.features
    vocabulary = Vocabulary(model.codebook)
    by_shard: dict[int, list[tuple[int, int]]] = {}
    for i, rec in enumerate(records):
        by_shard.setdefault(rec.shard or 0, []).append((i, rec.row or 0))
    shortlist = global_settings.asmk_shortlist(len(records))
    codes: list[ImageCode | None] = [None] * len(records)
    parts: list[Part] = []
    globals_ = np.zeros((len(records), model.global_whitening.output_dim), np.float32)
    before = latest(index_dir, generation)
    uids: dict[str, str] = {}
    for shard, items in sorted(by_shard.items()):
        rows = np.array([i for i, _ in items], np.int64)
        theirs = np.array([row for _, row in items], np.int64)
        uid = shard_uid(features_dir, shard)
        if uid is not None:
            uids[str(shard)] = uid
        globals_[rows] = whitened_globals(model, features_dir, shard, theirs)
        open_block, source_rows = _shard_codes(
            model, vocabulary, features_dir, shard, uid, theirs, before
        )
        if shortlist:
            parts.append((rows, source_rows, open_block))
            continue
        block = open_block()
        for i, r in zip(rows, source_rows, strict=True):
            codes[i] = block.code(int(r))
    asmk = None if shortlist else AsmkIndex.build(vocabulary, [c for c in codes if c is not None])
    del codes
    global_index = build_global(globals_, global_settings)
    del globals_  # the index holds what it needs (a float16 copy, for the compressed kind)
    classic = extras.classic
    described = {} if classic is None else classic_store.gather(index_dir, classic, records, before)
    kinds = build_similar(
        functools.partial(_raw_globals, features_dir, by_shard),
        len(records),
        model.global_whitening.input_dim,
        similar,
    )
    sift = None
    if extras.sift is not None and extras.has_sift:
        assert sift_codebook is not None, "RootSIFT is enabled: its codebook is needed"
        sift = sift_store.build_index(index_dir, extras.sift, records, sift_codebook)
    final = IndexLayout(index_dir).generation(generation)
    if final.exists():
        shutil.rmtree(final)
    with atomic_dir(final) as tmp:
        recorded = save_global(global_index, tmp)
        if asmk is None:
            g = global_settings
            written = write_shortlist(
                tmp, vocabulary, len(records), parts, g.candidates, g.word_candidates, g.word_bits
            )
            recorded["asmk_index"] = written.params()
        else:
            recorded.update(save_asmk(asmk, tmp))
        save_npy(tmp, "ids", np.asarray([r.id for r in records], dtype=np.int64))
        save_images(tmp, records)
        save_similar(tmp, *kinds)
        for name, matrix in described.items():
            save_npy(tmp, f"classic-{name}", matrix)
        if sift is not None and sift_codebook is not None:
            sift.save(tmp / "sift-asmk")
            save_npy(tmp, "sift-codebook", sift_codebook)
        Manifest(
            generation=generation,
            images=len(records),
            model_id=model.id,
            dim=global_index.dim,
            codebook_size=vocabulary.size,
            global_settings=global_settings.key,
            global_index=recorded["global_index"],
            asmk_index=recorded["asmk_index"],
            classic=None if classic is None else classic.key,
            classic_descriptors=tuple(sorted(described)),
            sift=extras.sift.key if sift is not None and extras.sift else None,
            catalog_state=state_of(records),
            similar=dataclasses.asdict(similar),
            shard_uids=uids or None,
        ).save(tmp)
    return final


def _shard_codes(
    model: Model,
    vocabulary: Vocabulary,
    features_dir: Path,
    shard: int,
    uid: str | None,
    rows: np.ndarray,
    before: Published | None,
) -> tuple[Callable[[], CodeBlock], np.ndarray]:
    """Where the codes of `rows: (k,)` of a feature shard are: (opens their block, their rows
    in it). Encoded codes not yet published first, then the generation published `before`,
    else the shard encoded now."""
    encoded = IndexLayout(features_dir.parent).code_shard(model.id, shard)
    published = None if before is None else before.codes(model.id, vocabulary)
    if published is not None and before is not None and not encoded.is_dir():
        held = before.rows(uid, rows)
        if held is not None:
            return published, held
    folder = encode_shard(model, vocabulary, features_dir, shard)
    return functools.partial(CodeBlock.open, folder), rows


def _raw_globals(
    features_dir: Path, by_shard: dict[int, list[tuple[int, int]]]
) -> Iterator[np.ndarray]:
    """The raw global descriptors of a generation's images in row order, a shard at a time
    (`by_shard`: shard -> [(generation row, shard row)] as `build_generation` groups them)."""
    rows = sorted((i, shard, row) for shard, items in by_shard.items() for i, row in items)
    start = 0
    while start < len(rows):
        shard = rows[start][1]
        end = start
        while end < len(rows) and rows[end][1] == shard:
            end += 1
        theirs = np.array([row for _, _, row in rows[start:end]], np.int64)
        yield np.asarray(open_shard(features_dir, shard).global_[theirs], np.float32)
        start = end


def remove_stale(
    index_dir: Path,
    catalog: Catalog,
    model: Model,
    keep_generation: int,
    extras: Extras = Extras(),
) -> None:
    """Delete shards no image points at (neither in the catalog nor in the previous
    generation, which readers that opened it a moment ago still read), codes of other models
    and those the generation `keep_generation` holds (`published`), classic descriptors,
    RootSIFT features and minutiae of other settings, and old generations."""
    layout = IndexLayout(index_dir)
    previous = layout.generation(keep_generation - 1)
    in_use = catalog.shards_in_use() | generation_shards(previous)
    _remove_unused_extras(index_dir, extras, set(in_use))
    _remove_published(index_dir, keep_generation, model, extras)
    for shard in existing_shards(layout.features):
        if shard not in in_use:
            shutil.rmtree(layout.feature_shard(shard), ignore_errors=True)
            shutil.rmtree(layout.code_shard(model.id, shard), ignore_errors=True)
    if layout.codes_root.is_dir():
        for folder in layout.codes_root.iterdir():
            if folder.name != model.id:
                shutil.rmtree(folder, ignore_errors=True)
    for number, folder in layout.generations():
        # Keep the previous generation for readers that opened it a moment ago.
        if number < keep_generation - 1:
            shutil.rmtree(folder, ignore_errors=True)
    remove_kept_models(index_dir, [layout.generation(keep_generation), previous])
    for leftover in index_dir.rglob(".*.tmp-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def _remove_published(index_dir: Path, generation: int, model: Model, extras: Extras) -> None:
    """Delete the codes and classic descriptors the published `generation` holds
    (`published`)."""
    layout = IndexLayout(index_dir)
    published = latest(index_dir, generation + 1)
    for shard in codes_held(published, model.id):
        _delete(layout.code_shard(model.id, shard))
    if extras.classic is not None:
        key, names = extras.classic.key, extras.classic.descriptors
        for shard in classic_held(published, key, names):
            _delete(layout.classic(key) / shard_name(shard))


def _delete(folder: Path) -> None:
    """Delete `folder` (a per-shard folder), renamed first, so that a run killed meanwhile
    leaves no half folder behind that a build would read (`remove_stale` sweeps the renamed
    one)."""
    if folder.is_dir():
        aside = folder.with_name(f".{folder.name}.tmp-published")
        shutil.rmtree(aside, ignore_errors=True)
        folder.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)


def _remove_unused_extras(index_dir: Path, extras: Extras, in_use: set[int]) -> None:
    """Delete the extras (classic descriptors, RootSIFT, minutiae) of other settings, and
    those of shards not `in_use`."""
    if extras.classic is not None:
        classic_store.remove_unused(index_dir, extras.classic, in_use)
    if extras.sift is not None:
        sift_store.remove_unused(index_dir, extras.sift, in_use)
    if extras.minutiae is not None:
        minutiae_store.remove_unused(index_dir, extras.minutiae, in_use)
