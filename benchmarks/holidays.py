"""Holidays-300 as a user searches it: every query searched from its file, through the same
call `lookalike search` makes. mAP by both rules (ours and INRIA's), on all 300 queries and on
each half (validation: even groups, where parameters are chosen; test: odd groups, reported),
for these variants:

- `official`: the 811 images as stored; each query indexed and removed from its own ranking
  (searched around its indexed copy, which influences nothing);
- `upright`: the same with the 94 sideways images turned upright;
- `leave_out`: the 511 images that are not queries indexed, the 300 query files searched
  against them (queries not in the collection: the latency users feel);
- `inductive`: as `official`, with the whitening and codebook learned on Corel (not on the
  evaluated images; the other variants learn them from the collection, without labels);
- `compact`: as `official`, indexed with `--compact` (each image's 500 strongest local
  features kept in 24 bytes each once its codes are made): its size and what it costs;
- `compact_refit`: `compact`, then `index --refit`: whitening, codebook and every code
  learned again from the decoded compact features (what a growing collection's later refits
  read), the worst case of compact features.

Each variant scores the default search (`lookalike`: verification, second looks, every rule)
and the first stage alone (`fused`, `asmk`, `global`). Also: indexing throughput end to end
from files, index size and peak memory (official). Writes results/holidays.json, and each
query's APs and top-100 ranking to results/details/holidays-<variant>.json.gz.

    .venv/bin/python benchmarks/holidays.py [--variants official,leave_out]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

from common import RESULTS, lookalike_cmd, machine, run_measured, save_result
from lookalike.collection import Collection
from lookalike.evaluate import corel, holidays
from lookalike.evaluate.datasets import RetrievalSet, leave_out
from lookalike.evaluate.run import EvalResult, cached_index_dir, evaluate, upright_view

FIRST_STAGE = ("fused", "asmk", "global")
VARIANTS = ("official", "upright", "leave_out", "inductive", "compact", "compact_refit")


def corel_bundle() -> Path:
    """The model (whitening, codebook) `lookalike index` learns on the Corel photographs: the
    Corel index of the cache, built the first time."""
    rset = corel()
    collection = Collection.create(rset.root, index=cached_index_dir(rset))
    collection.index()
    return collection.index_dir / "model"


def indexing(rset: RetrievalSet, index_dir: Path, *options: str) -> dict[str, Any]:
    """`lookalike index` (with `options`) on the set, timed from the command line with its
    peak memory."""
    out, seconds, peak = run_measured(
        [
            *lookalike_cmd(), "index", str(rset.root), "--index", str(index_dir), "--json", "-q",
            *options,
        ]
    )  # fmt: skip
    report = json.loads(out)
    info = Collection.open(index_dir).info()
    return {
        "images": report["images"],
        "index_seconds": seconds,
        "index_images_per_second": report["images"] / seconds,
        "index_stage_seconds": report["timings"],
        "index_peak_rss_bytes": peak,
        "bytes_per_image": info["bytes_per_image"],
        "model": info["model"],
    }


def scored(rset: RetrievalSet, index_dir: Path, model: Path | None) -> list[EvalResult]:
    """The default search, then the first stage alone, over one index."""
    default = evaluate(rset, modes=("lookalike",), index_dir=index_dir, model=model)
    first = evaluate(rset, modes=FIRST_STAGE, index_dir=index_dir, model=model, verify=0)
    return [default, first]


def variant(name: str, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(figures, per-query detail) of one variant."""
    rset, model, index_dir = holidays(), None, tmp / f"index-{name}"
    if name == "upright":
        rset = upright_view(rset, tmp / "upright")
    elif name == "leave_out":
        rset = leave_out(rset)
    elif name == "inductive":
        model = corel_bundle()
    figures: dict[str, Any] = {}
    if name == "official":
        figures["indexing"] = indexing(rset, index_dir)
    elif name in ("compact", "compact_refit"):
        figures["indexing"] = indexing(rset, index_dir, "--compact")
    if name == "compact_refit":
        figures["refit"] = indexing(rset, index_dir, "--refit")
    results = scored(rset, index_dir, model)
    figures |= {
        "protocol": results[0].protocol,
        "images": results[0].images,
        "model": Collection.open(index_dir).info()["model"],
        "modes": {m: r.as_dict() for res in results for m, r in res.modes.items()},
    }
    detail = {m: r.as_dict(detail=True)["queries"] for res in results for m, r in res.modes.items()}
    return figures, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    args = parser.parse_args()
    chosen = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    results: dict[str, Any] = {
        "machine": machine(),
        "command": f"python benchmarks/holidays.py --variants {','.join(chosen)}",
        "variants": {},
    }
    details = RESULTS / "details"
    details.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp:
        for name in chosen:
            figures, detail = variant(name, Path(tmp))
            results["variants"][name] = figures
            with gzip.open(details / f"holidays-{name}.json.gz", "wt") as f:
                json.dump(detail, f)
            lookalike = figures["modes"]["lookalike"]
            print(
                f"{name}: default search mAP (INRIA) all {lookalike['all']['map_inria']:.4f}, "
                f"test {lookalike['test']['map_inria']:.4f}; median / p95 query "
                f"{1000 * lookalike['median_query_seconds']:.0f} / "
                f"{1000 * lookalike['p95_query_seconds']:.0f} ms",
                flush=True,
            )
    path = save_result("holidays", results)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
