"""The benchmark sets end to end, with accuracy floors a few points under the measured figures
(BENCHMARKS.md): a drop below them is a bug, not noise. Needs $LOOKALIKE_DATA."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_dataset
from lookalike.evaluate import data_root, fingerprints, holidays
from lookalike.evaluate.run import evaluate

pytestmark = [pytest.mark.slow, pytest.mark.data]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))


def test_holidays_official_protocol_accuracy(tmp_path: Path) -> None:
    require_dataset(data_root() / "holidays")
    result = evaluate(holidays(), index_dir=tmp_path / "index", by_id=True)
    maps = {mode: rep.map for mode, rep in result.reports.items()}
    assert (result.images, result.protocol) == (811, "official, by id")
    assert all(rep.n_queries == 300 for rep in result.reports.values())
    assert maps["fused"] >= 0.89, maps
    assert maps["asmk"] >= 0.88, maps
    assert maps["global"] >= 0.83, maps
    assert all(r.reports["test"].n_queries == 150 for r in result.modes.values())
    # the data folder is only read: the index went to the temporary folder
    assert not (data_root() / "holidays" / ".lookalike").exists()

    # a sample of the queries searched from their files, as a user searches: the default search
    sample = evaluate(
        holidays(), modes=("lookalike",), index_dir=tmp_path / "index", max_queries=60
    )
    report = sample.reports["lookalike"]
    assert (sample.protocol, report.n_queries) == ("official", 60)
    assert report.map_inria >= 0.88 and report.map >= report.map_inria, report


def test_fingerprint_set_as_groups(tmp_path: Path) -> None:
    require_dataset(data_root() / "fingerprints")
    result = evaluate(fingerprints("fvc2000_db1"), modes=("global",), index_dir=tmp_path / "i")
    report = result.reports["global"]
    assert result.images == 80 and report.n_queries == 80
    assert 0.2 < report.map <= 1.0
