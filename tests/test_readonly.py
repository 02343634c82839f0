"""Read-only use: an index on a read-only disk (or a folder this user may not write) is opened
read-only and searched; a read-only photo folder without `--index` says to pass `--index`.

As root, file modes do not stop writes, so the read-only place is a tmpfs remounted read-only;
as another user it is a folder whose write permission is taken away."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.demo import DemoCollection

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder the test fills, then makes read-only with `_freeze`."""
    place = tmp_path / "readonly"
    place.mkdir()
    mounted = False
    if os.geteuid() == 0:
        done = _mount("-t", "tmpfs", "-o", "size=256m", "tmpfs", str(place))
        if done.returncode != 0:
            pytest.skip(f"as root, a read-only place needs a tmpfs mount: {done.stderr.strip()}")
        mounted = True
    try:
        yield place
    finally:
        if mounted:
            assert subprocess.run(["umount", "-l", str(place)], check=False).returncode == 0
        else:
            for folder, _, _ in os.walk(place):
                os.chmod(folder, 0o755)


def _freeze(place: Path) -> None:
    """Make `place` read-only from now on."""
    if os.geteuid() == 0:
        done = _mount("-o", "remount,ro", str(place))
        assert done.returncode == 0, done.stderr
    else:
        for folder, _, files in os.walk(place):
            for name in files:
                os.chmod(Path(folder) / name, 0o444)
            os.chmod(folder, 0o555)
    assert not os.access(place, os.W_OK)


def test_an_index_on_a_read_only_disk_is_searched(demo: DemoCollection, read_only: Path) -> None:
    root = read_only / "photos"
    root.mkdir()
    for name in PHOTOS:
        shutil.copyfile(demo.root / f"originals/{name}.jpg", root / f"{name}.jpg")
    Collection.create(root).index(workers=1)
    _freeze(read_only)

    result = CliRunner().invoke(app, ["search", str(root / "coffee.jpg"), "--index", str(root)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "coffee.jpg" in result.output
    collection = Collection.open(root)
    for name in PHOTOS:
        assert collection.search(root / f"{name}.jpg", k=1)[0].path == f"{name}.jpg"
    info = CliRunner().invoke(app, ["info", str(root)])
    assert info.exit_code == 0 and "images" in info.output, info.output


def test_indexing_a_read_only_folder_says_to_pass_index(
    demo: DemoCollection, read_only: Path, tmp_path: Path
) -> None:
    root = read_only / "photos"
    root.mkdir()
    for name in PHOTOS[:2]:
        shutil.copyfile(demo.root / f"originals/{name}.jpg", root / f"{name}.jpg")
    _freeze(read_only)

    result = CliRunner().invoke(app, ["index", str(root), "--quiet"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "cannot make the index folder" in result.output and "--index" in result.output

    elsewhere = tmp_path / "index"
    result = CliRunner().invoke(app, ["index", str(root), "--index", str(elsewhere), "--quiet"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert Collection.open(elsewhere).search(root / "chelsea.jpg", k=1)[0].path == "chelsea.jpg"
