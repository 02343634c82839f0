"""benchmarks/report.py writes the README's benchmark tables between its markers only."""

from __future__ import annotations

from types import ModuleType

import pytest

from conftest import BENCHMARKS, load_benchmark


def _report() -> ModuleType:
    return load_benchmark("report")


def test_the_block_between_the_markers_is_replaced_and_the_rest_kept() -> None:
    report = _report()
    start, end = report.README_START, report.README_END
    text = f"# Title\n\n{start}\nold table\n{end}\n\nprose after\n"
    out = report.with_block(text, ["| a | b |", "|---|---|"])
    assert out == f"# Title\n\n{start}\n| a | b |\n|---|---|\n{end}\n\nprose after\n"
    assert report.with_block(out, ["| a | b |", "|---|---|"]) == out  # idempotent


def test_a_readme_without_the_markers_is_an_error_not_a_silent_skip() -> None:
    report = _report()
    with pytest.raises(ValueError, match="needs the lines"):
        report.with_block("# Title\n\nno markers\n", ["x"])


def test_the_repository_readme_has_the_markers() -> None:
    report = _report()
    text = (BENCHMARKS.parent / "README.md").read_text()
    assert report.with_block(text, ["x"]).count(report.README_START) == 1
