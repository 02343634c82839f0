"""Load test of `lookalike serve`: concurrent clients upload query images to /api/search.

    .venv/bin/python benchmarks/load.py [--clients 16] [--seconds 60] [--corrupt 0.1]
                                        [--verify N] [--preset fast]

Latency as users feel it: the queries are photographs that are not in the index. Serves an
index of the 511 Holidays images that are not queries (`datasets.leave_out`, cached apart from
the 811-image index) in a separate process, then `--clients` clients, each waiting for its
answer before sending the next, upload the 300 Holidays query photographs as they are stored
(full size JPEGs), a `--corrupt` fraction of them damaged (truncated, bytes flipped, or not an
image at all). An indexed query would verify at once against its own copy; these take the
second looks (coarse and three turns) when nothing verifies for sure, as a user's new
photograph does. Reports throughput, p50/p99 latency of the searches, the server's peak memory,
how many answers were 5xx (there must be none), that every damaged upload got a 400, and how
often the first hit was a relevant image (all of them are indexed). Client and server share
the machine's cores, as they would on one host.

`--verify N` serves with `lookalike serve --verify N`; `--preset fast` serves an index made
with `lookalike index --preset fast` (built in the cache the first time). Each configuration's
figures are kept in results/load.json under its own name, beside the others', with the
Holidays mAP the configuration gives (official protocol: the 811-image index, stored query
features).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from common import (
    PeakRss,
    holidays_outside,
    load_current,
    lookalike_cmd,
    machine,
    median,
    outside_queries,
    percentile,
    save_result,
)
from lookalike.collection import Collection
from lookalike.evaluate import holidays
from lookalike.evaluate.cache import fresh_cache_dir
from lookalike.evaluate.run import default_index_dir, evaluate
from lookalike.settings import PRESETS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def damaged(data: bytes, rng: np.random.Generator) -> bytes:
    """A broken upload: cut short, scrambled in the middle, or not an image."""
    kind = int(rng.integers(3))
    if kind == 0:
        return data[: int(len(data) * rng.uniform(0.05, 0.6))]
    if kind == 1:
        noisy = bytearray(data)
        start = int(len(noisy) * 0.02)
        noisy[start : start + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        return bytes(noisy[: int(len(noisy) * 0.5)])
    return b"<html><body>404 not found</body></html>"


def start_server(root: Path, index: Path, port: int, options: list[str]) -> subprocess.Popen[bytes]:
    cmd = [*lookalike_cmd(), "serve", str(root), "--index", str(index), "--port", str(port)]
    cmd += options
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not start within 300 s")


async def client(
    url: str,
    uploads: list[tuple[str, bytes, bool]],
    relevant: dict[str, set[str]],
    start: int,
    stop_at: float,
    log: list[dict[str, Any]],
) -> None:
    async with httpx.AsyncClient(timeout=120) as http:
        n = start
        while time.monotonic() < stop_at:
            name, data, broken = uploads[n % len(uploads)]
            n += 1
            t = time.perf_counter()
            response = await http.post(
                f"{url}/api/search",
                files={"image": (Path(name).name, data, "image/jpeg")},
                data={"k": "10"},
            )
            seconds = time.perf_counter() - t
            entry = {
                "name": name,
                "at": t,
                "broken": broken,
                "status": response.status_code,
                "seconds": seconds,
            }
            if response.status_code == 200:
                hits = response.json()["hits"]  # the query is not indexed: no hit is itself
                entry["right"] = bool(hits) and hits[0]["path"] in relevant[name]
            log.append(entry)


async def hammer(
    url: str,
    uploads: list[tuple[str, bytes, bool]],
    relevant: dict[str, set[str]],
    clients: int,
    seconds: float,
) -> tuple[list[dict[str, Any]], float]:
    log: list[dict[str, Any]] = []
    t = time.monotonic()
    stop_at = t + seconds
    step = max(1, len(uploads) // clients)
    await asyncio.gather(
        *(client(url, uploads, relevant, i * step, stop_at, log) for i in range(clients))
    )
    return log, time.monotonic() - t


def summary(log: list[dict[str, Any]], wall: float, client_cpu: float) -> dict[str, Any]:
    """The figures of one round of `seconds` of load."""
    searches = [e for e in log if not e["broken"]]
    answered = [e for e in searches if e["status"] == 200]
    broken = [e for e in log if e["broken"]]
    latencies = [e["seconds"] for e in answered]
    return {
        "requests": len(log),
        "searches": len(answered),
        "searches_per_second": round(len(answered) / wall, 2),
        "p50_seconds": round(median(latencies), 3),
        "p99_seconds": round(percentile(latencies, 99), 3),
        "server_errors": sum(e["status"] >= 500 for e in log),
        "failed_searches": len(searches) - len(answered),
        "damaged_uploads": len(broken),
        "damaged_refused_400": sum(e["status"] == 400 for e in broken),
        "damaged_answers": dict(Counter(str(e["status"]) for e in broken)),
        "first_hit_relevant": round(float(np.mean([e["right"] for e in answered])), 3)
        if answered
        else 0.0,
        "relevant_hits": sum(e["right"] for e in answered),
        "client_cpu_share": round(client_cpu / (wall * (os.cpu_count() or 1)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--corrupt", type=float, default=0.1, help="fraction of damaged uploads")
    parser.add_argument("--verify", type=int, help="images each search verifies (serve --verify)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--search-threads", type=int, help="serve --search-threads")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of load; medians kept")
    parser.add_argument("--dump", type=Path, help="write every request of the last round here")
    args = parser.parse_args()

    rset = holidays()
    index = default_index_dir(rset)
    if args.preset != "default":
        index = index.with_name(f"{index.name}-{args.preset}")
    # the 811-image index (queries indexed too) that evaluate() scores; it is not served
    index = fresh_cache_dir(index)  # rebuilt when other code built it
    collection = Collection.create(rset.root, index=index, settings=PRESETS[args.preset])
    collection.index(workers=2)  # the cached index, up to date
    # what the configuration costs in accuracy: Holidays mAP, official protocol
    holidays_map = evaluate(rset, modes=("fused",), index_dir=index, verify=args.verify)
    # what is served: the other Holidays images; the query photographs are not among them
    outside, served = holidays_outside(args.preset)
    queries, asked = outside_queries(outside, len(served.images()))
    rng = np.random.default_rng(0)
    uploads, relevant = [], {}
    for query in queries:
        data = outside.path(query).read_bytes()
        broken = bool(rng.random() < args.corrupt)
        uploads.append((query, damaged(data, rng) if broken else data, broken))
        relevant[query] = set(outside.queries[query])
    order = rng.permutation(len(uploads))
    uploads = [uploads[i] for i in order]

    port = free_port()
    options = [] if args.verify is None else ["--verify", str(args.verify)]
    options += [] if args.search_threads is None else ["--search-threads", str(args.search_threads)]
    server = start_server(served.root, served.index_dir, port, options)
    url = f"http://127.0.0.1:{port}"
    rounds = []
    try:
        with PeakRss(server.pid, every=0.2) as peak:
            # warm up: the model and the index are loaded by the first search
            asyncio.run(hammer(url, uploads[:4], relevant, 2, 1))
            for _ in range(args.repeats):
                before = resource.getrusage(resource.RUSAGE_SELF)
                log, wall = asyncio.run(hammer(url, uploads, relevant, args.clients, args.seconds))
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                rounds.append(summary(log, wall, cpu))
                print(json.dumps(rounds[-1]))
                if args.dump:
                    args.dump.write_text("\n".join(json.dumps(e) for e in log) + "\n")
    finally:
        server.terminate()
        server.wait(30)

    name = f"{args.preset}, verify {'100 (default)' if args.verify is None else args.verify}"
    name += "" if args.search_threads is None else f", {args.search_threads} search threads"
    typical = {  # the median round of each figure; counts are summed over the rounds
        key: float(np.median([r[key] for r in rounds]))
        if key in ("searches_per_second", "p50_seconds", "p99_seconds", "client_cpu_share")
        else sum(r[key] for r in rounds)
        for key in rounds[0]
        if key not in ("damaged_answers", "first_hit_relevant")
    }
    answers: Counter[str] = Counter()
    for r in rounds:
        answers.update(r["damaged_answers"])
    run = {
        "machine": machine(),
        "command": f"python benchmarks/load.py --clients {args.clients} "
        f"--seconds {args.seconds:g} --corrupt {args.corrupt:g} --repeats {args.repeats}"
        + ("" if args.verify is None else f" --verify {args.verify}")
        + ("" if args.preset == "default" else f" --preset {args.preset}")
        + ("" if args.search_threads is None else f" --search-threads {args.search_threads}"),
        "collection_images": len(served.images()),
        "query_photographs": asked,
        "clients": args.clients,
        "seconds": args.seconds,
        "repeats": args.repeats,
        **typical,
        "searches_per_second_range": [
            min(r["searches_per_second"] for r in rounds),
            max(r["searches_per_second"] for r in rounds),
        ],
        "damaged_answers": dict(answers),
        "first_hit_relevant": round(typical["relevant_hits"] / max(1, typical["searches"]), 3),
        "holidays_map": round(holidays_map.reports["fused"].map, 4),
        "server_peak_rss_mib": round(peak.bytes / 2**20),
        "cores": os.cpu_count(),
    }
    runs = (load_current("load") or {}).get("runs", {})  # other code's runs are dropped
    path = save_result("load", {"runs": {**runs, name: run}})
    print(json.dumps({k: v for k, v in run.items() if k != "machine"}, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
