"""RootSIFT inside an index (`lookalike index --sift`, `search --mode rootsift`): stored at
extraction, backfilled for images indexed before, encoded with their own codebook into their
own ASMK inverted file, and dropped again with `--no-sift`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.catalog import Catalog
from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.index import sift_store
from lookalike.index.generation import Manifest
from lookalike.index.layout import IndexLayout
from lookalike.settings import SiftSettings

pytestmark = pytest.mark.slow

# SIFT is invariant to these; a mirror image it is not, by design
KINDS = ("crop", "rotate", "rescale", "light", "noise", "jpeg")


def _photo(path: str) -> str:
    return Path(path).stem.split("-")[0]


def _subset(demo: DemoCollection, folder: Path) -> list[str]:
    """Four originals and their copies of `KINDS`, copied into `folder`; the copies' paths."""
    chosen = sorted(set(demo.originals.values()))[:4]
    copies = [
        c
        for c, original in demo.originals.items()
        if original in chosen and Path(c).stem.split("-", 1)[1] in KINDS
    ]
    for rel in sorted({*copies, *(demo.originals[c] for c in copies)}):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(demo.root / rel, folder / rel)
    return copies


def _stored(collection: Collection, rel: str) -> np.ndarray:
    with Catalog.open(collection.index_dir, readonly=True) as catalog:
        record = catalog.get(rel)
    assert record is not None and record.shard is not None
    return sift_store.read_sift(collection.index_dir, SiftSettings(), record.shard, record.row or 0)


def _index(*args: object) -> dict:
    result = CliRunner().invoke(app, ["index", *map(str, args), "--json", "--workers", "1"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_rootsift_mode_finds_copies_and_is_added_and_dropped_later(
    demo: DemoCollection, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    copies = _subset(demo, folder)
    _index(folder)
    plain = Collection.open(folder)
    with pytest.raises(ValueError, match="no RootSIFT features"):
        plain.search(folder / copies[0], mode="rootsift")

    report = _index(folder, "--sift")
    assert report["added"] == report["updated"] == 0  # only RootSIFT was computed
    collection = Collection.open(folder)
    assert collection.settings.sift.enabled  # kept for later runs
    info = collection.info()
    assert info["bytes"]["rootsift"] > 0
    _, generation = IndexLayout(collection.index_dir).generations()[-1]
    manifest = Manifest.read(generation)
    assert manifest is not None and manifest.sift == SiftSettings().key

    misses = []
    for copy in copies:
        hits = collection.search(folder / copy, k=3, mode="rootsift")
        if _photo(hits[0].path) != _photo(copy):
            misses.append((copy, [h.path for h in hits]))
        assert hits[0].match is None  # no second stage in this mode
    assert len(misses) <= len(copies) // 10, misses

    # a stored image searched by id ranks as its file does
    image_id = collection.id_of(copies[0])
    assert image_id is not None
    by_id = collection.search(image_id, k=5, mode="rootsift")
    by_file = collection.search(folder / copies[0], k=5, mode="rootsift")
    assert [h.id for h in by_id][:2] == [h.id for h in by_file][:2]

    # a described query carries its RootSIFT features
    described = collection.describe(folder / copies[0])
    assert described.classic["rootsift"].shape[1] == 128
    assert [h.id for h in collection.search(described, k=5, mode="rootsift")] == [
        h.id for h in by_file
    ]
    with pytest.raises(ValueError, match="fuse"):
        collection.search(described, mode="rootsift", fuse=("colour",))

    # fused into the CNN scores: the copies still find their photograph, and the scores move
    for copy in copies[:6]:
        fused = collection.search(folder / copy, k=3, fuse=("rootsift",), verify=0)
        plain = collection.search(folder / copy, k=3, verify=0)
        assert _photo(fused[0].path) == _photo(copy), [h.path for h in fused]
        assert fused[0].score > plain[0].score  # its own RootSIFT match adds to it

    # backfilled features are those extraction writes: index a fresh copy with RootSIFT on
    fresh_folder = tmp_path / "fresh"
    shutil.copytree(folder, fresh_folder, ignore=shutil.ignore_patterns(".lookalike"))
    _index(fresh_folder, "--sift")
    fresh = Collection.open(fresh_folder)
    for rel in copies[:3]:
        np.testing.assert_array_equal(_stored(collection, rel), _stored(fresh, rel))

    _index(folder, "--no-sift")
    dropped = Collection.open(folder)
    assert not dropped.settings.sift.enabled
    assert not list(IndexLayout(dropped.index_dir).sift_root.glob("*"))
    with pytest.raises(ValueError, match="no RootSIFT features"):
        dropped.search(folder / copies[0], mode="rootsift")
