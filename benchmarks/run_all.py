"""Run every benchmark of one code version, then regenerate BENCHMARKS.md (`make bench`).

    .venv/bin/python benchmarks/run_all.py [--quick] [--fresh] [--list] [--commit]

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

    @property
    def name(self) -> str:
        return self.label or " ".join([self.script, *self.args])


STEPS = (
    Step("tune.py", writes=("tune",)),
    Step("tune.py", ("--ablation",), ("tune",), adds="ablation"),
    Step("holidays.py", writes=("holidays",), quick=True),
    Step("corel.py", writes=("corel",), quick=True),
    Step("rerank.py", writes=("rerank",), quick=True),
    Step("dedup.py", writes=("dedup",), quick=True),
    Step("dedup_scale.py", writes=("dedup_scale",)),
    Step("verdict.py", writes=("verdict",)),
    Step("speed.py", writes=("speed",), quick=True),
    Step("robustness.py", ("--queries", "300", "--split", "test"), ("robustness",)),
    Step(
        "robustness.py",
        ("--queries", "300", "--split", "test", "--compact"),
        ("robustness-compact",),
    ),
    Step("compare.py", writes=("compare",)),
    Step("load.py", tuple(LOAD), ("load",), label="load.py (default)"),
    Step("load.py", (*LOAD, "--verify", "20"), ("load",), label="load.py --verify 20"),
    Step("load.py", (*LOAD, "--verify", "20", "--preset", "fast"), ("load",), label="load fast"),
    Step("scale_global.py", writes=("scale_global",)),
    Step("scale_asmk.py", writes=("scale_asmk",)),
    Step("scale_robustness.py", writes=("scale_robustness",)),
    Step("scale_search.py", writes=("scale_search",)),
    Step("safety.py", writes=("safety",)),
    Step("fingerprints.py", writes=("fingerprints",)),
    Step("fingerprints_scale.py", writes=("fingerprints_scale",)),
    Step("backbones.py", writes=("backbones",)),
    Step("ray_scaling.py", writes=("ray_scaling",)),
    *(Step("train.py", (e,), (f"train-{e}",)) for e in ("holidays", "transfer")),
    # issue 23's rows: from scratch at 30, 60 and 120 minutes, fingerprints at 20, 60 and 120
    Step("train.py", ("scratch", "--minutes", "120", "--snapshots", "30,60"), ("train-scratch",)),
    Step(
        "train.py",
        ("fingerprints", "--minutes", "120", "--snapshots", "20,60"),
        ("train-fingerprints",),
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


def commit_results(step: Step, key: str) -> None:
    """Commit what `step` wrote under benchmarks/results (and nothing else) to the checked-out
    branch; a step that changed no file commits nothing."""
    repo = HERE.parent
    results = str(HERE / "results")
    subprocess.run(["git", "add", "--", results], cwd=repo, check=True)
    staged = subprocess.run(["git", "diff", "--cached", "--quiet", "--", results], cwd=repo)
    if staged.returncode == 0:
        return
    message = f"benchmarks/results: {step.name} (src {key})"
    subprocess.run(["git", "commit", "-q", "-m", message, "--", results], cwd=repo, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the documented subset only")
    parser.add_argument("--fresh", action="store_true", help="run every step, done or not")
    parser.add_argument("--list", action="store_true", help="list the steps and stop")
    parser.add_argument(
        "--commit", action="store_true", help="git-commit benchmarks/results after each step"
    )
    args = parser.parse_args()
    key = code_key()
    steps = [s for s in STEPS if s.quick or not args.quick]
    for step in steps:
        done = not args.fresh and current(step, key)
        if args.list:
            print(f"{'done' if done else 'to run':7s} {step.name}")
            continue
        if done:
            print(f"== {step.name}: done by this code already", flush=True)
            continue
        print(f"== {step.name}", flush=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / step.script), *step.args], cwd=HERE, check=True)
        print(f"== {step.name}: {time.perf_counter() - t:.0f} s", flush=True)
        if args.commit:
            commit_results(step, key)
    if args.list:
        return
    if not args.quick:
        subprocess.run([sys.executable, str(HERE / "train.py"), "plot"], cwd=HERE, check=True)
    subprocess.run([sys.executable, str(HERE / "report.py")], cwd=HERE, check=True)


if __name__ == "__main__":
    main()
