"""Part 2 of `benchmarks/safety.py`: each kind of damage to an index file, and what the real
commands make of it.

For each kind, a copy of an indexed collection is damaged (a file of the index deleted,
truncated or garbled: the ideas of tests/test_check.py), then observed: whether `lookalike
check` finds it (exit 1, naming the file), what `lookalike search` answers (an `error:` line
or hits, and never a traceback), whether `lookalike index` repairs it (its quick check at
start) or else `lookalike check --repair`, and whether every image then finds itself first.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lookalike.index.asmk_index import Vocabulary
from lookalike.index.codes import encode_shard
from lookalike.index.generation import current_model
from lookalike.index.layout import IndexLayout, shard_numbers
from safety_setup import INDEX, image_files, last_line, lookalike, not_found_first

Damage = Callable[[Path], Path]
"""Damages an index folder; returns the file (or folder) it damaged."""


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _garble(path: Path) -> Path:
    """The same size, other bytes in the middle (what only a checksum tells)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    return path


def _garble_header(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[:16] = b"not an array!!!!"
    path.write_bytes(bytes(data))
    return path


def _delete(path: Path) -> Path:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    return path


def _first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def _largest(folder: Path, pattern: str) -> Path:
    return max((p for p in folder.rglob(pattern) if p.is_file()), key=lambda p: p.stat().st_size)


def _generation(index: Path) -> Path:
    """The newest generation folder (the one searched)."""
    return sorted(index.glob("gen-*"))[-1]


def _unpublished_codes(index: Path) -> Path:
    """A file of the codes a run killed between encoding a shard and publishing leaves in
    `codes/` (once a generation holding them is published, `codes/` keeps none)."""
    model = current_model(index)
    assert model is not None
    features = IndexLayout(index).features
    shard = shard_numbers(features)[0]
    return encode_shard(model, Vocabulary(model.codebook), features, shard) / "words.npy"


def _catalog_page(index: Path) -> Path:
    """Garble the header of the catalog's second b-tree page (SQLite's own check finds it)."""
    catalog = index / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page : page + 12] = b"\xff" * 12
    catalog.write_bytes(bytes(data))
    return catalog


def _catalog_deleted(index: Path) -> Path:
    for path in index.glob("catalog.sqlite*"):
        path.unlink()
    return index / "catalog.sqlite"


KINDS: dict[str, Damage] = {
    "feature shard deleted": lambda i: _delete(_first(i / "features", "shard-*")),
    "feature shard truncated": lambda i: _truncate(_first(i / "features", "shard-*/desc.npy")),
    "feature shard garbled": lambda i: _garble(_first(i / "features", "shard-*/desc.npy")),
    "feature offsets header garbled": lambda i: _garble_header(
        _first(i / "features", "shard-*/offsets.npy")
    ),
    "unpublished codes truncated": lambda i: _truncate(_unpublished_codes(i)),
    "classic descriptors truncated": lambda i: _truncate(_largest(_generation(i), "classic-*.npy")),
    "model truncated": lambda i: _truncate(i / "model" / "codebook.npy"),
    "model garbled": lambda i: _garble(i / "model" / "global_whitening.npz"),
    "model deleted": lambda i: _delete(i / "model"),
    "catalog page garbled": _catalog_page,
    "catalog deleted": _catalog_deleted,
    "global index truncated": lambda i: _truncate(_largest(_generation(i), "global*")),
    "asmk garbled": lambda i: _garble(_largest(_generation(i) / "asmk", "*")),
    "ids garbled": lambda i: _garble_header(_generation(i) / "ids.npy"),
    "image list deleted": lambda i: _delete(_generation(i) / "images-text.json"),
    "image rows truncated": lambda i: _truncate(_generation(i) / "images-int.npy"),
    "manifest deleted": lambda i: _delete(_generation(i) / "manifest.json"),
    "checksums garbled": lambda i: _write(_generation(i) / "checksums.json", "{oops"),
    "generation deleted": lambda i: _delete(_generation(i)),
}
"""Every kind of damage tried, by name."""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def observe(base: Path, work: Path, name: str, damage: Damage) -> dict[str, Any]:
    """Damage a copy of the indexed collection `base` in `work` and observe what the real
    commands make of it (see the module's docstring)."""
    root = work / name.replace(" ", "-")
    shutil.copytree(base, root, symlinks=True)
    damaged = damage(root / INDEX)
    query = sorted(image_files(root))[0]

    checked = lookalike("check", str(root), "--json")
    found = json.loads(checked.stdout)["damaged"] if checked.stdout.strip() else []
    said = " ".join(f"{d['path']} {d['reason']}" for d in found)
    searched = lookalike("search", str(root / query), "--index", str(root), "-k", "3", "--json")
    if searched.returncode == 0:
        hits = json.loads(searched.stdout)["hits"]
        first = "is" if hits and hits[0]["path"] == query else "is not"
        answer = f"ok: {len(hits)} hits, the first {first} the query"
    else:
        errors = [line for line in searched.stderr.splitlines() if line.startswith("error:")]
        answer = (
            errors[0] if errors else f"exit {searched.returncode}: {last_line(searched.stderr)}"
        )

    answer = answer.replace(str(root), "FOLDER")
    repaired_by, tracebacks = "not", []
    indexed = lookalike("index", str(root), "--quiet")
    tracebacks.append("Traceback" in indexed.stderr)
    if indexed.returncode == 0 and _whole(root):
        repaired_by = "index"
    else:
        repaired = lookalike("check", str(root), "--repair", "--quiet")
        tracebacks.append("Traceback" in repaired.stderr)
        if repaired.returncode == 0 and _whole(root):
            repaired_by = "check --repair"
    missed = not_found_first(root, sorted(image_files(root)), verify=0)
    shutil.rmtree(root, ignore_errors=True)
    detected = checked.returncode == 1 and bool(found) and damaged.name in said
    return {
        "damaged": damaged.relative_to(root / INDEX).as_posix(),
        "detected": detected,
        # not found, but nothing is hurt: the search finds the query first (a cache deleted)
        "harmless": not detected and answer.endswith("the first is the query"),
        "check_traceback": "Traceback" in checked.stderr,
        "search": answer,
        "search_error_line": searched.returncode == 0 or answer.startswith("error:"),
        "search_traceback": "Traceback" in searched.stderr,
        "repaired_by": repaired_by,
        "repair_traceback": any(tracebacks),
        "all_found_after": not missed,
        "not_found_after": missed[:5],
    }


def _whole(root: Path) -> bool:
    from lookalike.index.check import check_index

    try:
        return check_index(root / INDEX, full=True) == []
    except Exception:  # a check that cannot run counts as not whole
        return False


def run_damage(base: Path, work: Path) -> dict[str, Any]:
    """Every kind of `KINDS` on copies of the indexed collection `base`."""
    work.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for name, damage in KINDS.items():
        kinds[name] = observe(base, work, name, damage)
        k = kinds[name]
        print(
            f"  {name}: detected {k['detected']}, search {k['search'][:70]!r}, repaired by "
            f"{k['repaired_by']}, all found {k['all_found_after']}",
            flush=True,
        )
    values = list(kinds.values())
    return {
        "kinds": kinds,
        "count": len(kinds),
        "detected": sum(k["detected"] for k in values),
        "undetected_harmless": sum(k["harmless"] for k in values),
        "tracebacks": sum(
            k["check_traceback"] or k["search_traceback"] or k["repair_traceback"] for k in values
        ),
        "search_errors_clean": sum(k["search_error_line"] for k in values),
        "repaired": sum(k["repaired_by"] != "not" for k in values),
        "repaired_by_index": sum(k["repaired_by"] == "index" for k in values),
        "all_found_after": sum(k["all_found_after"] for k in values),
    }
