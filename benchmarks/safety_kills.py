"""Part 1 of `benchmarks/safety.py`: index runs killed with SIGKILL while a reader searches.

A collection of Holidays photographs is indexed once; then each trial changes it (adds,
overwrites and deletes files, seeded), starts an index run and kills it with SIGKILL at a
seeded moment of a chosen stage (extract, learn, build, publish), runs `lookalike index` to
its end, and checks that nothing was lost: every image file is indexed (or reported failed),
every one is found first by a search with its file, and `check_index(full=True)` finds no
damage. A reader process searches the collection throughout (by file and by id, one
collection kept open as a server keeps it and freshly opened ones) and records every error.

Run as a script, this module is one of the two processes the trials start:
    python safety_kills.py child FOLDER WORKERS REFIT   an index run that prints its stages
    python safety_kills.py reader FOLDER OUT STOP       the reader, until the file STOP exists
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO
from safety_setup import (
    INDEX,
    SETTINGS,
    cli_env,
    copy_collection,
    image_files,
    last_line,
    lookalike,
    not_found_first,
    split_photos,
)

STAGES = ("extract", "learn", "build", "publish")
"""The stages a kill is aimed at, in turn."""
LANDED = ("scan", *STAGES)
"""The stages a kill can land in; after the last, the run has done its work ('done')."""


# --- the index run that is killed ---------------------------------------------------------


def child_main(root: str, workers: int, refit: bool) -> None:
    """Index `root` as `lookalike index` does, printing `stage done total` lines (flushed):
    the progress stages, and `publish 0 1` once the new generation is written and is being
    published (the catalog switched to it, what no generation needs removed)."""
    from lookalike.collection import Collection
    from lookalike.index import build

    written = build.build_generation

    def build_then_publish(*args: Any, **kwargs: Any) -> None:
        written(*args, **kwargs)
        print("publish 0 1", flush=True)

    build.build_generation = build_then_publish  # type: ignore[assignment]

    def progress(stage: str, done: int, total: int) -> None:
        print(stage, done, total, flush=True)

    Collection.create(root).index(workers=workers, refit=refit, progress=progress)
    print("finished 0 0", flush=True)


def stage_of(line: str) -> str:
    """The stage a run is in after printing `line` ('' before any: scanning)."""
    if not line:
        return "scan"
    stage, done, total = line.split()
    if stage == "build" and done == total:
        return "done"  # published and cleaned up: only the report and the exit are left
    if stage == "finished":
        return "done"
    return stage if stage in LANDED else "scan"


@dataclass(frozen=True)
class Killed:
    """One index run killed: the stage aimed at and the one it was in, whether it was still
    running, the seconds it ran, and its worker processes that outlived it."""

    target: str
    landed: str
    alive: bool
    seconds: float
    orphans: int


def start_child(root: Path, workers: int, refit: bool) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "child", str(root), str(workers), str(int(refit))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cli_env(),
    )


def timed_lines(child: subprocess.Popen[str]) -> Iterator[tuple[float, str]]:
    assert child.stdout is not None
    for line in child.stdout:
        yield time.perf_counter(), line.strip()


def stage_seconds(lines: list[tuple[float, str]]) -> dict[str, float]:
    """How long learn, build and publish took in a run that printed `lines` (timed)."""
    first: dict[str, float] = {}
    for t, line in lines:
        first.setdefault(line, t)
    spans = {
        "learn": ("learn 0 1", "learn 1 1"),
        "build": ("build 0 1", "publish 0 1"),
        "publish": ("publish 0 1", "build 1 1"),
    }
    return {s: first[b] - first[a] for s, (a, b) in spans.items() if a in first and b in first}


def kill_during(
    root: Path,
    target: str,
    rng: np.random.Generator,
    *,
    refit: bool,
    workers: int,
    durations: dict[str, float],
) -> Killed:
    """Start an index run of `root` and SIGKILL it at a seeded moment of `target`: in
    extract after a seeded number of images, in the others a seeded fraction of the stage's
    `durations` after it began. The stage it landed in is read from all it printed."""
    t0 = time.perf_counter()
    child = start_child(root, workers, refit)
    seen: list[str] = []
    after = 0
    for _, line in timed_lines(child):
        seen.append(line)
        stage, done, total = line.split()
        if stage != target:
            continue
        if stage == "extract":
            if done == "0":
                after = int(rng.integers(0, int(total)))
            if int(done) < after:
                continue
            time.sleep(float(rng.uniform(0.0, 0.3)))
        elif done == "0":
            time.sleep(float(rng.uniform(0.0, 0.9)) * durations.get(target, 0.05))
        break
    alive = child.poll() is None
    sys.path.insert(0, str(REPO / "tests"))
    from test_crash import descendants  # the processes under a pid

    workers_left = descendants(child.pid)
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate()
    seen += [line.strip() for line in rest.splitlines() if line.strip()]
    orphans = outlived(workers_left)
    landed = stage_of(seen[-1] if seen else "") if alive else "done"
    return Killed(target, landed, alive, time.perf_counter() - t0, orphans)


def outlived(pids: list[int], wait: float = 60.0) -> int:
    """How many of `pids` (a killed run's workers) are still alive after `wait` seconds;
    those are then killed, so that they hold no network on."""
    deadline = time.monotonic() + wait
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if Path(f"/proc/{pid}").exists()]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(alive)


# --- the changes each trial makes ------------------------------------------------------------


def replace_file(source: Path, target: Path, staging: Path) -> None:
    """Put a copy of `source` at `target` in one rename: no reader meets half a file."""
    staged = staging / f"{target.name}.partial"
    shutil.copyfile(source, staged)
    os.replace(staged, target)


def apply_change(
    root: Path, pool: list[Path], rng: np.random.Generator, staging: Path
) -> dict[str, int]:
    """Add 1-3 photographs from `pool`, overwrite 1-2 files with other photographs from it
    (changed) and delete 1-2 files, seeded. Each photograph of `pool` is used once."""
    present = sorted(image_files(root))
    n_add, n_change, n_delete = (int(rng.integers(1, m + 1)) for m in (3, 2, 2))
    picked = rng.choice(len(present), n_change + n_delete, replace=False)
    changed, deleted = picked[:n_change], picked[n_change:]
    for i in deleted:
        (root / present[i]).unlink()
    for i in changed:
        replace_file(pool.pop(), root / present[i], staging)
    for _ in range(n_add):
        photo = pool.pop()
        replace_file(photo, root / photo.name, staging)
    return {"added": n_add, "changed": n_change, "deleted": n_delete}


# --- after each kill: a run to its end, and what was lost -----------------------------------


def recover(root: Path) -> dict[str, Any]:
    """Run `lookalike index` to its end and check that nothing was lost."""
    from lookalike.collection import Collection
    from lookalike.index.check import check_index

    t = time.perf_counter()
    done = lookalike("index", str(root), "--quiet", "--json")
    seconds = time.perf_counter() - t
    failed: set[str] = set()
    if done.returncode == 0:
        failed = {f["path"] for f in json.loads(done.stdout)["failed"]}
    disk = image_files(root)
    indexed = {path for _, path in Collection.open(root).images()}
    missing = sorted(disk - indexed - failed)
    not_first = not_found_first(root, sorted(disk & indexed), verify=0)
    damage = check_index(root / INDEX, full=True)
    return {
        "recovered": done.returncode == 0,
        "recovery_error": "" if done.returncode == 0 else last_line(done.stderr),
        "recovery_traceback": "Traceback" in done.stderr,
        "recovery_seconds": round(seconds, 1),
        "images": len(disk),
        "failed": sorted(failed),
        "missing": missing,
        "ghosts": sorted(indexed - disk),
        "not_found_first": not_first,
        "lost": len(missing) + len(not_first),
        "damage": [f"{d.part} {d.path.name}: {d.reason}" for d in damage],
    }


# --- the reader -----------------------------------------------------------------------------


class ReaderLog:
    """What the reader saw: searches by kind, every error (the first ones in full), the
    searches by id whose image was not first, and the races that are no error (a file
    deleted before the reader read it, an id no longer indexed)."""

    KEEP = 40

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []
        self.error_kinds: Counter[str] = Counter()
        self.wrong: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.generations: set[int] = set()

    def error(self, how: str, e: BaseException) -> None:
        self.counts["errors"] += 1
        self.times.append(time.time())
        message = str(e).splitlines()[0][:300] if str(e) else ""
        self.error_kinds[f"{type(e).__name__}: {message[:120]}"] += 1
        if len(self.errors) < self.KEEP:
            frames = traceback.extract_tb(e.__traceback__)
            where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[-4:]]
            self.errors.append(
                {"time": time.time(), "how": how, "type": type(e).__name__, "message": message,
                 "where": where}
            )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: self.counts[k] for k in ("searches", "by_file", "by_id", "fresh_opens")},
            "errors": self.counts["errors"],
            "error_kinds": dict(self.error_kinds),
            "error_samples": self.errors,
            "error_times": self.times,
            "not_first_by_id": self.counts["not_first"],
            "not_first_samples": self.wrong[: self.KEEP],
            "no_index_yet": self.counts["no_index_yet"],
            "file_gone_before_read": self.counts["file_gone"],
            "id_gone": self.counts["id_gone"],
            "generations_seen": len(self.generations),
        }


def reader_main(root_arg: str, out: str, stop: str) -> None:
    """Search the collection at `root_arg` until the file `stop` exists; write what was seen
    to `out` (JSON) every 20 searches and at the end."""
    import faiss
    import torch

    from lookalike.catalog import CatalogError
    from lookalike.collection import Collection

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    root = Path(root_arg)
    rng = np.random.default_rng(12345)
    log = ReaderLog()
    kept = Collection.open(root)  # as a server keeps it
    while not Path(stop).exists():
        fresh = log.counts["searches"] % 4 == 3
        by_id = bool(rng.random() < 0.5)
        how = f"{'id' if by_id else 'file'}, {'fresh' if fresh else 'kept'} collection"
        try:
            collection = Collection.open(root) if fresh else kept
            log.counts["fresh_opens"] += fresh
            verify = 0 if rng.random() < 0.5 else None
            if by_id:
                search_by_id(collection, rng, verify, log)
            else:
                search_by_file(collection, root, rng, verify, log)
            log.generations.add(collection.generation)
        except CatalogError as e:
            if "has no index yet" in str(e):
                log.counts["no_index_yet"] += 1
            else:
                log.error(how, e)
        except Exception as e:  # every other failure is a reader error, recorded
            log.error(how, e)
        log.counts["searches"] += 1
        if log.counts["searches"] % 20 == 0:
            Path(out).write_text(json.dumps(log.as_dict()))
    Path(out).write_text(json.dumps(log.as_dict()))


def search_by_id(
    collection: Any, rng: np.random.Generator, verify: int | None, log: ReaderLog
) -> None:
    images = collection.images()
    image_id, path = images[int(rng.integers(len(images)))]
    try:
        hits = collection.search(image_id, k=3, verify=verify)
    except KeyError:
        # published meanwhile without it (deleted): the clean answer, when it is so
        if image_id in dict(collection.open(collection.index_dir).images()):
            raise
        log.counts["id_gone"] += 1
        return
    log.counts["by_id"] += 1
    if not hits or hits[0].id != image_id:
        log.counts["not_first"] += 1
        first = hits[0].path if hits else None
        log.wrong.append({"time": time.time(), "path": path, "first": first})


def search_by_file(
    collection: Any, root: Path, rng: np.random.Generator, verify: int | None, log: ReaderLog
) -> None:
    names = sorted(n for n in os.listdir(root) if n.endswith(".jpg"))
    name = names[int(rng.integers(len(names)))]
    try:
        data = (root / name).read_bytes()
    except FileNotFoundError:  # deleted by a trial before the reader read it
        log.counts["file_gone"] += 1
        return
    collection.search(data, k=3, verify=verify)
    log.counts["by_file"] += 1


# --- the trials -----------------------------------------------------------------------------


def run_kills(work: Path, kills: int, seed: int = 0) -> dict[str, Any]:
    """`kills` index runs killed in `work` (a fresh folder), a reader searching throughout;
    returns the figures for results/safety.json."""
    inside, pool = split_photos(seed)
    pool = pool[::-1]  # popped from the end: the seeded order
    root = copy_collection(inside, work / "photos")
    staging = work / "staging"
    staging.mkdir()
    setup = index_once(root)
    durations = setup["stage_seconds"]

    stop, out = work / "reader.stop", work / "reader.json"
    reader = subprocess.Popen(
        [sys.executable, __file__, "reader", str(root), str(out), str(stop)],
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        trials = kill_trials(root, pool, staging, kills, seed, durations)
    finally:
        stop.touch()
        try:
            _, reader_err = reader.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            reader.kill()
            _, reader_err = reader.communicate()
    seen = json.loads(out.read_text()) if out.is_file() else {}
    if reader.returncode != 0:
        seen["crashed"] = last_line(reader_err)
    return summarise(root, setup, trials, seen, kills)


def kill_trials(
    root: Path,
    pool: list[Path],
    staging: Path,
    kills: int,
    seed: int,
    durations: dict[str, float],
) -> list[dict[str, Any]]:
    """Trials until `kills` index runs were killed while running (a kill that comes after
    the run did its work is not counted; at most 3 tries a kill)."""
    trials: list[dict[str, Any]] = []
    tries = 0
    while sum(t["killed"] for t in trials) < kills and tries < 3 * kills:
        rng = np.random.default_rng([seed, tries])
        target = STAGES[len([t for t in trials if t["killed"]]) % len(STAGES)]
        refit = target == "learn" or (target != "extract" and bool(rng.random() < 0.5))
        workers = 1 if tries % 3 == 2 else 0  # 0: a pool of processes, as the CLI's default
        started = time.time()
        change = apply_change(root, pool, rng, staging)
        killed = kill_during(root, target, rng, refit=refit, workers=workers, durations=durations)
        tries += 1
        outcome = recover(root)
        trials.append(
            {
                "try": tries,
                "target": target,
                "landed": killed.landed,
                "killed": killed.landed != "done",
                "refit": refit,
                "workers": workers,
                "killed_after_seconds": round(killed.seconds, 2),
                "orphaned_workers": killed.orphans,
                **change,
                **outcome,
                "window": [started, time.time()],
            }
        )
        print(
            f"  try {tries}: aimed at {target}, landed in {killed.landed}"
            f"{' (refit)' if refit else ''}; lost {outcome['lost']}, "
            f"damage {len(outcome['damage'])}",
            flush=True,
        )
    return trials


def index_once(root: Path) -> dict[str, Any]:
    """The first index of `root` (with `SETTINGS`, so its model is learned): its seconds and
    how long its learn, build and publish stages took (to aim the kills)."""
    from lookalike.collection import Collection

    Collection.create(root, settings=SETTINGS)
    t = time.perf_counter()
    child = start_child(root, workers=0, refit=False)
    lines = list(timed_lines(child))
    child.wait()
    if child.returncode != 0 or not lines or lines[-1][1] != "finished 0 0":
        raise RuntimeError(f"the first index run of {root} failed")
    return {
        "images": len(image_files(root)),
        "seconds": round(time.perf_counter() - t, 1),
        "stage_seconds": {k: round(v, 3) for k, v in stage_seconds(lines).items()},
    }


def summarise(
    root: Path, setup: dict[str, Any], trials: list[dict[str, Any]], seen: dict[str, Any],
    wanted: int,
) -> dict[str, Any]:  # fmt: skip
    """The figures of the kill trials, by the stage each kill landed in, and the final
    check of the collection (every image found first by the default search, `lookalike
    check` clean)."""
    killed = [t for t in trials if t["killed"]]
    times = seen.pop("error_times", [])

    def errors_in(stage: str) -> int:
        windows = [t["window"] for t in killed if t["landed"] == stage]
        return sum(any(a <= e <= b for a, b in windows) for e in times)

    by_stage = {
        stage: {
            "kills": len(of := [t for t in killed if t["landed"] == stage]),
            "with_refit": sum(t["refit"] for t in of),
            "lost": sum(t["lost"] for t in of),
            "recovery_failed": sum(not t["recovered"] for t in of),
            "damage_after_recovery": sum(bool(t["damage"]) for t in of),
            "reader_errors": errors_in(stage),
        }
        for stage in LANDED
        if any(t["landed"] == stage for t in killed)
    }
    checked = lookalike("check", str(root))
    final = sorted(image_files(root))
    return {
        "collection": f"{setup['images']} Holidays photographs indexed once in "
        f"{setup['seconds']} s, model learned",
        "kills_wanted": wanted,
        "kills": len(killed),
        "tries": len(trials),
        "too_late": len(trials) - len(killed),
        "kills_by_stage": {s: v["kills"] for s, v in by_stage.items()},
        "by_stage": by_stage,
        "changes": {k: sum(t[k] for t in trials) for k in ("added", "changed", "deleted")},
        "images_lost": sum(t["lost"] for t in trials),
        "recoveries_failed": sum(not t["recovered"] for t in trials),
        "recovery_tracebacks": sum(t["recovery_traceback"] for t in trials),
        "damage_after_recovery": sum(bool(t["damage"]) for t in trials),
        "orphaned_workers": sum(t["orphaned_workers"] for t in trials),
        "reader": seen,
        "final": {
            "images": len(final),
            "not_found_first": not_found_first(root, final),
            "check_exit": checked.returncode,
            "check_says": last_line(checked.stdout).replace(str(root), "FOLDER"),
        },
        "stage_seconds": setup["stage_seconds"],
        "trials": [{k: v for k, v in t.items() if k != "window"} for t in trials],
    }


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child_main(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")
    elif sys.argv[1] == "reader":
        reader_main(*sys.argv[2:5])
    else:
        raise SystemExit(f"unknown part {sys.argv[1]!r}: child or reader")
