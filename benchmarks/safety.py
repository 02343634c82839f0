"""Nothing lost: run the crash, disk-full, concurrency, hostile-input and fuzz tests and record
what they tried and what they found lost (each test fails if anything was).

    .venv/bin/python benchmarks/safety.py

Writes results/safety.json: SIGKILL trials by the stage they landed in, the kinds of bad input
in the hostile corpus, the fuzz cases, the readers searching during a write, and each test's
outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from common import REPO, machine, save_result

TESTS = ("tests/test_crash.py", "tests/test_hostile.py", "tests/test_fuzz.py")


def told(log: Path, what: str) -> dict:
    """The figures a test wrote to the log under `what`."""
    if log.is_file():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry.pop("what") == what:
                return dict(entry)
    return {}


def main() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    import test_fuzz
    import test_hostile

    junit = REPO / "benchmarks" / "results" / "safety-junit.xml"
    log = REPO / "benchmarks" / "results" / "safety-log.jsonl"
    log.unlink(missing_ok=True)
    t = time.perf_counter()
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    run = subprocess.run(
        [*pytest, *TESTS, f"--junitxml={junit}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "LOOKALIKE_SAFETY_LOG": str(log)},
    )
    seconds = time.perf_counter() - t
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        outcomes[case.get("name", "?")] = "failed" if failed else "skipped" if skipped else "passed"
    junit.unlink()
    crash, readers = told(log, "crash-trials"), told(log, "concurrent-readers")
    log.unlink(missing_ok=True)
    results = {
        "machine": machine(),
        "command": "python benchmarks/safety.py",
        "seconds": round(seconds, 1),
        "kill_trials": sum(crash["kills"].values()),
        "kills_by_stage": crash["kills"],
        "kill_tries": crash["tries"],
        "hostile_kinds": [f"{k.name} ({k.expect})" for k in test_hostile.KINDS],
        "fuzz_cases": test_fuzz.FUZZ_CASES,
        "concurrent_readers": readers["readers"],
        "searches_during_write": readers["searches"],
        "tests": outcomes,
        "all_passed": run.returncode == 0 and all(o == "passed" for o in outcomes.values()),
    }
    path = save_result("safety", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(f"-> {path}")
    if not results["all_passed"]:
        sys.stderr.write(run.stdout[-5000:])
        raise SystemExit("a safety test failed: something was lost or misreported")


if __name__ == "__main__":
    main()
