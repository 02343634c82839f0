"""Robustness side by side: transformed copies of Holidays photographs (8 families x 5
strengths) search Holidays plus the 10,800 Corel photographs for their untouched original,
with every lookalike mode and the peers (PHash, off-the-shelf GeM) in the same loop.
Writes results/robustness.json and results/robustness-<family>.png.

    .venv/bin/python benchmarks/robustness.py [--queries 300] [--split test] [--parts 2]
                                              [--methods a,b] [--compact]

The originals are a seeded sample of every image of one half of Holidays (`--split`: test,
the odd groups, for the reported figures; the parameters of second looks and of blurred
queries were chosen on copies of validation images, `benchmarks/tune.py`).

The queries are split into `--parts` slices, each searched by its own process (one core
each) a few queries at a time, appended to a log in the cache. Every run's logs are kept and
read back: a query a method has already searched (in any earlier run, of any sample size) is
not searched again, so a killed run carries on, and `--queries 300` only adds the queries a
smaller sample left out. `--methods` runs only those (e.g. `rootsift`, once the index has
RootSIFT); the results hold every method logged for all the chosen queries. Query times are
medians within each chunk, averaged. Ranks of the methods that verify are kept only while the
second stage's settings are those they were logged with (a change re-runs those methods); no
rank is kept that other code, or another precision, logged (`code_key`: a change re-runs all),
and the index is rebuilt then too.

`--compact` runs the default search (`lookalike`) over an index of the same images that keeps
compact features for verification (`lookalike index --compact`), in its own cache folder, and
writes results/robustness-compact.json: the figures to set beside the full index's.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, machine, save_result
from lookalike.collection import Collection
from lookalike.evaluate import RetrievalSet, data_root, holidays
from lookalike.evaluate.cache import cache_root, code_key
from lookalike.evaluate.methods import METHODS
from lookalike.evaluate.peers import phash_collection
from lookalike.evaluate.robustness import suite
from lookalike.evaluate.robustness_run import (
    RobustnessResult,
    combine,
    default_methods,
    plot_families,
    run_robustness,
    sample_queries,
)
from lookalike.evaluate.run import cached_index_dir, merged_view
from lookalike.features.detail import POLICY as BLURRED_POLICY
from lookalike.search.retry import POLICY
from lookalike.settings import CNN_MODES, Settings


def collection_and_view(compact: bool = False) -> tuple[Collection, RetrievalSet]:
    """The Holidays + Corel collection (with `compact` features: its own index folder)."""
    view = merged_view(
        holidays(), [data_root() / "corel"], cache_root() / "views" / "holidays+corel"
    )
    settings = Settings()
    if compact:
        settings = dataclasses.replace(
            settings, store=dataclasses.replace(settings.store, compact=True)
        )
    index = cached_index_dir(view, settings)
    return Collection.create(view.root, index=index, settings=settings), view


CHUNK = 5
"""Queries a part runs between two appends to its log: a killed run loses at most these."""


def done_chunks(log: Path) -> list[dict]:
    """The chunks a part has finished (one JSON object a line; a torn last line is ignored)."""
    if not log.is_file():
        return []
    chunks = []
    for line in log.read_text().splitlines():
        try:
            chunks.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return chunks


LOGS = cache_root() / "bench-robustness"


def second_stage_key(collection: Collection) -> str:
    """A short fingerprint of the second stage's settings (verification, retries), of the
    second looks' policy and of the rule for blurred queries: ranks logged under another one
    are stale for the methods that verify (all in 'fused' mode)."""
    settings = dataclasses.asdict(collection.settings.rerank)
    search = collection.settings.search
    blurred = {"policy": BLURRED_POLICY, "fuse": search.blurred_fuse, "w": search.blurred_weight}
    # compact features verify differently: their ranks are logged apart
    store = {"store": dataclasses.asdict(collection.settings.store)}
    text = json.dumps(
        {**settings, "retry_policy": POLICY, "blurred": blurred, **store}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def verifies(method: str) -> bool:
    """Whether `method` runs the second stage (so its ranks depend on `second_stage_key`)."""
    options = METHODS.get(method)
    if not isinstance(options, dict) or options.get("verify") == 0:
        return False
    return options.get("mode", "fused") in CNN_MODES


def logged(dataset: str, second_stage: str) -> list[RobustnessResult]:
    """Every chunk of every run in the cache that this code logged (its `code_key`), oldest run
    first, less the ranks of methods that verify when they were logged with another
    `second_stage` key."""
    transforms = tuple(suite())
    code = code_key()
    if not LOGS.is_dir():
        return []
    runs = sorted((p for p in LOGS.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    chunks = []
    for run in runs:
        for log in sorted(run.glob("part-*.jsonl")):
            for data in done_chunks(log):
                if data.get("code") != code:
                    continue
                current = data.get("second_stage") == second_stage
                ranks = {m: r for m, r in data["ranks"].items() if current or not verifies(m)}
                if ranks:
                    chunks.append(
                        RobustnessResult(
                            dataset=dataset,
                            images=data["images"],
                            queries=tuple(data["queries"]),
                            transforms=transforms,
                            ranks=ranks,
                            seconds={
                                m: v
                                for m, v in data["seconds"].items()
                                if m in ranks or m == "describe"
                            },
                        )
                    )
    return chunks


def run_part(
    queries: list[str], log: Path, methods: list[str] | None, split: str, compact: bool
) -> None:
    """Run `queries` (images of the `split` half) a chunk at a time, appending each chunk's
    ranks to `log`; queries that every method has searched already (in any run's log) are
    skipped."""
    collection, view = collection_and_view(compact)
    wanted = methods or default_methods(collection)
    images = len(collection.images())
    key = second_stage_key(collection)
    have = {
        (m, q)
        for chunk in logged(view.name, key)
        if chunk.images == images
        for m in chunk.methods
        for q in chunk.queries
    }
    todo = [q for q in queries if any((m, q) not in have for m in wanted)]
    print(f"part {log.stem}: {len(queries) - len(todo)}/{len(queries)} logged before")
    for start in range(0, len(todo), CHUNK):
        result = run_robustness(
            view, collection, queries=todo[start : start + CHUNK], methods=wanted, split=split
        )
        line = {
            "code": code_key(),
            "second_stage": key,
            "images": result.images,
            "queries": list(result.queries),
            "ranks": result.ranks,
            "seconds": result.seconds,
        }
        with log.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(
            f"part {log.stem}: {len(queries) - len(todo) + start + len(result.queries)}/"
            f"{len(queries)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300, help="a seeded sample of originals")
    parser.add_argument(
        "--split",
        default="test",
        choices=("test", "validation"),
        help="the half of Holidays the originals come from (every image of its groups)",
    )
    parser.add_argument("--parts", type=int, default=2, help="processes, one slice each")
    parser.add_argument("--methods", help="only these (comma-separated), added to a full run")
    parser.add_argument(
        "--compact",
        action="store_true",
        help="the default search over an index with compact features (robustness-compact.json)",
    )
    parser.add_argument("--part-queries", help=argparse.SUPPRESS)  # a worker's slice (JSON)
    parser.add_argument("--part-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compact and not args.methods:
        args.methods = "lookalike"
    methods = args.methods.split(",") if args.methods else None
    if args.part_queries:
        run_part(
            json.loads(args.part_queries), Path(args.part_out), methods, args.split, args.compact
        )
        return

    collection, view = collection_and_view(args.compact)
    t = time.perf_counter()
    report = collection.index(workers=2)
    index_seconds = time.perf_counter() - t
    queries = sample_queries(view, args.queries, split=args.split)
    # the peers' hashes once, before the parts read them from the cache
    phash_collection(
        collection.root,
        [path for _, path in collection.images()],
        collection.index_dir / "peers" / "phash.npz",
    )
    slices = [queries[i :: args.parts] for i in range(args.parts)]
    name = f"{args.split}-q{args.queries}-p{args.parts}" + ("-compact" if args.compact else "")
    work = LOGS / (name + (f"-{'+'.join(methods)}" if methods else ""))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    running = []
    for i, part in enumerate(slices):
        out = work / f"part-{i}.jsonl"
        cmd = [sys.executable, __file__, "--part-queries", json.dumps(part), "--part-out", str(out)]
        cmd += ["--split", args.split]
        cmd += ["--methods", args.methods] if methods else []
        cmd += ["--compact"] if args.compact else []
        # one core each: no BLAS or OpenMP threads fighting the other part
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        running.append(subprocess.Popen(cmd, env=env))
    for process in running:
        if process.wait() != 0:
            raise SystemExit(f"a part failed with exit code {process.returncode}")
    seconds = time.perf_counter() - t
    key = second_stage_key(collection)
    chunks = [c for c in logged(view.name, key) if c.images == report.images]
    result = combine(chunks, queries)
    plots = [] if args.compact else plot_families(result, RESULTS)
    results = {
        "machine": machine(),
        "command": f"python benchmarks/robustness.py --queries {args.queries} --parts {args.parts}"
        f" --split {args.split}"
        + (" --compact" if args.compact else f" --methods {args.methods}" if methods else ""),
        "split": args.split,
        "index_images": report.images,
        "index_seconds_this_run": round(index_seconds, 1),
        "run_seconds": round(seconds, 1),
        "parts": args.parts,
        **result.as_dict(),
        "plots": [p.name for p in plots],
    }
    path = save_result("robustness-compact" if args.compact else "robustness", results)
    for method, m in results["methods"].items():
        print(f"{method:14s} R@1 {m['average']['r1']:.3f}  R@10 {m['average']['r10']:.3f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
