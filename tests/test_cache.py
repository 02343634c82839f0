"""Cache folders stamped with the code that made them: kept while the code and precision are
the same, rebuilt otherwise, and nothing outside the cache folder is ever removed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lookalike
from lookalike.evaluate import cache
from lookalike.evaluate.cache import (
    STAMP_FILE,
    cache_root,
    code_key,
    code_stamp,
    fresh_cache_dir,
    source_hash,
)
from lookalike.evaluate.datasets import RetrievalSet
from lookalike.evaluate.run import cached_index_dir, default_index_dir


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder (with awkward characters), float32 arithmetic."""
    folder = tmp_path / "cache, dossier é"
    monkeypatch.setenv("LOOKALIKE_CACHE", str(folder))
    monkeypatch.setenv("LOOKALIKE_PRECISION", "float32")
    return folder


def _filled(folder: Path) -> Path:
    """`folder` made fresh, holding one computed file; returns that file."""
    data = fresh_cache_dir(folder) / "index part.bin"
    data.write_bytes(b"computed")
    return data


def test_cache_root_follows_the_environment_and_is_the_one_run_exports(root: Path) -> None:
    from lookalike.evaluate import run

    assert cache_root() == root
    assert run.cache_root is cache_root


def test_a_folder_with_the_current_stamp_is_kept(root: Path) -> None:
    folder = root / "indexes" / "holidays-1"
    data = _filled(folder)
    assert json.loads((folder / STAMP_FILE).read_text()) == code_stamp()
    assert code_stamp()["precision"] == "float32"

    assert fresh_cache_dir(folder) == folder
    assert data.read_bytes() == b"computed"


def test_another_precision_rebuilds_the_folder(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = root / "indexes" / "holidays-1"
    data = _filled(folder)
    float32_key = code_key()
    monkeypatch.setenv("LOOKALIKE_PRECISION", "bfloat16")
    assert code_key() != float32_key

    with caplog.at_level(logging.WARNING, logger="lookalike"):
        assert fresh_cache_dir(folder) == folder
    assert not data.exists()
    assert sorted(p.name for p in folder.iterdir()) == [STAMP_FILE]
    assert json.loads((folder / STAMP_FILE).read_text())["precision"] == "bfloat16"
    assert str(folder) in caplog.text
    assert "precision float32 vs bfloat16" in caplog.text


def test_other_source_rebuilds_the_folder(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = root / "bench-dedup" / "corel"
    data = _filled(folder)
    current = code_stamp()["source"]
    monkeypatch.setattr(cache, "_package_source_hash", lambda: "0123456789ab")

    with caplog.at_level(logging.WARNING, logger="lookalike"):
        fresh_cache_dir(folder)
    assert not data.exists()
    assert json.loads((folder / STAMP_FILE).read_text())["source"] == "0123456789ab"
    assert f"source {current} vs 0123456789ab" in caplog.text
    assert "version" not in caplog.text  # only what differed is named


@pytest.mark.parametrize("stamp", [None, "not json {", '["a list"]'])
def test_a_folder_without_a_readable_stamp_is_rebuilt(
    root: Path, stamp: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    folder = root / "indexes" / "old"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "catalog.sqlite").write_bytes(b"old")
    if stamp is not None:
        (folder / STAMP_FILE).write_text(stamp)

    with caplog.at_level(logging.WARNING, logger="lookalike"):
        fresh_cache_dir(folder)
    assert sorted(p.name for p in folder.iterdir()) == [STAMP_FILE]
    assert json.loads((folder / STAMP_FILE).read_text()) == code_stamp()
    assert "no code stamp" in caplog.text


def test_a_new_folder_is_created_with_its_stamp_and_no_warning(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lookalike"):
        folder = fresh_cache_dir(root / "a" / "b")
    assert sorted(p.name for p in folder.iterdir()) == [STAMP_FILE]
    assert caplog.text == ""


def test_folders_outside_the_cache_are_refused_and_kept(root: Path, tmp_path: Path) -> None:
    mine = tmp_path / "my index"
    mine.mkdir()
    (mine / "catalog.sqlite").write_bytes(b"mine")
    root.mkdir()
    (root / "inside").symlink_to(mine, target_is_directory=True)
    refused = [
        mine,  # a user's own --index folder
        root,  # the cache folder itself
        root / "indexes" / ".." / ".." / "my index",  # climbs out
        root / "inside",  # a link out of the cache
    ]
    for folder in refused:
        with pytest.raises(ValueError, match="not inside the cache folder"):
            fresh_cache_dir(folder)
    assert sorted(p.name for p in mine.iterdir()) == ["catalog.sqlite"]
    assert (mine / "catalog.sqlite").read_bytes() == b"mine"


def test_cached_index_dir_is_the_default_index_folder_made_fresh(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rset = RetrievalSet(
        name="tiny", root=tmp_path / "set", images=(), queries={}, junk={}, rotations={}, groups={}
    )
    folder = cached_index_dir(rset)
    assert folder == default_index_dir(rset)
    assert folder.parent == root / "indexes"
    data = folder / "catalog.sqlite"
    data.write_bytes(b"index")
    assert cached_index_dir(rset) == folder and data.exists()
    monkeypatch.setenv("LOOKALIKE_PRECISION", "bfloat16")
    assert cached_index_dir(rset) == folder and not data.exists()


def _write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def test_source_hash_follows_the_python_files_only(tmp_path: Path) -> None:
    files = {"a.py": "x = 1\n", "sub/b.py": "y = 2\n", "data.json": "{}"}
    base = source_hash(_write(tmp_path / "one", files))
    assert len(base) == 12 and int(base, 16) >= 0
    assert source_hash(_write(tmp_path / "same", files)) == base  # where it lies is no matter

    assert source_hash(_write(tmp_path / "edited", {**files, "a.py": "x = 2\n"})) != base
    assert source_hash(_write(tmp_path / "other data", {**files, "data.json": "[]"})) == base
    moved = {"b.py": files["a.py"], "sub/b.py": files["sub/b.py"]}
    assert source_hash(_write(tmp_path / "renamed", moved)) != base
    added = {**files, "sub/c.py": ""}
    assert source_hash(_write(tmp_path / "added", added)) != base


def test_code_key_is_the_same_in_another_process(root: Path) -> None:
    script = "from lookalike.evaluate.cache import code_key; print(code_key())"
    package = Path(lookalike.__file__).parent
    env = {**os.environ, "PYTHONPATH": str(package.parent)}  # this very lookalike
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == code_key()
    assert code_stamp()["source"] == source_hash(package)
