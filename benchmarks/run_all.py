"""Run every benchmark and regenerate BENCHMARKS.md (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["holidays.py", "corel.py", "rerank.py", "dedup.py", "robustness.py"]

if __name__ == "__main__":
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script)], cwd=HERE, check=True)
    subprocess.run([sys.executable, str(HERE / "report.py")], cwd=HERE, check=True)
