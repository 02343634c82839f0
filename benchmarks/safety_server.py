"""Part 3 of `benchmarks/safety.py`: `lookalike serve` under a hostile mix of requests.

The real server (`python -m lookalike.cli serve FOLDER --port P`, default options) serves an
indexed collection while client threads send, for a set time, a seeded mix of: searches with
Holidays photographs that are not in the index, thumbnails at many sizes, chunked uploads over
the size limit (no Content-Length) to /api/search and /api/images, a pixel bomb (an 8000x8000
PNG, tiny on disk) to /api/search, writes from another site's page (Origin:
http://attacker.example) and requests through a foreign Host name (DNS rebinding). Observed:
the statuses each kind got, the 5xx answers, the searches answered and their latency, the
server's peak memory (its process tree, sampled every 0.2 s), the tracebacks in its log, and
that no hostile write changed the collection.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from common import PeakRss, median, percentile
from safety_setup import cli_env

THREADS = 16
MIX = {
    # kind: share of the requests
    "search": 0.30,
    "thumbnail": 0.25,
    "oversize search (chunked)": 0.07,
    "oversize upload (chunked)": 0.04,
    "pixel bomb": 0.08,
    "cross-origin write": 0.13,
    "foreign host": 0.13,
}
REFUSED = {
    # kind: what it must be answered with (or the server closes the connection mid-body)
    "oversize search (chunked)": "413",
    "oversize upload (chunked)": "4xx (each file over the limit is rejected)",
    "pixel bomb": "400",
    "cross-origin write": "403",
    "foreign host": "421",
}
OVERSIZE_MIB = 30
"""The chunked bodies: over the default 20 MiB limit of one image."""
THUMB_SIZES = (-5, 0, 1, 16, 31, 32, 64, 100, 128, 200, 255, 256, 257, 1000, 10**9)
ATTACKER = "http://attacker.example"
REBIND = "rebind.attacker.example"
BOUNDARY = "lookalike-safety-boundary"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pixel_bomb() -> bytes:
    """An 8000x8000 greyscale PNG: 64 Mpx to decode, a few tens of kB on disk."""
    buf = io.BytesIO()
    Image.new("L", (8000, 8000), 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def oversize_body(field: str) -> Iterator[bytes]:
    """A multipart body with one file of `OVERSIZE_MIB` MiB, sent in 1 MiB chunks."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="big.jpg"'
        "\r\nContent-Type: image/jpeg\r\n\r\n"
    ).encode()
    chunk = b"\xff\xd8" + b"\x00" * (2**20 - 2)
    for _ in range(OVERSIZE_MIB):
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


class Client:
    """One client thread's requests, by kind; each returns its HTTP status."""

    def __init__(self, base: str, ids: list[int], queries: list[bytes], bomb: bytes) -> None:
        self.http = httpx.Client(base_url=base, timeout=180)
        self.ids, self.queries, self.bomb = ids, queries, bomb

    def send(self, kind: str, rng: np.random.Generator) -> int:
        pick = int(rng.integers(1 << 30))
        if kind == "search":
            query = self.queries[pick % len(self.queries)]
            files = {"image": ("query.jpg", query, "image/jpeg")}
            return self.http.post("/api/search", files=files, data={"k": "10"}).status_code
        if kind == "thumbnail":
            size = THUMB_SIZES[pick % len(THUMB_SIZES)]
            image_id = self.ids[pick % len(self.ids)]
            return self.http.get(f"/api/images/{image_id}/thumb?size={size}").status_code
        if kind.startswith("oversize"):
            path, field = ("/api/search", "image") if "search" in kind else ("/api/images", "files")
            headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            return self.http.post(path, content=oversize_body(field), headers=headers).status_code
        if kind == "pixel bomb":
            files = {"image": ("bomb.png", self.bomb, "image/png")}
            return self.http.post("/api/search", files=files).status_code
        if kind == "cross-origin write":
            return self.cross_origin(pick)
        if kind == "foreign host":
            headers = {"Host": REBIND}
            if pick % 2:
                return self.http.get("/api/status", headers=headers).status_code
            files = {"image": ("query.jpg", self.queries[0], "image/jpeg")}
            return self.http.post("/api/search", files=files, headers=headers).status_code
        raise ValueError(f"unknown kind {kind!r}")

    def cross_origin(self, pick: int) -> int:
        """An upload, a delete or a search posted by another site's page."""
        headers = {"Origin": ATTACKER}
        query = self.queries[pick % len(self.queries)]
        if pick % 3 == 0:
            files = {"files": ("planted.jpg", query, "image/jpeg")}
            return self.http.post("/api/images", files=files, headers=headers).status_code
        if pick % 3 == 1:
            image_id = self.ids[pick % len(self.ids)]
            return self.http.delete(f"/api/images/{image_id}", headers=headers).status_code
        files = {"image": ("query.jpg", query, "image/jpeg")}
        return self.http.post("/api/search", files=files, headers=headers).status_code


def run_server_mix(
    root: Path, queries: list[Path], seconds: float, log: Path, threads: int = THREADS
) -> dict[str, Any]:
    """Serve the indexed collection `root` and send it the hostile mix for `seconds` from
    `threads` clients (`queries`: photographs that are not in the index)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "lookalike.cli", "serve", str(root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=cli_env(),
        )
        try:
            with PeakRss(server.pid, every=0.2) as peak:
                started = wait_until_up(base, server)
                before = httpx.get(f"{base}/api/images?limit=1000").json()
                ids = [image["id"] for image in before["images"]]
                data = [p.read_bytes() for p in queries]
                outcome = mix(base, ids, data, pixel_bomb(), seconds, threads)
                after = httpx.get(f"{base}/api/images?limit=1000").json()["total"]
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    text = log.read_text(errors="replace")
    planted = sorted(p.name for p in root.rglob("planted*"))
    return {
        **outcome,
        "seconds": seconds,
        "threads": threads,
        "startup_seconds": round(started, 1),
        "peak_rss_bytes": peak.bytes,
        "peak_rss_gib": round(peak.bytes / 2**30, 3),
        "server_tracebacks": text.count("Traceback"),
        "images_before": before["total"],
        "images_after": after,
        "planted_files": planted,
        "expected": REFUSED,
    }


def wait_until_up(base: str, server: subprocess.Popen[bytes], limit: float = 300) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before answering")
        try:
            if httpx.get(f"{base}/api/status", timeout=5).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server did not answer within {limit} s")


def mix(
    base: str, ids: list[int], queries: list[bytes], bomb: bytes, seconds: float, threads: int
) -> dict[str, Any]:
    """`threads` clients sending the `MIX` for `seconds`; the statuses by kind, the failed
    connections, and the normal searches' latency."""
    kinds, shares = list(MIX), np.array(list(MIX.values()))
    statuses: dict[str, Counter[str]] = {kind: Counter() for kind in kinds}
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(n: int) -> None:
        rng = np.random.default_rng([7, n])
        talk = Client(base, ids, queries, bomb)
        while time.perf_counter() < deadline:
            kind = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]
            t = time.perf_counter()
            try:
                status = str(talk.send(kind, rng))
            except httpx.HTTPError as e:  # e.g. the server closed the connection mid-body
                status = f"closed: {type(e).__name__}"
            spent = time.perf_counter() - t
            with lock:
                statuses[kind][status] += 1
                if kind == "search" and status == "200":
                    latencies.append(spent)
        talk.http.close()

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    every = Counter[str]()
    for counts in statuses.values():
        every.update(counts)
    hostile = [k for k in kinds if k in REFUSED]
    return {
        "requests": sum(every.values()),
        "statuses": {kind: dict(counts) for kind, counts in statuses.items()},
        "server_errors_5xx": sum(n for s, n in every.items() if s.startswith("5")),
        "connection_errors": sum(n for s, n in every.items() if s.startswith("closed")),
        "hostile_answered_2xx": sum(
            n for k in hostile for s, n in statuses[k].items() if s.startswith("2")
        ),
        "searches_answered": len(latencies),
        "search_ms": {
            "median": round(1000 * median(latencies), 1),
            "p95": round(1000 * percentile(latencies, 95), 1),
        },
    }
