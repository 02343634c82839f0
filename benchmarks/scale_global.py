"""The global index at scale: exact (FAISS IndexFlatIP) against the compressed kind (IVF + 4-bit
fast-scan PQ in RAM, re-scored from float16 vectors memory-mapped from disk) at 10k, 100k and
1M images. Writes results/scale_global.json.

    .venv/bin/python benchmarks/scale_global.py [--sizes 10000,100000,1000000]

Vectors. The real ones are the whitened global descriptors of the Holidays + Corel index
(11,611 images, 256-D, unit norm; the cached index of benchmarks/robustness.py, opened, never
rebuilt). 10k is a subset of them: every Holidays image and a seeded sample of Corel. From
100k on, all 11,611 real ones and distractors, each made by recombining and perturbing real
descriptors so that their statistics stay those of real ones:

    distractor = normalise(x_i + b * x_j + s * g / sqrt(d)),

x_i, x_j two real descriptors drawn at random (with replacement), b ~ U(0.5, 1), s ~ U(0.8,
1.6), g a standard Gaussian vector. Each is a plausible image "between" two real ones and
away from both: its cosine to the nearest real image has a median of about 0.58 (0.48 to 0.69,
5th to 95th percentile) where a real image's to its nearest other real image has 0.55 (0.36
to 0.82); the whitened descriptors are near isotropic (every principal direction within a
factor of 2 of the mean), and so are the distractors. The script measures and stores both
distributions (`distractors`). Sizes are nested: 1M holds 100k's distractors.

Queries: the Holidays query images' own descriptors (300 in this copy of Holidays). Each is
in the collection, so its own row is left out of every ranking and of the ground truth.

Figures, per size and kind:
- `ram_bytes_per_image`: what the index holds in RAM (its serialised size, which is what
  reading it allocates: codes, 8-byte row numbers, centroids and padding for the compressed
  kind; the float32 vectors for the exact one), and `rss_load_bytes_per_image`, the growth of
  the process's resident memory when the saved index is read (compressed kind).
- `disk_refine_bytes_per_image`: the float16 vectors the compressed kind re-scores from,
  memory-mapped (read through the page cache, not held by the process).
- `build_s`: training and adding (all cores), and `save_s`.
- `latency_ms`: `search(query, 10)` one query at a time on one thread (FAISS and BLAS),
  median and 95th percentile; `scores_ms`: `scores(query)`, the (n,) array the fused first
  stage takes (median over the first 30 queries).
- `one_recall_at_10`: the fraction of queries whose exact nearest neighbour (other than the
  query itself) is among the 10 returned (FAISS's 1-recall@10); `ten_recall_at_10`: the mean
  overlap of the returned top 10 with the exact top 10.
- `map`: Holidays mAP of the global descriptor alone over the first 1000 hits (relevant
  images below rank 1000 add 0; the compressed kind refines its best 1000), the query itself
  junk. `map_no_distractors` is the same over the 11,611 real images alone.
- `sweep`: recall and latency of the compressed kind at other `nprobe` and `refine`.

The machine may be shared with other work while this runs: `machine.load_average` records
the load at the start and the end; latencies are then upper bounds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from common import (
    ScaleSet,
    distractors,
    faiss_one_thread,
    machine_while,
    mean_ap,
    median,
    percentile,
    quantiles,
    real_set,
    save_result,
    scale_set,
)
from lookalike.index.global_index import (
    CompressedGlobalIndex,
    GlobalIndex,
    GlobalSearch,
    build_global,
    load_global,
    save_global,
)
from lookalike.settings import IndexSettings

SEED = 0
TOP = 1000  # hits scored for mAP
SCORED = 30  # queries whose `scores` are timed (the exact kind sorts every row)
SETTINGS = IndexSettings(kind="compressed")


def nearest_cosines(a: np.ndarray, b: np.ndarray, same: bool) -> np.ndarray:
    """Cosine of each row of `a: (m, d)` to its nearest row of `b: (n, d)` (leaving out the
    diagonal when `a` is `b`'s first m rows)."""
    sims = a @ b.T
    if same:
        np.fill_diagonal(sims, -np.inf)
    return sims.max(axis=1)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """`(q, k)` rows of the exact top k of each of `queries: (q, d)` (all cores)."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return flat.search(queries, k)[1]


def without(rows: np.ndarray, row: int, k: int) -> list[int]:
    return [int(r) for r in rows if r != row and r >= 0][:k]


RSS_OF_LOADING = """
import json, os, sys
from pathlib import Path
import faiss
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
from lookalike.index.global_index import load_global
before = rss()
index = load_global(Path(sys.argv[1]), json.loads(sys.argv[2]))
print(rss() - before)
"""


def rss_of_loading(folder: Path, recorded: dict[str, Any]) -> int:
    """Growth of a fresh process's resident memory when it reads the index saved in `folder`
    (the refine vectors memory-mapped, not read)."""
    args = [sys.executable, "-c", RSS_OF_LOADING, str(folder), json.dumps(recorded)]
    return int(subprocess.run(args, check=True, capture_output=True, text=True).stdout)


def timed_queries(index: GlobalSearch, col: ScaleSet, truth: np.ndarray) -> dict[str, Any]:
    """Latency (one thread) and recall of `index.search(query, 10)` over the queries, and the
    time of `scores(query)`; `truth: (q, 11)` the exact top 11 of each query."""
    with faiss_one_thread():
        times, score_times, one, ten = [], [], 0, 0.0
        for qi, q in enumerate(col.queries):
            query = col.vectors[q]
            t = time.perf_counter()
            rows, _ = index.search(query, 11)
            times.append(time.perf_counter() - t)
            if qi < SCORED:
                t = time.perf_counter()
                index.scores(query)
                score_times.append(time.perf_counter() - t)
            got, exact = without(rows, q, 10), without(truth[qi], q, 10)
            one += int(exact[0] in got)
            ten += len(set(got) & set(exact)) / 10
    n = len(col.queries)
    return {
        "latency_ms": {
            "median": round(median(times) * 1e3, 3),
            "p95": round(percentile(times, 95) * 1e3, 3),
        },
        "scores_ms": {"median": round(median(score_times) * 1e3, 3)},
        "one_recall_at_10": round(one / n, 4),
        "ten_recall_at_10": round(ten / n, 4),
    }


def ranked(index: GlobalSearch, col: ScaleSet) -> dict[int, list[int]]:
    """The first TOP + 1 rows of each query by `index.search`."""
    return {int(q): index.search(col.vectors[q], TOP + 1)[0].tolist() for q in col.queries}


def run_size(col: ScaleSet, with_map: bool) -> dict[str, Any]:
    n = len(col.vectors)
    queries = np.ascontiguousarray(col.vectors[col.queries])
    truth = exact_top(col.vectors, queries, max(11, TOP + 1) if with_map else 11)
    out: dict[str, Any] = {"images": n}

    print(f"[{n}] exact", flush=True)
    t = time.perf_counter()
    exact = GlobalIndex.build(col.vectors)
    exact_s = time.perf_counter() - t
    out["exact"] = {
        "build_s": round(exact_s, 2),
        "ram_bytes_per_image": exact.ram_bytes() / n,
        "disk_refine_bytes_per_image": 0.0,
        **timed_queries(exact, col, truth[:, :11]),
    }
    if with_map:
        rankings = {int(q): truth[i].tolist() for i, q in enumerate(col.queries)}
        out["exact"]["map"] = round(mean_ap(col, rankings), 4)
    del exact
    gc.collect()

    print(f"[{n}] compressed: training and adding", flush=True)
    with tempfile.TemporaryDirectory(prefix="scale-global-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        built = build_global(col.vectors, SETTINGS)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        recorded = save_global(built, folder)
        save_s = time.perf_counter() - t
        del built
        gc.collect()
        rss_load = rss_of_loading(folder, recorded["global_index"])
        index = load_global(folder, recorded["global_index"])
        assert isinstance(index, CompressedGlobalIndex)
        params = index.params()
        print(f"[{n}] compressed {params['faiss']}: queries", flush=True)
        result: dict[str, Any] = {
            "params": params,
            "build_s": round(build_s, 2),
            "save_s": round(save_s, 2),
            "ram_bytes_per_image": index.ram_bytes() / n,
            "rss_load_bytes_per_image": rss_load / n,
            "disk_refine_bytes_per_image": (folder / "global-refine.npy").stat().st_size / n,
            **timed_queries(index, col, truth[:, :11]),
        }
        if with_map:
            result["map"] = round(mean_ap(col, ranked(index, col)), 4)
        sweep = []
        nlist = params["nlist"]
        for nprobe in sorted({max(1, nlist // 16), max(1, nlist // 8), max(1, nlist // 4)}):
            for refine in (100, 1000):
                variant = CompressedGlobalIndex(
                    index.index, index.refine, {**params, "nprobe": nprobe, "refine": refine}
                )
                sweep.append(
                    {"nprobe": nprobe, "refine": refine, **timed_queries(variant, col, truth)}
                )
        faiss.extract_index_ivf(index.index).nprobe = params["nprobe"]
        result["sweep"] = sweep
        out["compressed"] = result
        del index
    gc.collect()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    load_start = os.getloadavg()

    print("real descriptors", flush=True)
    real = real_set()
    m = len(real.vectors)
    n_pool = max(0, max(sizes) - m)
    print(f"{n_pool} distractors", flush=True)
    pool = distractors(real.vectors, n_pool, SEED).vectors
    rng = np.random.default_rng(SEED)
    sample_real = real.vectors[rng.choice(m, 2000, replace=False)]
    stats: dict[str, Any] = {
        "recipe": "normalise(x_i + b x_j + s g / sqrt(d)), b ~ U(0.5, 1), s ~ U(0.8, 1.6)",
        "real_to_nearest_other_real": quantiles(np.sort(real.vectors @ sample_real.T, axis=0)[-2]),
    }
    if n_pool:
        sample = pool[rng.choice(n_pool, 2000, replace=False)]
        stats["distractor_to_nearest_real"] = quantiles(
            nearest_cosines(sample, real.vectors, False)
        )

    results: dict[str, Any] = {"distractors": stats, "sizes": {}}
    base = scale_set(real, pool, m, SEED)
    print(f"[{m}] no distractors: mAP", flush=True)
    truth = exact_top(base.vectors, base.vectors[base.queries], TOP + 1)
    compressed = build_global(base.vectors, SETTINGS)
    results["map_no_distractors"] = {
        "exact": round(
            mean_ap(base, {int(q): list(t) for q, t in zip(base.queries, truth, strict=True)}), 4
        ),
        "compressed": round(mean_ap(base, ranked(compressed, base)), 4),
    }
    del compressed
    for size in sizes:
        col = scale_set(real, pool, size, SEED)
        results["sizes"][str(size)] = run_size(col, with_map=size >= m)
        print(results["sizes"][str(size)]["compressed"]["latency_ms"], flush=True)
        del col
        gc.collect()
    results["queries"] = len(real.queries)
    results["settings"] = SETTINGS.__dict__
    results["machine"] = machine_while(load_start)
    path = save_result("scale_global", results)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
