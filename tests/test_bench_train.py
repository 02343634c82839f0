"""benchmarks/train.py keeps what a run of the same code measured (it resumes) and drops what
other code measured, rather than stamping old figures with the current code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import load_benchmark
from lookalike.evaluate.cache import code_key


def test_scores_of_other_code_are_measured_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = load_benchmark("train")
    monkeypatch.setattr(sys.modules["common"], "RESULTS", tmp_path)
    scores = {"0/as_stored": {"asmk": 0.5}}
    path = tmp_path / "train-holidays.json"

    path.write_text(json.dumps({"scores": scores, "runs": {}, "code": {"key": "other-code"}}))
    assert train.Results("holidays", "cmd").data["scores"] == {}

    path.write_text(json.dumps({"scores": scores, "runs": {}, "code": {"key": code_key()}}))
    resumed = train.Results("holidays", "cmd")
    assert resumed.data["scores"] == scores
    measured = []
    assert resumed.measure("0/as_stored", lambda: measured.append(1)) == scores["0/as_stored"]
    assert not measured  # kept, not measured again
