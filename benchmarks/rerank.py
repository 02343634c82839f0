"""Re-ranking on Holidays: mAP of the first stage alone, with spatial verification, and with
verification plus query expansion (as stored and upright); what verification costs per query,
and how long the whole default search takes from a query photograph that is not in the index;
and region queries (centred crops of 50% and 25% of a relevant image's area).
Writes results/rerank.json.

    .venv/bin/python benchmarks/rerank.py [--verify 100] [--max-queries N]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import holidays_outside, machine, median, outside_queries, percentile, save_result
from lookalike.collection import Collection
from lookalike.evaluate import holidays
from lookalike.evaluate.datasets import RetrievalSet
from lookalike.evaluate.metrics import summarize
from lookalike.evaluate.run import cache_root, evaluate, upright_view

AREAS = (1.0, 0.5, 0.25)
MODES = ("fused", "asmk", "global")


def accuracy(
    rset: RetrievalSet, index_dir: Path | None, verify: int, modes: Sequence[str]
) -> tuple[dict, Path]:
    """mAP and P@1 per mode for: first stage, + verification, + verification and expansion;
    and the index folder (by default the one `lookalike eval` caches for the set)."""
    stages = {"first": (0, False), "verify": (verify, False), "verify+expand": (verify, True)}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for stage, (r, expand) in stages.items():
        t = time.perf_counter()
        result = evaluate(rset, modes=modes, index_dir=index_dir, verify=r, expand=expand)
        index_dir = result.index_dir
        out[stage] = {
            mode: {
                "map": round(rep.map, 4),
                "p_at_1": round(rep.p_at_1, 4),
                "median_query_ms": round(1000 * result.modes[mode].median_seconds, 1),
            }
            for mode, rep in result.reports.items()
        }
        print(f"{rset.name} {stage}: {json.dumps(out[stage])} ({time.perf_counter() - t:.0f} s)")
    assert index_dir is not None
    return out, index_dir


def latency(
    collection: Collection, queries: Sequence[str], verify: int, outside: Collection
) -> dict:
    """Per query, by its stored features (the query is indexed in `collection`, so there is no
    extraction): the first stage alone, then with the verification of `verify` images, then
    with expansion too; the differences are the cost of each second-stage step. And the whole
    default search from the query's file (`collection.root / q`) in `outside`, an index that
    does not hold the query (`holidays_outside`), as `lookalike search FILE` runs it: a
    photograph that is not in the collection takes the second looks when nothing verifies for
    sure, where an indexed one verifies at once against its own copy."""
    ids = [collection.id_of(q) for q in queries]
    collection.search(ids[0], k=20)  # load the model and the index
    outside.search(collection.root / queries[0], k=20)
    first, verified, expanded, from_file = [], [], [], []
    for q, image_id in zip(queries, ids, strict=True):
        assert image_id is not None
        for bucket, kwargs in (
            (first, {"verify": 0}),
            (verified, {"verify": verify, "expand": False}),
            (expanded, {"verify": verify, "expand": True}),
        ):
            t = time.perf_counter()
            collection.search(image_id, k=20, **kwargs)
            bucket.append(time.perf_counter() - t)
        t = time.perf_counter()
        outside.search(collection.root / q, k=20, verify=verify, expand=False)
        from_file.append(time.perf_counter() - t)
    verify_cost = [b - a for a, b in zip(first, verified, strict=True)]
    expand_cost = [c - b for b, c in zip(verified, expanded, strict=True)]

    def ms(values: list[float]) -> dict[str, float]:
        return {
            "median_ms": round(1000 * median(values), 1),
            "p95_ms": round(1000 * percentile(values, 95), 1),
        }

    return {
        "queries": len(queries),
        "verify": verify,
        "stages_measured_with": "stored features, query indexed",
        "first_stage": ms(first),
        "verification": ms(verify_cost),
        "expansion": ms(expand_cost),
        "search_from_file_not_indexed": ms(from_file),
    }


def centred_box(size: tuple[int, int], area: float) -> tuple[float, float, float, float]:
    """The centred box covering `area` of an image of `size = (width, height)`, same aspect."""
    width, height = size
    side = math.sqrt(area)
    w, h = width * side, height * side
    return (width - w) / 2, (height - h) / 2, w, h


def regions(rset: RetrievalSet, collection: Collection, verify: int, limit: int | None) -> dict:
    """For each query with a relevant image: the first relevant image (by name), cropped to a
    centred box of each area, is the query. It is left out of its own ranking; the original
    query and the other relevant images are the positives."""
    from lookalike.images import image_size

    cases = []
    for q in sorted(rset.queries):
        relevant = sorted(rset.queries[q])
        if relevant:
            source = relevant[0]
            cases.append((q, source, frozenset({q, *relevant}) - {source}))
    cases = cases[:limit] if limit else cases
    n = len(rset.images)
    out: dict[str, Any] = {"queries": len(cases)}
    for area in AREAS:
        for r in (0, verify):
            rankings, positives, junk = {}, {}, {}
            times = []
            for q, source, pos in cases:
                path = rset.root / source
                box = None if area == 1.0 else centred_box(image_size(path), area)
                t = time.perf_counter()
                hits = collection.search(path, k=n, region=box, verify=r)
                times.append(time.perf_counter() - t)
                rankings[q] = [h.path for h in hits]
                positives[q], junk[q] = pos, frozenset({source})
            rep = summarize(rankings, positives, junk)
            key = f"area {area:g} {'verified' if r else 'first stage'}"
            out[key] = {
                "map": round(rep.map, 4),
                "p_at_1": round(rep.p_at_1, 4),
                "median_query_ms": round(1000 * median(times), 1),
            }
            print(f"regions {key}: {out[key]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", type=int, default=100, help="images verified per query")
    parser.add_argument("--max-queries", type=int, default=None, help="for a quick look")
    args = parser.parse_args()
    rset = holidays()
    results: dict[str, Any] = {
        "machine": machine(),
        "command": "python benchmarks/rerank.py",
        "verify": args.verify,
    }
    results["as_stored"], stored_dir = accuracy(rset, None, args.verify, MODES)
    upright = upright_view(rset, cache_root() / "views" / "holidays-upright")
    results["upright"], _ = accuracy(upright, None, args.verify, ("fused",))
    collection = Collection.open(stored_dir)
    outside_set, outside = holidays_outside()
    queries, asked = outside_queries(outside_set, len(outside.images()), args.max_queries)
    results["latency"] = {
        **latency(collection, queries, args.verify, outside),
        "query_photographs": asked,  # of the search from the file; the stages: indexed
    }
    results["regions"] = regions(rset, collection, args.verify, args.max_queries)
    path = save_result("rerank", results)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
