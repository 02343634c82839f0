"""Fingerprints (issue 23, part 0): the CNN finds a short list, minutiae matchers re-rank it.

Each FVC2002 "B" set (80 impressions: 10 fingers x 8) is indexed with the 'fingerprints'
preset (and again with 'fingerprints-fast') and every impression searched from its file for
the other 7 of its finger (the official protocol: the query is indexed and left out of its own
ranking). Five rankings per set:

- `cnn`: the first stage and spatial verification alone (the short list's order);
- `cnn+bozorth3@K`: 'fingerprints-fast', NIST Bozorth3 re-ranking the best K (25 by default);
- `cnn+bozorth3+leader@K`: 'fingerprints', Bozorth3 fused with LEADER minutiae and the
  geometric matcher (z-scores over the K);
- `bozorth3 all`, `bozorth3+leader all`: the same matchers comparing every pair (K = 79), the
  conventional methods alone.

Reported per set and averaged: mAP by both AP rules, P@1, the recall of the short list (the
share of the relevant impressions among the CNN's best K) and the median and p95 query time.
Writes results/fingerprints.json.

    .venv/bin/python benchmarks/fingerprints.py [--verify 25] [--sets fvc2002_db1,...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from common import machine, save_result
from lookalike.evaluate import fingerprints
from lookalike.evaluate.run import ModeResult, evaluate
from lookalike.settings import PRESETS, Settings

SETS = tuple(f"fvc2002_db{i}" for i in range(1, 5))


def with_verify(settings: Settings, verify: int) -> Settings:
    return replace(settings, minutiae=replace(settings.minutiae, verify=verify))


def short_list_recall(cnn: ModeResult, relevant: dict[str, list[str]], k: int) -> float:
    """The share of each query's relevant images among the first `k` of the CNN's ranking,
    averaged over the queries."""
    shares = [
        len(set(cnn.rankings[q][:k]) & set(relevant[q])) / len(relevant[q])
        for q in cnn.rankings
        if relevant.get(q)
    ]
    return float(np.mean(shares))


def figures(mode: ModeResult) -> dict[str, float]:
    every = mode.reports["all"]
    return {
        "map": round(every.map, 4),
        "map_inria": round(every.map_inria, 4),
        "p_at_1": round(every.p_at_1, 4),
        "median_query_ms": round(1000 * mode.median_seconds, 1),
        "p95_query_ms": round(1000 * mode.p95_seconds, 1),
    }


def run_set(name: str, verify: int, work: Path) -> dict[str, Any]:
    rset = fingerprints(name)
    everyone = len(rset.images) - 1
    fused, fast = PRESETS["fingerprints"], PRESETS["fingerprints-fast"]
    variants = {  # label: (preset name, settings), one index per preset
        "cnn": ("fingerprints", with_verify(fused, 0)),
        f"cnn+bozorth3@{verify}": ("fingerprints-fast", with_verify(fast, verify)),
        f"cnn+bozorth3+leader@{verify}": ("fingerprints", with_verify(fused, verify)),
        "bozorth3 all": ("fingerprints-fast", with_verify(fast, everyone)),
        "bozorth3+leader all": ("fingerprints", with_verify(fused, everyone)),
    }
    out: dict[str, Any] = {"images": len(rset.images), "queries": len(rset.queries)}
    for label, (preset, settings) in variants.items():
        t = time.perf_counter()
        index_dir = work / f"{name}-{preset}"
        result = evaluate(rset, modes=["fused"], index_dir=index_dir, settings=settings)
        mode = result.modes["fused"]
        out[label] = figures(mode)
        # the first run with a preset indexes the set; the later ones find nothing to do
        out.setdefault("index_seconds", {}).setdefault(preset, round(result.index_seconds, 1))
        if label == "cnn":
            relevant = {q: list(rset.queries[q]) for q in rset.queries}
            out["short_list_recall"] = round(short_list_recall(mode, relevant, verify), 4)
        print(f"{name} {label}: {out[label]} ({time.perf_counter() - t:.0f} s)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", type=int, default=PRESETS["fingerprints"].minutiae.verify)
    parser.add_argument("--sets", default=",".join(SETS))
    args = parser.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    per_set = {}
    with tempfile.TemporaryDirectory(prefix="lookalike-fingerprints-") as tmp:
        for name in sets:
            per_set[name] = run_set(name, args.verify, Path(tmp))
    labels = [k for k, v in per_set[sets[0]].items() if isinstance(v, dict)]
    average: dict[str, Any] = {
        label: {
            key: round(float(np.mean([per_set[s][label][key] for s in sets])), 4)
            for key in per_set[sets[0]][label]
        }
        for label in labels
    }
    average["short_list_recall"] = round(
        float(np.mean([per_set[s]["short_list_recall"] for s in sets])), 4
    )
    command = f"python benchmarks/fingerprints.py --verify {args.verify}"
    if args.sets != ",".join(SETS):
        command += f" --sets {args.sets}"
    data = {
        "machine": machine(),
        "command": command,
        "verify": args.verify,
        "sets": per_set,
        "average": average,
    }
    path = save_result("fingerprints", data)
    print(json.dumps(average, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
