"""`lookalike dedup` at 100k images: time and peak memory of `Collection.dedup`'s pass
(`verified_pairs`, then the groups) over the planted Corel collection of benchmarks/dedup.py
grown with synthetic distractors. Writes results/dedup_scale.json.

    .venv/bin/python benchmarks/dedup_scale.py [--sizes 100000] [--index PATH]

(A reduced run to check the script works: `--sizes 5000 --no-looks`; its figures are not for
BENCHMARKS.md.)

Why: imagededup scores every pair of images in one dense N x N matrix (float32: 40 GB at 100k
images, 65 GB at 127k, where its users report that it stalls); this machine has 24 GiB.
lookalike's pass holds each image's `DEDUP_NEIGHBOURS` nearest images from the global index
(searched in batches), verifies the pairs at least `DEDUP_GATE` similar, and groups them by
union-find: memory grows with N x k.

The collection. Real: the images of benchmarks/dedup.py's index (`--index`, default the one its
default run builds and caches; run it first), with their stored features. Distractors, up to
each size: global descriptors made as in benchmarks/scale_global.py (`common.distractors`:
normalise(x_i + b x_j + s g / sqrt(d)) of two real descriptors and Gaussian noise), and local
features those of the real image x_i with their positions shuffled among themselves (the
descriptors of a real photograph, laid out as no photograph is: verification against x_i finds
only chance agreements). A distractor has no file, so it is never looked at again; a real one
is, as `lookalike dedup` would. The global index is built for the size as `lookalike index`
would (exact below `IndexSettings.exact_below` images, compressed from there on).

Figures per size: seconds per stage (candidates, verification, second looks, groups), the
number of candidate pairs and of images looked at again, peak resident memory of the process
(`ru_maxrss`, which includes the model and the real index), and the precision and recall of
the planted families' groups (pairs inside groups, as benchmarks/dedup.py defines them) with
the distractors in.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import distractors, machine_while, save_result
from dedup import COPIES, pair, pairs_within, score
from lookalike.collection import Collection
from lookalike.evaluate.cache import cache_root
from lookalike.features import LocalFeatures
from lookalike.index.generation import Generation, Snapshot, StoredImages
from lookalike.index.global_index import build_global
from lookalike.search import pipeline
from lookalike.search.dedup import build_groups
from lookalike.search.pipeline import Searcher
from lookalike.settings import DEDUP_GATE, DEDUP_NEIGHBOURS, DEDUP_SUPPORT, DEDUP_THRESHOLD


@dataclass
class Grown:
    """A generation's real rows followed by distractor rows `0..m-1` (rows `n..n+m-1`)."""

    real: Generation
    global_: Any
    ids: np.ndarray
    first: np.ndarray  # (m,) the real row each distractor borrows local features from

    def __getattr__(self, name: str) -> Any:  # model, generation, asmk, ...: the real ones
        return getattr(self.real, name)

    @property
    def n_images(self) -> int:
        return len(self.ids)


@dataclass
class GrownStored:
    """Stored features of a `Grown` generation's rows (see the module's docstring)."""

    real: StoredImages
    n_real: int
    first: np.ndarray

    def local(self, row: int, limit: int) -> LocalFeatures:
        if row < self.n_real:
            return self.real.local(row, limit)
        borrowed = self.real.local(int(self.first[row - self.n_real]), limit)
        order = np.random.default_rng(row).permutation(len(borrowed))
        return replace(borrowed, xy=np.asarray(borrowed.xy)[order])

    def side(self, row: int) -> float:
        real = row if row < self.n_real else int(self.first[row - self.n_real])
        return self.real.side(real)

    def code(self, row: int) -> Any:
        raise NotImplementedError("dedup reads no ASMK code")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_size(
    base: Collection, size: int, families: dict[str, list[str]], seed: int, looks: bool
) -> dict:
    snapshot = base.snapshot()
    real = snapshot.loaded
    n_real = real.n_images
    if size < n_real:
        raise SystemExit(f"size {size} is below the {n_real} real images")
    vectors = real.global_.vectors(np.arange(n_real))
    pool = distractors(vectors, size - n_real, seed)
    t = time.perf_counter()
    global_ = build_global(np.concatenate([vectors, pool.vectors]), base.settings.index)
    build_s = time.perf_counter() - t
    del vectors
    ids = np.concatenate([real.ids, int(real.ids.max()) + 1 + np.arange(size - n_real)])
    grown = Grown(real, global_, ids.astype(np.int64), pool.first)
    stored = GrownStored(snapshot.stored, n_real, pool.first)
    del pool
    grown_snapshot = Snapshot(grown, snapshot.records, stored)  # type: ignore[arg-type]
    searcher = Searcher(
        lambda: grown_snapshot, base.settings, base.extractor, base.index_dir, base.root
    )
    stages: dict[str, float] = {}
    counts: dict[str, int] = {}
    started = time.perf_counter()
    last = [started]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage not in stages:
            print(f"{size}: {stage} ({total}) from {now - started:.0f} s", flush=True)
        stages[stage] = stages.get(stage, 0.0) + now - last[0]
        last[0] = now
        counts[stage] = total

    near = pipeline.verified_pairs(
        searcher,
        neighbours=DEDUP_NEIGHBOURS,
        gate=DEDUP_GATE,
        min_inliers=DEDUP_THRESHOLD,
        sure=DEDUP_THRESHOLD,
        looks=looks,
        progress=progress,
    )
    t = time.perf_counter()
    paths = {i: r.path for i, r in snapshot.records.items()}
    paths.update({int(i): f"distractor-{int(i)}" for i in ids[n_real:]})
    hashes = {i: r.hash for i, r in snapshot.records.items()}
    groups = build_groups(paths, hashes, near, sure=DEDUP_SUPPORT * DEDUP_THRESHOLD)
    stages["groups"] = time.perf_counter() - t
    total_s = time.perf_counter() - started
    truth = set().union(*(pairs_within(m) for m in families.values()))
    grouped = set().union(*(pairs_within(g.paths) for g in groups)) if groups else set()
    with_distractor = sum(any(p.startswith("distractor-") for p in g.paths) for g in groups)
    return {
        "images": size,
        "real_images": n_real,
        "looks": looks,
        "global_index": global_.kind,
        "global_build_s": round(build_s, 1),
        "seconds": round(total_s, 1),
        "stages_s": {k: round(v, 1) for k, v in stages.items()},
        "images_with_candidates": counts.get("dedup", 0),
        "images_looked_at_again": counts.get("second looks", 0),
        "verified_pairs": len(near),
        "groups": len(groups),
        "groups_with_a_distractor": with_distractor,
        "planted": score({pair(a, b) for a, b in grouped}, truth),
        "peak_rss_bytes": peak_rss_bytes(),
        "dense_matrix_bytes": size * size * 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--index", type=Path, help="benchmarks/dedup.py's cached folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-looks", action="store_true", help="as `dedup --no-looks` (a quick check only)"
    )
    args = parser.parse_args()
    folder = args.index or cache_root() / "bench-dedup" / "corel-250-1750-0"
    families_file = folder / "families.json"
    if not families_file.is_file():
        raise SystemExit(f"no {families_file}: run benchmarks/dedup.py first (it writes both)")
    families = json.loads(families_file.read_text())
    base = Collection.open(folder / "index")
    load_start = os.getloadavg()
    runs = {}
    for size in (int(s) for s in args.sizes.split(",")):
        runs[str(size)] = run_size(base, size, families, args.seed, not args.no_looks)
        print(json.dumps(runs[str(size)], indent=2), flush=True)
    results = {
        "machine": machine_while(load_start),
        "command": f"python benchmarks/dedup_scale.py --sizes {args.sizes}",
        "neighbours": DEDUP_NEIGHBOURS,
        "gate": DEDUP_GATE,
        "threshold": DEDUP_THRESHOLD,
        "copies": list(COPIES),
        "runs": runs,
    }
    print(f"-> {save_result('dedup_scale', results)}")


if __name__ == "__main__":
    main()
