"""Shared helpers for the benchmark scripts: machine description, timing, memory, results; the
Holidays index that leaves its queries out (for latency as users feel it: `speed.py`,
`load.py`, `rerank.py`); and for the scale benchmarks (`scale_global.py`, `scale_asmk.py`),
the real Holidays + Corel index and the distractors made from it."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lookalike.collection import Collection
    from lookalike.evaluate.datasets import RetrievalSet

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
TRAIN_PLOT = "train-curve.png"  # mAP against training minutes, by benchmarks/train.py


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (Linux /proc)."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total


class PeakRss:
    """Samples the resident memory of a process tree in the background while in use:
    `with PeakRss(pid) as peak: ...`, then `peak.bytes`."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every, self.bytes = pid, every, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.bytes = max(self.bytes, tree_rss(self.pid))
            time.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


def machine_while(load_start: Sequence[float]) -> dict[str, Any]:
    """`machine()` with the load average when the run started (`load_start`, as
    `os.getloadavg()` gave it) and now: a shared machine makes latencies upper bounds."""
    return {**machine(), "load_average": {"start": load_start[0], "end": os.getloadavg()[0]}}


@contextmanager
def faiss_one_thread() -> Iterator[None]:
    """FAISS on one thread inside (queries timed one at a time), on every core after."""
    import faiss

    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(os.cpu_count() or 1)


def run_measured(cmd: Sequence[str], env: dict[str, str] | None = None) -> tuple[str, float, int]:
    """Run a command; return (stdout, wall seconds, peak RSS of its process tree in bytes)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    with PeakRss(proc.pid) as peak:
        out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(err)
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return out, seconds, peak.bytes


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    i = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[i]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def provenance() -> dict[str, Any]:
    """The code a result comes from: the git commit (and whether the checkout differed from
    it) and `code_stamp()` (package version, hash of the source of src/lookalike, precision).
    Results with the same stamp come from the same code, whatever their commit."""
    from lookalike.evaluate.cache import code_key, code_stamp

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    return {
        "commit": git("rev-parse", "--short=10", "HEAD"),
        "source_changed_since_commit": bool(git("status", "--porcelain", "--", "src")),
        **code_stamp(),
        "key": code_key(),
    }


def save_result(name: str, data: dict[str, Any], *, partial: bool = False) -> Path:
    """`data` as results/<name>.json, with the code it came from (`provenance`) under
    "code". `partial`: what a script has measured so far, kept in case it fails later; marked
    so (`"partial": true`), and `run_all.py` runs the script again rather than count it done."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    marked = (
        {**data, "partial": True} if partial else {k: v for k, v in data.items() if k != "partial"}
    )
    path.write_text(json.dumps({**marked, "code": provenance()}, indent=2, sort_keys=True))
    return path


def load_result(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def lookalike_cmd() -> list[str]:
    return [sys.executable, "-m", "lookalike.cli"]


# --- latency as users feel it: query photographs that are not in the index --------------


def holidays_outside(
    preset: str = "default", *, sift: bool = False
) -> tuple[RetrievalSet, Collection]:
    """The Holidays set with its 300 queries left out of the index (`datasets.leave_out`), and
    the collection of its 511 other images, indexed (cached; built the first time).

    A query photograph is then searched from its file, `rset.path(q)`, as a user's new
    photograph is: nothing verifies it at once the way its own indexed copy does, so the second
    looks run when nothing is a sure match. The index lives in its own cache folder (the
    leave-out set's, `run.default_index_dir`), never in the full set's. `preset`: the
    settings of an index made with `lookalike index --preset` (its folder takes the name too;
    "default" keeps what the folder stores); `sift`: switch RootSIFT on first, as
    `lookalike index --sift` does. Returns `(rset, collection)`."""
    from lookalike.collection import Collection
    from lookalike.evaluate import holidays
    from lookalike.evaluate.cache import fresh_cache_dir
    from lookalike.evaluate.datasets import leave_out
    from lookalike.evaluate.run import default_index_dir, indexed_root
    from lookalike.settings import PRESETS

    rset = leave_out(holidays())
    index = default_index_dir(rset)  # the leave-out set's own: not the full set's
    if preset != "default":
        index = index.with_name(f"{index.name}-{preset}")
    settings = None if preset == "default" else PRESETS[preset]
    collection = Collection.create(
        indexed_root(rset), index=fresh_cache_dir(index), settings=settings
    )
    stored = collection.settings
    if sift and not stored.sift.enabled:
        collection.configure(replace(stored, sift=replace(stored.sift, enabled=True)))
    collection.index(workers=2)
    return rset, collection


def outside_queries(
    rset: RetrievalSet, indexed: int, n: int | None = None
) -> tuple[list[str], str]:
    """The queries of `rset` (from `holidays_outside`) to search, sorted: all of them, or a
    seeded sample of `n`; and what they are, in words, for the results (`indexed`: the number
    of images in the index)."""
    queries = sorted(rset.queries)
    what = f"{len(queries)} Holidays query photographs"
    if n is not None and n < len(queries):
        queries = sorted(np.random.default_rng(0).choice(queries, n, replace=False).tolist())
        what = f"a seeded sample of {n} of the {what}"
    return queries, f"{what} not in the index of the {indexed} other Holidays images"


# --- the scale benchmarks: real images and distractors -----------------------------------


@dataclass(frozen=True)
class RealSet:
    """The real images of the Holidays + Corel index, in the rows of its current generation:
    their whitened global descriptors `vectors: (n, d)` float32, each row's path, the query rows
    `(q,)` and, per query, its relevant rows; the `collection` and its `loaded` generation."""

    vectors: np.ndarray
    paths: list[str]
    queries: np.ndarray
    relevant: dict[int, list[int]]
    collection: Any
    loaded: Any


def real_set() -> RealSet:
    """The Holidays + Corel index of benchmarks/robustness.py (built first when it is missing
    or stale; an index of the current code is only opened)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from robustness import collection_and_view

    collection, view = collection_and_view()
    collection.index(workers=2)
    loaded = collection.snapshot().loaded
    vectors = np.ascontiguousarray(loaded.global_.vectors(np.arange(loaded.n_images)))
    row_of = {int(image_id): row for row, image_id in enumerate(loaded.ids)}
    paths = [""] * loaded.n_images
    for path in view.images:
        image_id = collection.id_of(path)
        if image_id is not None and int(image_id) in row_of:
            paths[row_of[int(image_id)]] = path
    row_of_path = {p: r for r, p in enumerate(paths)}
    queries = sorted(view.queries)
    return RealSet(
        vectors=vectors,
        paths=paths,
        queries=np.array([row_of_path[q] for q in queries], np.int64),
        relevant={row_of_path[q]: [row_of_path[r] for r in view.queries[q]] for q in queries},
        collection=collection,
        loaded=loaded,
    )


@dataclass(frozen=True)
class Distractors:
    """`vectors: (n, d)` float32 unit global descriptors, each made from the real rows `first`
    and `second` `(n,)` int64 with the weight `weight` (b) and the noise scale `noise` (s),
    `(n,)` float32 (see `distractors`)."""

    vectors: np.ndarray
    first: np.ndarray
    second: np.ndarray
    weight: np.ndarray
    noise: np.ndarray


def distractors(real: np.ndarray, n: int, seed: int) -> Distractors:
    """`n` distractors: normalise(x_i + b x_j + s g / sqrt(d)) of random real rows `x_i, x_j`
    of `real: (m, d)`, b ~ U(0.5, 1), s ~ U(0.8, 1.6), g standard Gaussian."""
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    out = np.empty((n, d), np.float32)
    first, second = np.empty(n, np.int64), np.empty(n, np.int64)
    weight, noise = np.empty(n, np.float32), np.empty(n, np.float32)
    for start in range(0, n, 65536):
        m = min(65536, n - start)
        i, j = rng.integers(0, len(real), m), rng.integers(0, len(real), m)
        b = rng.uniform(0.5, 1.0, (m, 1)).astype(np.float32)
        s = rng.uniform(0.8, 1.6, (m, 1)).astype(np.float32)
        g = rng.standard_normal((m, d), dtype=np.float32) / np.float32(np.sqrt(d))
        v = real[i] + b * real[j] + s * g
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        first[start : start + m], second[start : start + m] = i, j
        weight[start : start + m], noise[start : start + m] = b[:, 0], s[:, 0]
    return Distractors(out, first, second, weight, noise)


def quantiles(values: np.ndarray, digits: int = 3) -> dict[str, float]:
    """The 5th, 25th, 50th, 75th and 95th percentiles of `values`, as `p5`... `p95`."""
    qs = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {f"p{p}": round(float(v), digits) for p, v in zip((5, 25, 50, 75, 95), qs, strict=True)}


@dataclass(frozen=True)
class ScaleSet:
    """One benchmark collection: `vectors: (n, d)`, a label per row (paths, or `d<i>`), the
    query rows and their relevant rows, in this collection's numbering; its first rows are the
    real rows `real_rows: (r,)`, the others distractors 0..n-r-1."""

    vectors: np.ndarray
    labels: list[str]
    queries: np.ndarray
    relevant: dict[int, list[int]]
    real_rows: np.ndarray


def scale_set(real: RealSet, pool: np.ndarray, size: int, seed: int) -> ScaleSet:
    """`size` images: a subset of the real ones (every Holidays image kept) when `size` is
    below their number, else all of them and the first `size - m` rows of `pool: (p, d)`."""
    m = len(real.vectors)
    if size < m:
        holidays = np.array([r for r, p in enumerate(real.paths) if p.startswith("set/")])
        others = np.setdiff1d(np.arange(m), holidays)
        rng = np.random.default_rng(seed)
        take = np.sort(np.concatenate([holidays, rng.choice(others, size - len(holidays), False)]))
        new = {int(r): i for i, r in enumerate(take)}
        return ScaleSet(
            vectors=real.vectors[take],
            labels=[real.paths[r] for r in take],
            queries=np.array([new[int(q)] for q in real.queries]),
            relevant={new[q]: [new[r] for r in rel] for q, rel in real.relevant.items()},
            real_rows=take,
        )
    vectors = np.concatenate([real.vectors, pool[: size - m]])
    labels = real.paths + [f"d{i}" for i in range(size - m)]
    return ScaleSet(vectors, labels, real.queries, real.relevant, np.arange(m))


def mean_ap(col: ScaleSet, rankings: dict[int, list[int]]) -> float:
    """Holidays mAP of `rankings` (query row -> ranked rows), the query itself junk."""
    from lookalike.evaluate.metrics import mean_average_precision

    labels = col.labels
    return mean_average_precision(
        {labels[q]: [labels[r] for r in rows] for q, rows in rankings.items()},
        {labels[q]: [labels[r] for r in rel] for q, rel in col.relevant.items()},
        junk={labels[q]: [labels[q]] for q in col.relevant},
    )
