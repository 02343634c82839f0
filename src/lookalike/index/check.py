"""`lookalike check`: find the damaged files of an index, say what each is and what repairs it,
and repair what can be repaired.

What is checked: the catalog (SQLite's `quick_check`, or `integrity_check` in full), every
feature shard the catalog points at, the codes, classic descriptors, RootSIFT features and
fingerprint minutiae kept per shard, the model, and the generation searches read. A folder
written by `atomic_dir` is held against the sizes (and, in full, the checksums) it recorded
when written; older folders have each array's header and length read. The quick check reads
no file's contents beyond the headers, so `index` runs it at every start.

Repairs: a damaged feature shard is deleted and its images are described again by the next
index run (they keep their ids); damaged codes are deleted and made again from the stored
features, damaged classic descriptors, RootSIFT features or minutiae from the images; a
damaged model is deleted and learned again (a model pinned from a bundle must be given
again); a damaged generation is built again; a damaged catalog is moved aside and the
collection indexed anew.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.catalog import Catalog, CatalogError
from lookalike.index.atomic import CHECKSUMS, file_digest
from lookalike.index.compact import FeatureCodec
from lookalike.index.generation import MODEL_ERRORS, Manifest, load_images
from lookalike.index.layout import CATALOG_FILE, IndexLayout, shard_name, shard_numbers
from lookalike.index.store import CODES
from lookalike.learn.model import Model

PARTS = (
    "catalog", "codec", "features", "codes", "classic", "rootsift", "minutiae", "model",
    "generation",
)  # fmt: skip
"""The kinds of `Damage.part`, in the order they are checked and repaired."""


@dataclass(frozen=True)
class Damage:
    """One damaged part of an index: what it is, where, why it is damaged, and what repairs it."""

    part: str
    path: Path
    reason: str

    @property
    def repair(self) -> str:
        """What `repair` (and so `lookalike check --repair` or `lookalike index`) does."""
        return {
            "catalog": "moved aside; every image is described again",
            "codec": "deleted; learned again (its compact shards are described again)",
            "features": "deleted; its images are described again",
            "codes": "deleted; made again from the stored features",
            "classic": "deleted; made again from the images",
            "rootsift": "deleted; made again from the images",
            "minutiae": "deleted; made again from the images",
            "model": "deleted; learned again from the collection",
            "generation": "deleted; built again from the stored features",
        }[self.part]

    def as_dict(self) -> dict[str, str]:
        return {
            "part": self.part,
            "path": str(self.path),
            "reason": self.reason,
            "repair": self.repair,
        }


def folder_problems(folder: Path, *, full: bool = False) -> list[str]:
    """What is wrong with a folder of arrays: each problem in words (empty: none found).

    With a `CHECKSUMS` record: a listed file missing or of another size, or (`full`) of other
    bytes. Without one (written by an older version): an array whose header cannot be read or
    whose data is shorter than its header says, a JSON file that does not parse."""
    if not folder.is_dir():
        return ["the folder is missing"]
    sums_file = folder / CHECKSUMS
    if sums_file.is_file():
        try:
            sums = json.loads(sums_file.read_text())
            listed = {str(name): (int(size), str(digest)) for name, (size, digest) in sums.items()}
        except (OSError, ValueError, TypeError, AttributeError) as e:
            return [f"{CHECKSUMS} cannot be read ({e})"]
        problems = []
        for name, (size, digest) in sorted(listed.items()):
            path = folder / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif (actual := path.stat().st_size) != size:
                problems.append(f"{name} is {actual} bytes, written as {size}")
            elif full and file_digest(path) != digest:
                problems.append(f"{name} does not hold the bytes written (checksum differs)")
        return problems
    return _headers_problems(folder)


def _headers_problems(folder: Path) -> list[str]:
    problems = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        try:
            if path.suffix == ".npy":
                np.load(path, mmap_mode="r", allow_pickle=False)
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    for key in z.files:
                        z[key]
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except (OSError, ValueError, EOFError) as e:
            problems.append(f"{name} cannot be read ({e})")
    return problems


def check_index(index_dir: Path, *, full: bool = False) -> list[Damage]:
    """Every damaged part of the index in `index_dir` (empty: none found). `full` also reads
    every byte against its checksum and runs SQLite's whole integrity check."""
    layout = IndexLayout(index_dir)
    try:
        with Catalog.open(index_dir, readonly=True) as catalog:
            problems = catalog.integrity(full=full)
            if problems:
                return [Damage("catalog", layout.catalog, f"SQLite finds: {'; '.join(problems)}")]
            in_use = sorted(catalog.shards_in_use())
            generation = catalog.generation
    except CatalogError as e:
        return [Damage("catalog", layout.catalog, str(e))]
    damages = [
        Damage(part, folder, "; ".join(problems))
        for part, folder in _shard_folders(layout, in_use)
        if (problems := folder_problems(folder, full=full))
    ]
    damages.extend(_codec_damage(layout, in_use, damages, full=full))
    damages.extend(_model_damage(layout.model, full=full, published=generation > 0))
    if generation:
        damages.extend(generation_damage(layout.generation(generation), full=full))
    return damages


def _shard_folders(layout: IndexLayout, in_use: list[int]) -> Iterator[tuple[str, Path]]:
    """`(part, folder)` of every per-shard folder to check: the feature shards the catalog
    points at, and every shard of codes, classic descriptors, RootSIFT features and minutiae
    kept."""
    for shard in in_use:
        yield "features", layout.feature_shard(shard)
    for part, root in (
        ("codes", layout.codes_root),
        ("classic", layout.classic_root),
        ("rootsift", layout.sift_root),
        ("minutiae", layout.minutiae_root),
    ):
        kinds = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        for kind in kinds:
            for shard in shard_numbers(kind):
                yield part, kind / shard_name(shard)


def _codec_damage(
    layout: IndexLayout, in_use: list[int], found: list[Damage], *, full: bool
) -> list[Damage]:
    """A damaged (or missing) codec, and every compact shard in use that it leaves unreadable
    (those `found` damaged already aside)."""
    compact = [s for s in in_use if (layout.feature_shard(s) / f"{CODES}.npy").is_file()]
    if not compact:
        return []
    problems = folder_problems(layout.codec, full=full)
    if not problems:
        try:
            FeatureCodec.load(layout.codec)
        except ValueError as e:
            problems.append(str(e))
    if not problems:
        return []
    reason = f"its codec {layout.codec} is damaged ({'; '.join(problems)})"
    known = {d.path for d in found}
    return [Damage("codec", layout.codec, "; ".join(problems))] + [
        Damage("features", layout.feature_shard(s), reason)
        for s in compact
        if layout.feature_shard(s) not in known
    ]


def _model_damage(folder: Path, *, full: bool, published: bool) -> list[Damage]:
    if not folder.exists():
        # none yet; or gone, when a generation was published (one is saved before it)
        return [Damage("model", folder, "the model is missing")] if published else []
    problems = folder_problems(folder, full=full)
    if not problems:
        try:
            Model.load(folder)
        except MODEL_ERRORS as e:
            problems.append(f"cannot be loaded ({e})")
    return [Damage("model", folder, "; ".join(problems))] if problems else []


def generation_damage(folder: Path, *, full: bool = False) -> list[Damage]:
    """The damage of one generation folder: its files, its manifest, its list of images."""
    problems = folder_problems(folder, full=full)
    if not problems:
        if Manifest.read(folder) is None:
            problems.append("its manifest cannot be read")
        else:
            try:
                load_images(folder, np.load(folder / "ids.npy", allow_pickle=False))
            except (CatalogError, OSError, ValueError) as e:
                problems.append(str(e))
    return [Damage("generation", folder, "; ".join(problems))] if problems else []


def repair(index_dir: Path, damages: list[Damage]) -> list[str]:
    """Undo what can be undone before an index run makes the rest again (see the module
    docstring); returns what was done, in words. The caller holds the writer lock and runs
    the index next."""
    done: list[str] = []
    if any(d.part == "catalog" for d in damages):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for path in sorted(index_dir.glob(f"{CATALOG_FILE}*")):
            if ".damaged-" not in path.name:
                path.rename(path.with_name(f"{path.name}.damaged-{stamp}"))
        done.append(f"moved the damaged catalog aside ({CATALOG_FILE}.damaged-{stamp})")
        return done
    shards = [int(d.path.name.split("-")[-1]) for d in damages if d.part == "features"]
    if shards:
        with Catalog.open(index_dir) as catalog:
            count = catalog.redescribe(shards)
        done.append(f"{count} images of {len(shards)} damaged feature shards to describe again")
    for d in damages:
        # a damaged generation goes too: the next run finds none readable and builds one
        if d.part != "catalog":
            shutil.rmtree(d.path, ignore_errors=True)
            done.append(f"deleted {d.path}")
    if any(d.part == "model" for d in damages):
        with Catalog.open(index_dir) as catalog:
            if catalog.get_meta("model_pinned") == "1":
                catalog.set_meta("model_pinned", "0")
                done.append(
                    "the model was pinned from a bundle: it is learned from the collection "
                    "now (index with --model BUNDLE to pin it again)"
                )
    return done
