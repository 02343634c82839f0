"""Indexing on Ray (issue 24, part 3): extraction throughput on a local Ray cluster of 1 and of
2 worker nodes (on this machine, one CPU each), beside local runs of 1 and 2 processes.

Each configuration indexes the same Holidays photographs from scratch (`Collection.index`,
as `lookalike index [--ray ADDRESS] --workers N` does) into a fresh folder; the time is the
whole run (extraction, learning, building), and the extraction stage alone as the progress
reports it. The cluster is started here with `ray start` (a head, then a second node) and
stopped at the end, whatever happens. On this 2-core machine two Ray nodes share the cores
the local run uses: the figures measure Ray's overhead and its scaling from 1 to 2 workers,
not a second machine.

    .venv/bin/python benchmarks/ray_scaling.py [--images 200] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import machine, median, save_result
from lookalike.collection import Collection
from lookalike.evaluate import holidays
from lookalike.images import find_images

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_cluster(nodes: int) -> Iterator[str]:
    """A Ray cluster on 127.0.0.1 of `nodes` nodes with one CPU each; yields its address."""
    env = dict(os.environ)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--object-store-memory", "200000000", "--disable-usage-stats"]
    head = [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    try:
        subprocess.run([*head, *common, "--include-dashboard=false"], env=env, check=True)
        for _ in range(nodes - 1):
            node = [str(RAY), "start", "--address", address, "--node-ip-address", "127.0.0.1"]
            subprocess.run([*node, *common], env=env, check=True)
        yield address
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True)


def subset(folder: Path, n: int) -> Path:
    """A folder of links to the first `n` Holidays photographs (sorted by name)."""
    rset = holidays()
    for path in sorted(find_images(rset.root))[:n]:
        link = folder / Path(path).relative_to(rset.root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(path).resolve())
    return folder


def timed_index(photos: Path, work: Path, workers: int, ray: str | None) -> dict[str, float]:
    """Index `photos` from nothing; the whole run's seconds and the extraction stage's."""
    index = work / "index"
    shutil.rmtree(index, ignore_errors=True)
    collection = Collection.create(photos, index=index)
    t = time.perf_counter()
    report = collection.index(workers=workers, ray=ray)
    seconds = time.perf_counter() - t
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} images failed: {report.failed[:3]}")
    return {"seconds": seconds, "extract_seconds": report.timings["extract"]}


def main() -> None:
    # this throw-away cluster and the driver without token authentication or usage reports
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    configurations: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lookalike-ray-") as tmp:
        work = Path(tmp)
        photos = subset(work / "photos", args.images)

        def measure(name: str, workers: int, ray: str | None) -> None:
            runs = [timed_index(photos, work, workers, ray) for _ in range(args.repeats)]
            seconds = median([r["seconds"] for r in runs])
            extract = median([r["extract_seconds"] for r in runs])
            configurations[name] = {
                "workers": workers,
                "ray": ray is not None,
                "seconds": round(seconds, 1),
                "images_per_second": round(args.images / seconds, 2),
                "extract_images_per_second": round(args.images / extract, 2),
            }
            print(name, json.dumps(configurations[name]), flush=True)

        measure("local, 1 process", 1, None)
        measure("local, 2 processes", 2, None)
        for nodes in (1, 2):
            with local_cluster(nodes) as address:
                measure(f"Ray, {nodes} node(s) x 1 CPU", nodes, address)
    one = configurations["Ray, 1 node(s) x 1 CPU"]["images_per_second"]
    two = configurations["Ray, 2 node(s) x 1 CPU"]["images_per_second"]
    result = {
        "machine": machine(),
        "command": f"python benchmarks/ray_scaling.py --images {args.images} "
        f"--repeats {args.repeats}",
        "images": args.images,
        "configurations": configurations,
        "ray_scaling_1_to_2": round(two / one, 2),
    }
    path = save_result("ray_scaling", result)
    print(json.dumps(result["configurations"], indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
