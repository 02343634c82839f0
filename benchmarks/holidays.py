"""Holidays: accuracy (mAP per search mode, as stored and upright), indexing throughput end to
end from files, query latency, index size and peak memory. Writes results/holidays.json.

The first stage alone (no spatial verification): `rerank.py` measures the second stage.

    .venv/bin/python benchmarks/holidays.py [--repeat-latency 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import lookalike_cmd, machine, median, percentile, run_measured, save_result
from lookalike.collection import Collection
from lookalike.evaluate import holidays
from lookalike.evaluate.run import evaluate, upright_view

MODES = ("fused", "asmk", "global")


def bench_variant(rset, index_dir: Path, latency: bool) -> dict:
    out, seconds, peak = run_measured(
        [*lookalike_cmd(), "index", str(rset.root), "--index", str(index_dir), "--json", "-q"]
    )
    report = json.loads(out)
    result = evaluate(rset, modes=MODES, index_dir=index_dir, verify=0)
    collection = Collection.open(index_dir)
    info = collection.info()
    data = {
        "images": report["images"],
        "index_seconds": seconds,
        "index_images_per_second": report["images"] / seconds,
        "index_stage_seconds": report["timings"],
        "index_peak_rss_bytes": peak,
        "bytes_per_image": info["bytes_per_image"],
        "map": {mode: rep.map for mode, rep in result.reports.items()},
        "p_at_1": {mode: rep.p_at_1 for mode, rep in result.reports.items()},
        "model": info["model"],
    }
    if latency:
        queries = sorted(rset.queries)
        collection.search(rset.root / queries[0], k=20)  # load the model and the index
        lat: dict[str, dict[str, float]] = {}
        for mode in MODES:
            times = []
            for q in queries:
                t = time.perf_counter()
                collection.search(rset.root / q, k=20, mode=mode, verify=0)
                times.append(time.perf_counter() - t)
            lat[mode] = {
                "median_ms": 1000 * median(times),
                "p95_ms": 1000 * percentile(times, 95),
                "queries": len(times),
            }
        data["query_latency_from_file"] = lat
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    rset = holidays()
    results: dict = {"machine": machine(), "command": "python benchmarks/holidays.py"}
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp:
        tmp_path = Path(tmp)
        results["as_stored"] = bench_variant(rset, tmp_path / "idx-stored", latency=True)
        upright = upright_view(rset, tmp_path / "upright")
        results["upright"] = bench_variant(upright, tmp_path / "idx-upright", latency=False)
    path = save_result("holidays", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
