"""Fingerprints at scale (issue 23, part 0): the four FVC2002 sets (320 real prints) among
synthetic distractor prints (`evaluate.synthetic_prints`), 10,000 prints in all by default,
indexed with the 'fingerprints-fast' preset (Bozorth3 alone: LEADER's second a print is too
slow for the time a search may take here); each real impression searched from its file for
the other 7 of its finger (official protocol), Bozorth3 re-ranking the CNN's best `--verify`.

Reported: mAP by both AP rules and P@1 of the whole search; the recall of the short list (the
share of each query's siblings among the CNN's best `--verify`, before Bozorth3); the median
and p95 time of a search from the file. Writes results/fingerprints_scale.json.

    .venv/bin/python benchmarks/fingerprints_scale.py [--prints 10000] [--verify 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import machine, median, percentile, save_result
from fingerprints import with_verify
from lookalike.collection import Collection
from lookalike.evaluate import data_root, groups
from lookalike.evaluate.cache import cache_root, fresh_cache_dir
from lookalike.evaluate.metrics import average_precision, average_precision_inria
from lookalike.evaluate.run import merged_view
from lookalike.evaluate.synthetic_prints import write_prints
from lookalike.images import find_images
from lookalike.settings import PRESETS

SETS = tuple(f"fvc2002_db{i}" for i in range(1, 5))


def real_view(folder: Path) -> Path:
    """The four FVC2002 sets under one folder, a link per print (`<set>/<finger>/<file>`)."""
    source = data_root() / "fingerprints"
    for name in SETS:
        for path in find_images(source / name):
            link = folder / path.relative_to(source)
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path.resolve())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prints", type=int, default=10_000, help="real and synthetic, in all")
    parser.add_argument("--verify", type=int, default=200, help="candidates Bozorth3 compares")
    parser.add_argument("--queries", type=int, default=0, help="a seeded sample (0: all 320)")
    args = parser.parse_args()
    work = cache_root() / "bench-fingerprints-scale"
    real = groups(real_view(work / "real"), name="fvc2002")
    synthetic = args.prints - len(real.images)
    t = time.perf_counter()
    write_prints(work / "synthetic", synthetic)  # kept between runs: they depend on the seed
    generate_seconds = time.perf_counter() - t
    rset = merged_view(real, [work / "synthetic"], work / f"view-{args.prints}")
    index_dir = fresh_cache_dir(work / f"index-{args.prints}")
    settings = with_verify(PRESETS["fingerprints-fast"], args.verify)
    collection = Collection.create(rset.root, index=index_dir, settings=settings)
    t = time.perf_counter()
    report = collection.index(workers=2)
    index_seconds = time.perf_counter() - t
    # the same index searched without Bozorth3 (these settings are not stored)
    short_list = Collection(rset.root, index_dir, with_verify(settings, 0))
    queries = sorted(rset.queries)
    if args.queries:
        rng = np.random.default_rng(0)
        queries = sorted(rng.choice(queries, args.queries, replace=False).tolist())
    aps, aps_inria, firsts, recalls, seconds = [], [], [], [], []
    for i, query in enumerate(queries):
        relevant = set(rset.queries[query])
        copies = collection.copies(rset.path(query))
        listed = short_list.search(rset.path(query), k=args.verify, exclude=copies)
        recalls.append(len({h.path for h in listed} & relevant) / len(relevant))
        t = time.perf_counter()
        hits = collection.search(rset.path(query), k=100, exclude=copies)
        seconds.append(time.perf_counter() - t)
        ranked = [h.path for h in hits]
        aps.append(average_precision(ranked, relevant))
        aps_inria.append(average_precision_inria(ranked, relevant))
        firsts.append(float(bool(ranked) and ranked[0] in relevant))
        if (i + 1) % 40 == 0:
            print(f"{i + 1}/{len(queries)}: mAP {np.mean(aps):.4f}", flush=True)
    result = {
        "prints": len(rset.images),
        "real": len(real.images),
        "synthetic": synthetic,
        "queries": len(queries),
        "verify": args.verify,
        "map": round(float(np.mean(aps)), 4),
        "map_inria": round(float(np.mean(aps_inria)), 4),
        "p_at_1": round(float(np.mean(firsts)), 4),
        "short_list_recall": round(float(np.mean(recalls)), 4),
        "search_seconds": {
            "median": round(median(seconds), 3),
            "p95": round(percentile(seconds, 95), 3),
        },
        "index_seconds": round(index_seconds, 1),
        "index_failed": len(report.failed),
        "generate_seconds": round(generate_seconds, 1),
    }
    command = "python benchmarks/fingerprints_scale.py"
    command += f" --prints {args.prints} --verify {args.verify}"
    if args.queries:
        command += f" --queries {args.queries}"
    path = save_result("fingerprints_scale", {"machine": machine(), "command": command, **result})
    print(json.dumps(result, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
