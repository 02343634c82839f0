"""Accuracy side by side: every lookalike mode, the classic descriptors alone and fused, RootSIFT
+ ASMK, PHash and off-the-shelf GeM, on Holidays (as stored and upright) and Corel, in one run;
plus the weight of classic descriptors fused into the CNN score. Writes results/compare.json.

    .venv/bin/python benchmarks/compare.py [--corel-queries 800] [--no-rootsift]

Holidays uses its own cached indexes (`lookalike eval holidays [--upright]`). Corel is scored in
the Holidays + Corel index that `robustness.py` builds, with every Holidays image junk for
every Corel query: each Corel ranking is exactly the one a Corel-only index would give, except
that the whitening and codebook were learned from both sets. `--corel-queries` is a seeded
sample of Corel's queries (the same one `corel.py` draws).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

from common import machine, save_result
from lookalike.collection import Collection
from lookalike.evaluate import RetrievalSet, data_root, groups, holidays
from lookalike.evaluate.run import cache_root, cached_index_dir, evaluate, upright_view
from robustness import collection_and_view

FIRST_STAGE = (
    "fused",
    "asmk",
    "global",
    "fused+classic",
    "colour",
    "texture",
    "shape",
    "phash",
    "gem",
)
"""Methods ranked by their first stage alone."""
VERIFIED = ("fused", "fused+classic")
"""Methods ranked again with spatial verification of their top 100 (lookalike's default)."""
WEIGHTS = (0.1, 0.25, 0.5, 1.0)
"""Weights of the classic descriptors' score fused into the CNN score."""


def corel_within(view: RetrievalSet) -> RetrievalSet:
    """Corel's protocol inside the Holidays + Corel view (`distractors-0/` is Corel): each Corel
    image queries the rest of its category, and the Holidays images are junk."""
    corel = groups(data_root() / "corel")
    prefix = "distractors-0/"
    holidays_images = frozenset(p for p in view.images if not p.startswith(prefix))

    def moved(paths: frozenset[str]) -> frozenset[str]:
        return frozenset(prefix + p for p in paths)

    return RetrievalSet(
        name="corel",
        root=view.root,
        images=view.images,
        queries={prefix + q: moved(r) for q, r in corel.queries.items()},
        junk={prefix + q: moved(j) | holidays_images for q, j in corel.junk.items()},
        rotations={},
        groups={prefix + p: g for p, g in corel.groups.items()},
    )


def score(rset: RetrievalSet, index_dir: Any, max_queries: int | None) -> dict[str, Any]:
    """mAP and precision of every method: first stage alone, and verified where it applies."""
    out: dict[str, Any] = {}
    for stage, methods, verify in (("first_stage", FIRST_STAGE, 0), ("verified", VERIFIED, None)):
        t = time.perf_counter()
        result = evaluate(
            rset, modes=methods, index_dir=index_dir, verify=verify, max_queries=max_queries
        )
        out[stage] = {
            m: {
                **{k: v for k, v in rep.as_dict().items() if k != "per_query_ap"},
                "median_query_seconds": round(result.modes[m].median_seconds, 4),
            }
            for m, rep in result.reports.items()
        }
        print(f"{rset.name} {stage}: {time.perf_counter() - t:.0f} s", flush=True)
    return out


def fusion_sweep(rset: RetrievalSet, index_dir: Any, max_queries: int | None) -> dict[str, Any]:
    """First-stage mAP and P@10 of fused+classic at each of `WEIGHTS`; the stored settings are
    put back afterwards."""
    stored = Collection.open(index_dir).settings
    out = {}
    try:
        for weight in WEIGHTS:
            settings = replace(stored, search=replace(stored.search, fuse_weight=weight))
            result = evaluate(
                rset,
                modes=("fused+classic",),
                index_dir=index_dir,
                settings=settings,
                verify=0,
                max_queries=max_queries,
            )
            rep = result.reports["fused+classic"]
            out[str(weight)] = {"map": rep.map, "p_at_10": rep.p_at_10}
    finally:
        Collection.create(rset.root, index=index_dir, settings=stored)
    return out


def rootsift(rset: RetrievalSet, max_queries: int | None) -> dict[str, Any]:
    from rootsift import evaluate_rootsift

    t = time.perf_counter()
    result = evaluate_rootsift(rset, max_queries=max_queries)
    print(f"{rset.name} rootsift: {time.perf_counter() - t:.0f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corel-queries", type=int, default=800)
    parser.add_argument("--no-rootsift", action="store_true", help="Leave RootSIFT out.")
    args = parser.parse_args()

    stored = holidays()
    upright = upright_view(stored, cache_root() / "views" / "holidays-upright")
    _, view = collection_and_view()
    corel = corel_within(view)
    sets: list[tuple[str, RetrievalSet, Any, int | None]] = [
        ("holidays", stored, cached_index_dir(stored), None),
        ("holidays_upright", upright, cached_index_dir(upright), None),
        ("corel", corel, cached_index_dir(view), args.corel_queries),
    ]
    results: dict[str, Any] = {
        "machine": machine(),
        "command": "python benchmarks/compare.py"
        + (f" --corel-queries {args.corel_queries}" if args.corel_queries != 800 else "")
        + (" --no-rootsift" if args.no_rootsift else ""),
        "sets": {},
        "fusion_weight": {},
    }
    for name, rset, index_dir, max_queries in sets:
        results["sets"][name] = score(rset, index_dir, max_queries)
        if name != "holidays_upright":
            results["fusion_weight"][name] = fusion_sweep(rset, index_dir, max_queries)
        if not args.no_rootsift:
            # RootSIFT scores Corel on its own (it has no index to share)
            own = groups(data_root() / "corel") if name == "corel" else rset
            results["sets"][name]["rootsift"] = rootsift(own, max_queries)
        save_result("compare", results, partial=True)  # kept if a later set fails
    path = save_result("compare", results)
    print(json.dumps(results["fusion_weight"], indent=2))
    for name, data in results["sets"].items():
        line = "  ".join(f"{m} {r['map']:.3f}" for m, r in data["first_stage"].items())
        print(f"{name}: {line}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
