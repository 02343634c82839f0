"""`lookalike check [--repair]`: every kind of damage to an index file is found and named, no
command answers it with a traceback, and the repair leaves an index where every image finds
itself."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.index.asmk_index import Vocabulary
from lookalike.index.atomic import CHECKSUMS
from lookalike.index.check import check_index, folder_problems
from lookalike.index.codes import encode_shard
from lookalike.index.generation import current_model
from lookalike.index.layout import IndexLayout, shard_numbers

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "camera")


@pytest.fixture(scope="module")
def indexed(demo: DemoCollection, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check") / "photos"
    root.mkdir()
    for name in PHOTOS:
        shutil.copyfile(demo.root / f"originals/{name}.jpg", root / f"{name}.jpg")
    Collection.create(root).index(workers=1, shard_size=2)
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path: Path) -> None:
    """The same size, other bytes in the middle (what only a checksum tells)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def _garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:16] = b"not an array!!!!"
    path.write_bytes(bytes(data))


def _delete(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def _largest(folder: Path, pattern: str) -> Path:
    """The largest file matching `pattern` anywhere under `folder`."""
    return max((p for p in folder.rglob(pattern) if p.is_file()), key=lambda p: p.stat().st_size)


def _catalog_page(index: Path) -> None:
    """Garble the header of a b-tree page of the catalog (SQLite's own check finds it)."""
    catalog = index / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    page = int.from_bytes(data[16:18], "big")  # the page size, from the file's header
    data[page : page + 12] = b"\xff" * 12  # the second page's header
    catalog.write_bytes(bytes(data))


def _unpublished_codes(index: Path) -> Path:
    """A file of the codes a run killed between encoding a shard and publishing leaves in
    `codes/` (once published, the generation holds them and `codes/` none)."""
    model = current_model(index)
    assert model is not None
    features = IndexLayout(index).features
    shard = shard_numbers(features)[0]
    return encode_shard(model, Vocabulary(model.codebook), features, shard) / "words.npy"


GEN = "gen-000001"
DAMAGE: dict[str, tuple[str, Callable[[Path], None]]] = {
    # name: (part check must name, what to do to the index folder)
    "shard deleted": ("features", lambda i: _delete(_first(i / "features", "shard-*"))),
    "shard truncated": (
        "features",
        lambda i: _truncate(_first(i / "features", "shard-*") / "desc.npy"),
    ),
    "shard garbled": (
        "features",
        lambda i: _garble(_first(i / "features", "shard-*") / "desc.npy"),
    ),
    "shard offsets garbled": (
        "features",
        lambda i: _garble_header(_first(i / "features", "shard-*") / "offsets.npy"),
    ),
    "codes truncated": ("codes", lambda i: _truncate(_unpublished_codes(i))),
    "model truncated": ("model", lambda i: _truncate(i / "model" / "codebook.npy")),
    "model deleted": ("model", lambda i: _delete(i / "model")),
    "model garbled": ("model", lambda i: _garble(i / "model" / "global_whitening.npz")),
    "global index truncated": (
        "generation",
        lambda i: _truncate(_largest(i / GEN, "global*")),
    ),
    "ids garbled": ("generation", lambda i: _garble_header(i / GEN / "ids.npy")),
    "image list deleted": ("generation", lambda i: _delete(i / GEN / "images-text.json")),
    "manifest deleted": ("generation", lambda i: _delete(i / GEN / "manifest.json")),
    "checksums garbled": ("generation", lambda i: (i / GEN / CHECKSUMS).write_text("{oops")),
    "asmk garbled": ("generation", lambda i: _garble(_largest(i / GEN / "asmk", "*"))),
    "similar vectors truncated": ("generation", lambda i: _truncate(i / GEN / "similar.npy")),
    "catalog page garbled": ("catalog", _catalog_page),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_each_damage_is_named_and_repaired(kind: str, indexed: Path, tmp_path: Path) -> None:
    part, damage = DAMAGE[kind]
    root = tmp_path / "photos"
    shutil.copytree(indexed, root)
    index = root / ".lookalike"
    assert check_index(index, full=True) == []
    damage(index)

    found = check_index(index, full=True)
    assert [d.part for d in found] == [part], found
    runner = CliRunner()
    checked = runner.invoke(app, ["check", str(root)])
    assert checked.exit_code == 1, checked.output
    assert "damaged" in checked.output and "--repair" in checked.output
    assert checked.exception is None or isinstance(checked.exception, SystemExit)

    # a search meets it with a message naming what is damaged, or is not hurt: no traceback
    searched = runner.invoke(app, ["search", str(root / "chelsea.jpg"), "--index", str(root)])
    assert searched.exception is None or isinstance(searched.exception, SystemExit), (
        searched.output,
        searched.exception,
    )
    if searched.exit_code != 0:
        assert "error:" in searched.output

    repaired = runner.invoke(app, ["check", str(root), "--repair", "--quiet"])
    assert repaired.exit_code == 0, (repaired.output, repaired.exception)
    assert "repaired" in repaired.output or "whole again" in repaired.output
    assert check_index(index, full=True) == []
    collection = Collection.open(root)
    assert sorted(p for _, p in collection.images()) == sorted(f"{n}.jpg" for n in PHOTOS)
    for name in PHOTOS:
        assert collection.search(root / f"{name}.jpg", k=1)[0].path == f"{name}.jpg"


def test_index_repairs_what_its_quick_check_finds(indexed: Path, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    shutil.copytree(indexed, root)
    index = root / ".lookalike"
    shard = _first(index / "features", "shard-*")
    _truncate(shard / "xy.npy")
    assert [d.part for d in check_index(index)] == ["features"]
    report = Collection.create(root).index(workers=1, shard_size=2)
    assert len(report.updated) == 2  # the two photos of the damaged shard, described again
    assert check_index(index, full=True) == []
    collection = Collection.open(root)
    for name in PHOTOS:
        assert collection.search(root / f"{name}.jpg", k=1)[0].path == f"{name}.jpg"


def test_folders_without_checksums_have_their_headers_read(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    np.save(folder / "a.npy", np.arange(1000, dtype=np.int64))
    assert folder_problems(folder) == []
    _truncate(folder / "a.npy")
    problems = folder_problems(folder)
    assert len(problems) == 1 and problems[0].startswith("a.npy cannot be read")


def test_check_of_a_folder_without_an_index_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 1 and "lookalike index" in result.output
    assert IndexLayout(tmp_path / ".lookalike").catalog.exists() is False


def test_shards_described_again_into_reused_numbers_get_fresh_codes(
    indexed: Path, tmp_path: Path
) -> None:
    """Every feature shard damaged (3 shards of 2 images): the repair describes the images
    again into new shards that reuse the numbers, grouped otherwise (3 a shard): the codes
    made for what those numbers held before must not be taken for theirs."""
    root = tmp_path / "photos"
    shutil.copytree(indexed, root)
    index = root / ".lookalike"
    for shard in sorted(IndexLayout(index).features.glob("shard-*")):
        _truncate(shard / "desc.npy")
    collection = Collection.open(root)
    collection.index(workers=1, shard_size=3)
    assert check_index(index, full=True) == []
    for name in PHOTOS:
        assert collection.search(root / f"{name}.jpg", k=1)[0].path == f"{name}.jpg"
