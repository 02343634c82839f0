"""Part 4 of `benchmarks/safety.py`: the hostile-input corpus of tests/test_hostile.py indexed
in this process, and what became of each kind of file (indexed and found first by a search
with itself, failed with its reason, or ignored), next to what the test expects.

The file that vanishes is removed right before it is decoded, as the test's fixture does."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from common import REPO


def observe_hostile(work: Path) -> dict[str, Any]:
    """Index the hostile corpus made in `work`; the observed outcome of every kind."""
    sys.path.insert(0, str(REPO / "tests"))
    import test_hostile
    from lookalike.collection import Collection
    from lookalike.features import batch
    from test_hostile import GOOD, KINDS, _make_corpus

    root = work / "corpus"
    root.mkdir(parents=True)
    _make_corpus(root)
    locked = root / "odd" / "locked.png"
    reads_everything = os.access(locked, os.R_OK)  # root: mode 000 does not stop it
    real_load_image = batch.load_image

    def load_after_removing_vanishing(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path).name == "vanishing.jpg":
            Path(path).unlink()
        return real_load_image(path, *args, **kwargs)

    collection = Collection.create(root)
    batch.load_image = load_after_removing_vanishing
    try:
        report = collection.index(workers=1)
    finally:
        batch.load_image = real_load_image
    failed = dict(report.failed)
    indexed = {path for _, path in collection.images()}

    def outcome(path: str, twin: str | None) -> str:
        if path in failed:
            return f"failed: {failed[path]}"
        if path not in indexed:
            return "ignored"
        hits = collection.search(root / path, k=3, verify=0)
        first = hits[0].path if hits else None
        return "indexed" if first in (path, twin) else f"indexed, not found first ({first})"

    kinds = []
    for kind in (*GOOD, *KINDS):
        seen = sorted({outcome(p, kind.twin) for p in kind.paths})
        inside = [outcome(p, None) for p in kind.inside]
        observed = seen[0] if len(seen) == 1 else "; ".join(seen)
        category = observed.split(":")[0].split(",")[0]
        expected, note = kind.expect, ""
        if kind.name.startswith("unreadable") and reads_everything:
            expected = test_hostile.INDEXED  # as the test expects of root
            note = "root reads it; another user's run reports it failed"
        kinds.append(
            {
                "name": kind.name,
                "files": len(kind.paths),
                "expected": expected,
                "observed": observed,
                "inside": inside,
                "note": note,
                "as_expected": category == expected
                and all(o == test_hostile.INDEXED for o in inside),
                "good": kind in GOOD,
            }
        )
    locked.chmod(0o644)
    shutil.rmtree(root, ignore_errors=True)
    hostile = [k for k in kinds if not k["good"]]
    return {
        "kinds": kinds,
        "count": len(hostile),
        "as_expected": sum(k["as_expected"] for k in hostile),
        "running_as_root": reads_everything,
        "index_seconds": round(report.seconds, 1),
    }
