"""Run every benchmark of one code version, then regenerate BENCHMARKS.md (`make bench`).

    .venv/bin/python benchmarks/run_all.py [--quick] [--fresh] [--list] [--commit] [--stop-by HH:MM]

Every result file records the code it came from (`common.provenance`: commit, a hash of the
source of src/lookalike, precision). A step whose results already come from the code checked
out now is not run again, so a run that was stopped carries on where it was, and a run on a
later commit that changed nothing under src/ reuses what it measured; `--fresh` runs every
step. `--commit` commits benchmarks/results after every step, so that a run spread over
several sittings keeps what each finished step measured. BENCHMARKS.md then lists the commit
and source hash of every figure, and marks any result that comes from other code.

`--quick` runs a documented subset (about an hour on 2 cores): Holidays, Corel, re-ranking,
duplicates and speed. The whole run (tuning, robustness over 300 originals, the scale
benchmarks, the load test, the safety tests and the training experiments) takes most of a day
on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import load_result
from lookalike.evaluate.cache import code_key

HERE = Path(__file__).resolve().parent
LOAD = ["--clients", "16", "--seconds", "60", "--corrupt", "0.1", "--repeats", "3"]


@dataclass(frozen=True)
class Step:
    """One script run with `args`; it writes the results named `writes`."""

    script: str
    args: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    quick: bool = False
    label: str = ""
    adds: str = ""
    """A key the step adds to a result another step writes (the tuning's test-half ablation):
    the step is done when that key is there, from this code."""
    minutes: int = 30
    """About how long it runs on 2 cores (measured in earlier runs, on the Intel Xeon of
    2026-12-07 where there is one): `--stop-by` starts no step that
    would not finish in time."""

    @property
    def name(self) -> str:
        return self.label or " ".join([self.script, *self.args])


STEPS = (
    Step("tune.py", writes=("tune",), minutes=48),
    Step("tune.py", ("--ablation",), ("tune",), adds="ablation", minutes=10),
    Step("holidays.py", writes=("holidays",), quick=True, minutes=35),
    Step("corel.py", writes=("corel",), quick=True, minutes=21),
    Step("rerank.py", writes=("rerank",), quick=True, minutes=25),
    Step("dedup.py", writes=("dedup",), quick=True, minutes=50),
    Step("dedup_scale.py", writes=("dedup_scale",), minutes=35),
    Step("verdict.py", writes=("verdict",), minutes=10),
    Step("speed.py", writes=("speed",), quick=True, minutes=3),
    Step("robustness.py", ("--queries", "300", "--split", "test"), ("robustness",), minutes=90),
    Step(
        "robustness.py",
        ("--queries", "300", "--split", "test", "--compact"),
        ("robustness-compact",),
        minutes=90,
    ),
    Step("compare.py", writes=("compare",), minutes=40),
    Step("load.py", tuple(LOAD), ("load",), label="load.py (default)", minutes=6),
    Step("load.py", (*LOAD, "--verify", "20"), ("load",), label="load.py --verify 20", minutes=5),
    Step(
        "load.py",
        (*LOAD, "--verify", "20", "--preset", "fast"),
        ("load",),
        label="load fast",
        minutes=8,
    ),
    Step("scale_global.py", writes=("scale_global",), minutes=10),
    Step("scale_asmk.py", writes=("scale_asmk",), minutes=25),
    Step("scale_robustness.py", writes=("scale_robustness",), minutes=90),
    Step("scale_search.py", writes=("scale_search",), minutes=120),
    Step("safety.py", writes=("safety",), minutes=95),
    Step("fingerprints.py", writes=("fingerprints",), minutes=40),
    Step("fingerprints_scale.py", writes=("fingerprints_scale",), minutes=40),
    Step("backbones.py", writes=("backbones",), minutes=150),
    Step("ray_scaling.py", writes=("ray_scaling",), minutes=30),
    *(Step("train.py", (e,), (f"train-{e}",), minutes=60) for e in ("holidays", "transfer")),
    # issue 23's rows: from scratch at 30, 60 and 120 minutes, fingerprints at 20, 60 and 120
    Step(
        "train.py",
        ("scratch", "--minutes", "120", "--snapshots", "30,60"),
        ("train-scratch",),
        minutes=155,
    ),
    Step(
        "train.py",
        ("fingerprints", "--minutes", "120", "--snapshots", "20,60"),
        ("train-fingerprints",),
        minutes=155,
    ),
)


def current(step: Step, key: str) -> bool:
    """Whether every result `step` writes comes from the code checked out now, whole (not the
    partial results of a run that was stopped). A load configuration counts when its own run
    is in the load results."""
    for name in step.writes:
        result = load_result(name)
        if not result or result.get("code", {}).get("key") != key or result.get("partial"):
            return False
        if step.adds and step.adds not in result:
            return False
        if step.script == "load.py" and not any(
            run.get("command", "").endswith(" ".join(step.args)) for run in result["runs"].values()
        ):
            return False
    return True


def commit_results(step: Step, key: str, note: str = "") -> None:
    """Commit what `step` wrote under benchmarks/results (and nothing else) to the checked-out
    branch; a step that changed no file commits nothing."""
    repo = HERE.parent
    results = str(HERE / "results")
    subprocess.run(["git", "add", "--", results], cwd=repo, check=True)
    staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", results], cwd=repo)
    if staged.returncode == 0:
        return
    message = f"benchmarks/results: {step.name} (src {key}{', ' + note if note else ''})"
    subprocess.run(["git", "commit", "-q", "-m", message, "--", results], cwd=repo, check=True)


def _deadline(hhmm: str) -> float:
    """The next `hhmm` (UTC) from now, as a Unix time."""
    now = datetime.now(UTC)
    hour, minute = (int(x) for x in hhmm.split(":"))
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (at if at > now else at + timedelta(days=1)).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the documented subset only")
    parser.add_argument("--fresh", action="store_true", help="run every step, done or not")
    parser.add_argument("--list", action="store_true", help="list the steps and stop")
    parser.add_argument(
        "--stop-by",
        metavar="HH:MM",
        help="start no step that would not finish by then (UTC; its estimate in STEPS): a "
        "sitting that ends at a known time leaves no step half done",
    )
    parser.add_argument(
        "--commit", action="store_true", help="git-commit benchmarks/results after each step"
    )
    args = parser.parse_args()
    key = code_key()
    steps = [s for s in STEPS if s.quick or not args.quick]
    deadline = _deadline(args.stop_by) if args.stop_by else None
    left_out: list[str] = []
    failed: list[str] = []
    for step in steps:
        done = not args.fresh and current(step, key)
        if args.list:
            print(f"{'done' if done else 'to run':7s} {step.name}")
            continue
        if done:
            print(f"== {step.name}: done by this code already", flush=True)
            continue
        if deadline is not None and time.time() + step.minutes * 60 > deadline:
            print(f"== {step.name}: left for later (about {step.minutes} min)", flush=True)
            left_out.append(step.name)
            continue
        print(f"== {step.name}", flush=True)
        t = time.perf_counter()
        run = subprocess.run([sys.executable, str(HERE / step.script), *step.args], cwd=HERE)
        print(f"== {step.name}: {time.perf_counter() - t:.0f} s", flush=True)
        if run.returncode != 0:
            # the others still run: a sitting is not lost to one step
            print(f"== {step.name}: FAILED (exit {run.returncode})", flush=True)
            failed.append(step.name)
            if args.commit:  # what it measured before failing, marked partial: resumed later
                commit_results(step, key, note="failed, partial")
            continue
        if args.commit:
            commit_results(step, key)
    if args.list:
        return
    if failed:
        sys.exit(f"== failed: {', '.join(failed)}; BENCHMARKS.md unchanged")
    if left_out:
        print(f"== stopped by {args.stop_by}: {len(left_out)} steps left; BENCHMARKS.md unchanged")
        return
    if not args.quick:
        subprocess.run([sys.executable, str(HERE / "train.py"), "plot"], cwd=HERE, check=True)
    subprocess.run([sys.executable, str(HERE / "report.py")], cwd=HERE, check=True)


if __name__ == "__main__":
    main()
