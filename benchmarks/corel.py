"""Corel (80 categories, 10,800 photographs): category-level retrieval through
`lookalike eval groups`, on a seeded sample of queries. Writes results/corel.json.

    .venv/bin/python benchmarks/corel.py [--max-queries 800]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import lookalike_cmd, machine, run_measured, save_result
from lookalike.evaluate import data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-queries", type=int, default=800)
    args = parser.parse_args()
    folder = data_root() / "corel"
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as tmp:
        cmd = [
            *lookalike_cmd(),
            "eval",
            "groups",
            str(folder),
            "--modes",
            "fused,asmk,global,similar",
            "--max-queries",
            str(args.max_queries),
            "--verify",
            "0",
            "--index",
            str(Path(tmp) / "index"),
            "--json",
        ]
        out, seconds, peak = run_measured(cmd)
    result = json.loads(out)
    data = {
        "machine": machine(),
        "command": f"python benchmarks/corel.py --max-queries {args.max_queries}",
        "result": result,
        "wall_seconds": seconds,
        "peak_rss_bytes": peak,
    }
    path = save_result("corel", data)
    print(json.dumps(result, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
