"""Splitting a generation into the parts of a shard set (`lookalike shard`); see
`scale.coordinator` for how the parts are searched.

A part (`shard-000/`, ...) is self-contained, so it can live on the node that serves it: its
rows' ASMK index, their whitened global descriptors (`codes/global.npy`), local features
(`features/shard-000001/`), image ids and longer sides. The ASMK index is of the generation's
kind: the inverted file of the part's rows (`asmk/`, in RAM) with their codes (`codes/`); or,
for a generation of the shortlist kind, the codes alone in that kind's layout (`asmk-codes/`,
the rows `bounds[i]:bounds[i + 1]` of the generation's, copied as they are). The set folder
holds what the coordinator needs: the model, a copy of the generation's global index with its
manifest and classic descriptors (`global/`), and `shards.json`, written last. Sets written by
older versions are written again.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog import Catalog, CatalogError, ImageRecord
from lookalike.features import ImageFeatures
from lookalike.index.asmk_index import INVERTED, AsmkIndex, ImageCode, Vocabulary, packed_width
from lookalike.index.asmk_postings import CELL_OFFSETS, CELL_ROWS
from lookalike.index.asmk_shortlist import (
    OFFSETS,
    SHORTLIST,
    SHORTLIST_DIR,
    CodeBlock,
    block_or_codes,
    load_asmk,
    word_dtype,
    write_blocks,
)
from lookalike.index.atomic import atomic_dir, save_npy, write_json_atomic
from lookalike.index.codes import whitened_globals
from lookalike.index.generation import (
    IMAGES_INT,
    IMAGES_TEXT,
    MANIFEST_FILE,
    Manifest,
    generation_model,
    generation_records,
)
from lookalike.index.layout import IndexLayout
from lookalike.index.store import open_shard, write_shard
from lookalike.learn.model import Model

logger = logging.getLogger("lookalike")

SET_META = "shards.json"
GLOBAL_DIR = "global"
MODEL_DIR = "model"
PART_FEATURES_DIR = "features"
PART_FEATURES_SHARD = 1


def part_name(i: int) -> str:
    """The folder of part `i` in a shard set: `shard-003`."""
    return f"shard-{i:03d}"


def shard_bounds(n_rows: int, n: int) -> tuple[int, ...]:
    """`n + 1` row bounds of `n` contiguous parts of `n_rows` rows, sizes differing by <= 1."""
    if n < 1:
        raise ValueError(f"the number of shards must be at least 1, got {n}")
    if n > max(n_rows, 1):
        raise ValueError(f"{n} shards for {n_rows} images: at most one shard per image")
    return tuple((i * n_rows) // n for i in range(n + 1))


@dataclass(frozen=True)
class ShardSet:
    """A generation split into parts: part i holds rows `bounds[i]:bounds[i + 1]`; `asmk_kind`:
    the generation's ASMK kind (`INVERTED` or `SHORTLIST`), `candidates` the shortlist kind's
    (None for the inverted file)."""

    folder: Path
    generation: int
    model_id: str
    bounds: tuple[int, ...]
    asmk_kind: str = INVERTED
    candidates: int | None = None
    word_candidates: int = 0
    word_bits: int = 0

    @property
    def n(self) -> int:
        return len(self.bounds) - 1

    def part(self, i: int) -> Path:
        return self.folder / part_name(i)

    @classmethod
    def load(cls, folder: Path) -> ShardSet:
        """The set in `folder` (KeyError for a set written by an older version)."""
        meta = json.loads((Path(folder) / SET_META).read_text())
        asmk = meta["asmk_index"]
        shortlist = asmk["kind"] == SHORTLIST
        return cls(
            Path(folder),
            int(meta["generation"]),
            str(meta["model_id"]),
            tuple(meta["bounds"]),
            str(asmk["kind"]),
            int(asmk["candidates"]) if shortlist else None,
            int(asmk.get("word_candidates", 0)),
            int(asmk.get("word_bits", 0)),
        )


def shard_set_dir(base: Path, generation: int, n: int) -> Path:
    """Where the `n` parts of `generation` go under `base`."""
    return base / f"gen-{generation:06d}-n{n}"


def split_generation(index_dir: Path, n: int, out: Path | None = None) -> ShardSet:
    """Split the index's current generation into `n` parts, written under `out` (default
    `index_dir/shards`, which keeps only the current generation's sets); skipped when written
    already. Returns the set."""
    index_dir = Path(index_dir)
    layout = IndexLayout(index_dir)
    with Catalog.open(index_dir, readonly=True) as catalog, catalog.snapshot():
        generation = catalog.generation
        source = layout.generation(generation)
        manifest = Manifest.read(source)
        if generation == 0 or manifest is None:
            raise CatalogError(f"{index_dir} has no index yet: run `lookalike index` first")
        ids = np.load(source / "ids.npy")
        records = generation_records(source, manifest, ids, catalog)
    base = Path(out) if out is not None else layout.shard_sets
    final = shard_set_dir(base, generation, n)
    asmk = manifest.asmk_index
    classic = [f"classic-{name}.npy" for name in manifest.classic_descriptors]
    if (final / SET_META).is_file():
        if _complete(final, manifest):
            return ShardSet.load(final)
        logger.info("rewriting %s, written by an older version", final)
        shutil.rmtree(final)
    model = generation_model(index_dir, manifest.model_id)
    if model is None or manifest.model_id != model.id:
        raise CatalogError(f"{source} was built with another model: run `lookalike index` again")
    if not len(ids):
        raise CatalogError(f"{index_dir} holds no searchable image: there is nothing to shard")
    bounds = shard_bounds(len(ids), n)
    base.mkdir(parents=True, exist_ok=True)
    with atomic_dir(final) as tmp:
        model.save(tmp / MODEL_DIR)
        (tmp / GLOBAL_DIR).mkdir()
        # the index and its refine vectors, the manifest that says how to read them, the
        # generation's list of its images
        for file in [*source.glob("global*"), source / MANIFEST_FILE, *_image_list(manifest)]:
            shutil.copy2(source / file.name, tmp / GLOBAL_DIR / file.name)
        for name in classic:  # colour for blurred queries, and whatever --fuse adds
            shutil.copy2(source / name, tmp / GLOBAL_DIR / name)
        vocabulary = Vocabulary(model.codebook)
        shortlist = asmk["kind"] == SHORTLIST
        # an inverted file's codes by row, for its parts' own inverted files
        block = None if shortlist else block_or_codes(load_asmk(source, asmk, vocabulary))
        for i in range(n):
            part, part_ids = tmp / part_name(i), ids[bounds[i] : bounds[i + 1]]
            codes = None if block is None else [block.code(r) for r in range(*bounds[i : i + 2])]
            _write_part(part, index_dir, model, vocabulary, part_ids, records, codes)
            if shortlist:
                _write_part_block(part, source, vocabulary, bounds[i], bounds[i + 1])
        recorded = _caller_asmk(asmk, source, tmp / GLOBAL_DIR)
        write_json_atomic(
            tmp / SET_META,
            {
                "generation": generation,
                "model_id": model.id,
                "bounds": list(bounds),
                "n": n,
                "asmk_index": recorded,
            },
        )
    if out is None:
        _remove_older_sets(base, generation)
    logger.info("split generation %d into %d shards in %s", generation, n, final)
    return ShardSet.load(final)


def _caller_asmk(asmk: dict[str, Any], generation: Path, caller: Path) -> dict[str, Any]:
    """What a set records of the generation's ASMK index (`asmk`, its manifest's), and what
    the caller keeps of it in `caller`: of a shortlist generation with word candidates, the
    fine-word postings, so that the caller picks them over all rows as the unsharded index
    does (4 bytes a visual word an image, mapped)."""
    if asmk["kind"] != SHORTLIST:
        return {"kind": INVERTED}
    recorded: dict[str, Any] = {"kind": SHORTLIST, "candidates": int(asmk["candidates"])}
    if asmk.get("word_candidates"):
        for name in (CELL_OFFSETS, CELL_ROWS, OFFSETS):
            shutil.copy2(generation / SHORTLIST_DIR / f"{name}.npy", caller)
        recorded.update(
            word_candidates=int(asmk["word_candidates"]), word_bits=int(asmk["word_bits"])
        )
    return recorded


def _complete(folder: Path, manifest: Manifest) -> bool:
    """Whether the set in `folder` was written by this version for a generation of `manifest`:
    its ASMK kind recorded, and the manifest and classic descriptors copied for the
    coordinator."""
    try:
        written = ShardSet.load(folder)
    except (KeyError, ValueError):
        return False
    global_dir = folder / GLOBAL_DIR
    classic = [f"classic-{n}.npy" for n in manifest.classic_descriptors]
    copied = [MANIFEST_FILE, *classic, *(p.name for p in _image_list(manifest))]
    same_kind = written.asmk_kind == manifest.asmk_index.get("kind", INVERTED)
    return same_kind and all((global_dir / name).is_file() for name in copied)


def _image_list(manifest: Manifest) -> list[Path]:
    """The files of a generation's own list of its images (none in a version 2 one)."""
    if manifest.catalog_state is None:
        return []
    return [Path(f"{IMAGES_INT}.npy"), Path(IMAGES_TEXT)]


def _write_part(
    folder: Path,
    index_dir: Path,
    model: Model,
    vocabulary: Vocabulary,
    ids: np.ndarray,
    records: dict[int, ImageRecord],
    codes: list[ImageCode] | None,
) -> None:
    """One part: the local features, sizes, whitened globals (`codes/global.npy`) of the images
    `ids`, and with their `codes` (a part of an inverted file's generation) those (`codes/`)
    and their inverted file (`asmk/`); a part of a shortlist generation holds its codes in
    `asmk-codes/` instead (`_write_part_block`)."""
    rows = [records[int(i)] for i in ids]
    layout = IndexLayout(index_dir)
    globals_: list[np.ndarray] = []
    features: list[ImageFeatures] = []
    for record in rows:
        shard, row = record.shard or 0, record.row or 0
        globals_.append(whitened_globals(model, layout.features, shard, np.array([row]))[0])
        stored = open_shard(layout.features, shard)
        features.append(ImageFeatures(stored.local(row), np.asarray(stored.global_[row])))
    folder.mkdir(parents=True)
    save_npy(folder, "ids", ids.astype(np.int64))
    sides = [float(max(r.width or 0, r.height or 0)) for r in rows]
    save_npy(folder, "sides", np.asarray(sides, np.float32))
    (folder / "codes").mkdir()
    if codes is not None:
        AsmkIndex.build(vocabulary, codes).save(folder / "asmk")
        save_npy(folder / "codes", "word_offsets", np.cumsum([0] + [len(c.words) for c in codes]))
        save_npy(folder / "codes", "words", np.concatenate([c.words for c in codes]))
        save_npy(folder / "codes", "residuals", np.concatenate([c.residuals for c in codes]))
    save_npy(folder / "codes", "global", np.stack(globals_).astype(np.float32))
    write_shard(folder / PART_FEATURES_DIR, PART_FEATURES_SHARD, features, {"part": folder.name})


def _write_part_block(
    folder: Path, generation: Path, vocabulary: Vocabulary, start: int, stop: int
) -> None:
    """A part of a shortlist generation: the codes of its rows `start:stop`, copied from the
    generation's (`asmk-codes/`, streamed) into the part's `asmk-codes/` as they are, so that
    the part scores the very codes the unsharded index scores."""
    rows = np.arange(stop - start, dtype=np.int64)
    width = packed_width(vocabulary.codebook.centroids.shape[1])

    def source() -> CodeBlock:
        return CodeBlock.open(generation / SHORTLIST_DIR)

    parts = [(rows, rows + start, source)]
    write_blocks(folder / SHORTLIST_DIR, len(rows), parts, width, word_dtype(vocabulary.size))


def _remove_older_sets(base: Path, generation: int) -> None:
    """Shard sets of generations before `generation` under `base` (written by default)."""
    for folder in base.glob("gen-*-n*"):
        number = folder.name[len("gen-") :].split("-")[0]
        if number.isdigit() and int(number) < generation:
            shutil.rmtree(folder, ignore_errors=True)
