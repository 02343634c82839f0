"""Robustness side by side: transformed copies of the Holidays query images (8 families x 5
strengths) search Holidays plus the 10,800 Corel photographs for their untouched original,
with every lookalike mode and the peers (PHash, off-the-shelf GeM) in the same loop.
Writes results/robustness.json and results/robustness-<family>.png.

    .venv/bin/python benchmarks/robustness.py [--queries 300] [--parts 2] [--methods a,b]

The queries are split into `--parts` slices, each searched by its own process (one core
each) a few queries at a time, appended to a log in the cache: a killed run, started again
with the same arguments, carries on. The slices' ranks are merged; query times are medians
within each chunk, averaged. `--methods` runs only those (e.g. `rootsift`, once the index has
RootSIFT) and adds them to the full run's results with the same `--queries` and `--parts`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, machine, save_result
from lookalike.collection import Collection
from lookalike.evaluate import RetrievalSet, data_root, holidays
from lookalike.evaluate.peers import phash_collection
from lookalike.evaluate.robustness import suite
from lookalike.evaluate.robustness_run import (
    RobustnessResult,
    merge,
    plot_families,
    run_robustness,
    sample_queries,
    with_methods,
)
from lookalike.evaluate.run import cache_root, default_index_dir, merged_view


def collection_and_view() -> tuple[Collection, RetrievalSet]:
    view = merged_view(
        holidays(), [data_root() / "corel"], cache_root() / "views" / "holidays+corel"
    )
    return Collection.create(view.root, index=default_index_dir(view)), view


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


def run_part(queries: list[str], log: Path, methods: list[str] | None) -> None:
    """Run `queries` a chunk at a time, appending each chunk's ranks to `log`; queries already
    in the log are skipped, so a killed run carries on where it stopped."""
    collection, view = collection_and_view()
    done = {q for chunk in done_chunks(log) for q in chunk["queries"]}
    todo = [q for q in queries if q not in done]
    for start in range(0, len(todo), CHUNK):
        result = run_robustness(
            view, collection, queries=todo[start : start + CHUNK], methods=methods
        )
        line = {
            "images": result.images,
            "queries": list(result.queries),
            "ranks": result.ranks,
            "seconds": result.seconds,
        }
        with log.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(f"part {log.stem}: {len(done) + start + len(result.queries)}/{len(queries)}")


def logged(dataset: str, logs: list[Path]) -> list[RobustnessResult]:
    """The chunks the parts' logs hold, in part order."""
    transforms = tuple(suite())
    return [
        RobustnessResult(
            dataset=dataset,
            images=data["images"],
            queries=tuple(data["queries"]),
            transforms=transforms,
            ranks=data["ranks"],
            seconds=data["seconds"],
        )
        for log in logs
        for data in done_chunks(log)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300, help="a seeded sample (300: all)")
    parser.add_argument("--parts", type=int, default=2, help="processes, one slice each")
    parser.add_argument("--methods", help="only these (comma-separated), added to a full run")
    parser.add_argument("--part-queries", help=argparse.SUPPRESS)  # a worker's slice (JSON)
    parser.add_argument("--part-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else None
    if args.part_queries:
        run_part(json.loads(args.part_queries), Path(args.part_out), methods)
        return

    collection, view = collection_and_view()
    t = time.perf_counter()
    report = collection.index(workers=2)
    index_seconds = time.perf_counter() - t
    queries = sample_queries(view, args.queries)
    # the peers' hashes once, before the parts read them from the cache
    phash_collection(
        collection.root,
        [path for _, path in collection.images()],
        collection.index_dir / "peers" / "phash.npz",
    )
    slices = [queries[i :: args.parts] for i in range(args.parts)]
    full = cache_root() / "bench-robustness" / f"q{args.queries}-p{args.parts}"
    work = full.with_name(f"{full.name}-{'+'.join(methods)}") if methods else full
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    running = []
    for i, part in enumerate(slices):
        out = work / f"part-{i}.jsonl"
        cmd = [sys.executable, __file__, "--part-queries", json.dumps(part), "--part-out", str(out)]
        cmd += ["--methods", args.methods] if methods else []
        # one core each: no BLAS or OpenMP threads fighting the other part
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        running.append((subprocess.Popen(cmd, env=env), out))
    for process, _ in running:
        if process.wait() != 0:
            raise SystemExit(f"a part failed with exit code {process.returncode}")
    seconds = time.perf_counter() - t
    result = merge(logged(view.name, [out for _, out in running]))
    if methods:  # onto the full run, with every other method added the same way
        runs = [full, *sorted(full.parent.glob(f"{full.name}-*"))]
        merged = [merge(logged(view.name, sorted(run.glob("part-*.jsonl")))) for run in runs]
        result = merged[0]  # this run is among the others
        for more in merged[1:]:
            result = with_methods(result, more)
    plots = plot_families(result, RESULTS)
    results = {
        "machine": machine(),
        "command": f"python benchmarks/robustness.py --queries {args.queries} --parts {args.parts}"
        + (f" (then --methods {args.methods})" if methods else ""),
        "index_images": report.images,
        "index_seconds_this_run": round(index_seconds, 1),
        "run_seconds": round(seconds, 1),
        "parts": args.parts,
        **result.as_dict(),
        "plots": [p.name for p in plots],
    }
    path = save_result("robustness", results)
    for method, m in results["methods"].items():
        print(f"{method:14s} R@1 {m['average']['r1']:.3f}  R@10 {m['average']['r10']:.3f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
