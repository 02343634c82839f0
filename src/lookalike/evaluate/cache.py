"""The cache folder of evaluations and benchmarks, and the code stamp that keeps it honest.

Indexes, trained models and logs cached under `cache_root()` are only as good as the code
that computed them. A folder made with `fresh_cache_dir` carries a stamp of that code (the
package version, a hash of its sources, the network's arithmetic); a later run with other code
or at another precision removes it and computes it again, so that no figure mixes the results
of two code versions. Two versions of the code (or two precisions) that share a cache folder at
the same time rebuild it in turn: give each its own `$LOOKALIKE_CACHE`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import lookalike
from lookalike.features.extract import use_bfloat16

logger = logging.getLogger("lookalike")

STAMP_FILE = ".lookalike-code.json"
"""The stamp inside a cache folder: the `code_stamp()` of the code that made it."""


def cache_root() -> Path:
    """Where evaluation indexes and views go: `$LOOKALIKE_CACHE` or `~/.cache/lookalike`."""
    return Path(os.environ.get("LOOKALIKE_CACHE") or Path.home() / ".cache" / "lookalike")


def source_hash(folder: Path) -> str:
    """A short hex hash of every `*.py` file under `folder`: their relative paths (sorted) and
    contents. Any edit, addition, removal or renaming of a file changes it."""
    digest = hashlib.blake2b(digest_size=6)
    files = sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*.py"))
    for rel, path in files:
        data = path.read_bytes()
        digest.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


@functools.cache
def _package_source_hash() -> str:
    """`source_hash` of the lookalike package this process runs (computed once)."""
    return source_hash(Path(lookalike.__file__).parent)


def code_stamp() -> dict[str, str]:
    """What cached results depend on: the package `version`, the `source` hash of its Python
    files, and the `precision` ('bfloat16' or 'float32') the network runs in now
    (`$LOOKALIKE_PRECISION` as `use_bfloat16` resolves it)."""
    return {
        "version": lookalike.__version__,
        "source": _package_source_hash(),
        "precision": "bfloat16" if use_bfloat16() else "float32",
    }


def code_key() -> str:
    """A short hex hash of `code_stamp()`: the same for the same code and precision, in any
    process."""
    text = json.dumps(code_stamp(), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def fresh_cache_dir(folder: Path) -> Path:
    """`folder`, made by the current code: kept when its stamp matches `code_stamp()`;
    otherwise (another stamp, or none) removed with a warning saying what differed, then
    created again, empty but for the stamp. Returns `folder`.

    Raises ValueError, and removes nothing, when `folder` is not inside `cache_root()`: a
    folder the user chose (`--index`) is never deleted.
    """
    _check_in_cache(folder)
    stamp = code_stamp()
    if folder.exists():
        found = _read_stamp(folder)
        if found == stamp:
            return folder
        logger.warning(
            "cached %s was built by other code (%s); building it again",
            folder,
            _differences(found, stamp),
        )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_stamp(folder, stamp)
    return folder


def _check_in_cache(folder: Path) -> None:
    root = cache_root().resolve()
    if root not in folder.resolve().parents:
        raise ValueError(
            f"{folder} is not inside the cache folder {root} ($LOOKALIKE_CACHE): "
            "only cache folders are checked and rebuilt"
        )


def _read_stamp(folder: Path) -> dict[str, str] | None:
    """The stamp in `folder`, or None when it is missing or unreadable."""
    try:
        found = json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _write_stamp(folder: Path, stamp: dict[str, str]) -> None:
    """Write `stamp` into `folder` whole (a reader never sees half of it)."""
    tmp = folder / f"{STAMP_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(stamp, sort_keys=True, indent=1))
    os.replace(tmp, folder / STAMP_FILE)


def _differences(found: dict[str, str] | None, stamp: dict[str, str]) -> str:
    """What differs between a folder's stamp and the current one, for a log line."""
    if found is None:
        return "it has no code stamp"
    keys = sorted(set(found) | set(stamp))
    return ", ".join(
        f"{key} {found.get(key, '?')} vs {stamp.get(key, '?')}"
        for key in keys
        if found.get(key) != stamp.get(key)
    )
