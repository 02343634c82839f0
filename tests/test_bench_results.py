"""Benchmark results: benchmarks/train.py resumes what a run of the same code measured and
drops what other code measured; a script stopped half way leaves its result marked partial."""

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
    assert train.Results("train-holidays", "cmd").data["scores"] == {}

    path.write_text(json.dumps({"scores": scores, "runs": {}, "code": {"key": code_key()}}))
    resumed = train.Results("train-holidays", "cmd")
    assert resumed.data["scores"] == scores
    measured = []
    assert resumed.measure("0/as_stored", lambda: measured.append(1)) == scores["0/as_stored"]
    assert not measured  # kept, not measured again


def test_a_partial_result_is_not_a_finished_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script stopped half way leaves what it measured, marked partial: `run_all.py` runs
    it again; its final save drops the mark."""
    run_all = load_benchmark("run_all")
    common = sys.modules["common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(common, "provenance", lambda: {"key": code_key()})
    step = next(s for s in run_all.STEPS if s.script == "compare.py")

    common.save_result("compare", {"sets": {"holidays": {}}}, partial=True)
    assert json.loads((tmp_path / "compare.json").read_text())["partial"] is True
    assert not run_all.current(step, code_key())

    common.save_result("compare", {"sets": {"holidays": {}, "corel": {}}, "partial": True})
    assert "partial" not in json.loads((tmp_path / "compare.json").read_text())
    assert run_all.current(step, code_key())
