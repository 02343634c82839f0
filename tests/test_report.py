"""benchmarks/report.py writes the README's benchmark tables between its markers only."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _report() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # report imports its sibling `common`
    try:
        spec = importlib.util.spec_from_file_location("report", BENCHMARKS / "report.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


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
