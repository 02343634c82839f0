"""A search reads one generation snapshot from start to end: a generation published between its
first stage and its re-ranking changes nothing in its hits, and the next search reads the new
one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.index.atomic import CHECKSUMS
from lookalike.index.generation import MANIFEST_FILE, MANIFEST_VERSION, Manifest
from lookalike.index.layout import IndexLayout, shard_numbers
from lookalike.search import pipeline


@pytest.fixture()
def small(demo: DemoCollection, tmp_path: Path) -> tuple[Collection, list[str]]:
    """A collection of a dozen demo images (names with a space and a comma), indexed."""
    root = tmp_path / "small, ünï"
    chosen = sorted(demo.images)[:12]
    for rel in chosen:
        target = root / rel.replace("/", " ")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(demo.root / rel, target)
    collection = Collection.create(root)
    collection.index(workers=1)
    paths = sorted(p for _, p in collection.images())
    return collection, paths


def test_a_search_keeps_its_snapshot_while_a_new_generation_lands(
    small: tuple[Collection, list[str]], demo: DemoCollection, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection, before = small
    root = collection.root
    first = collection.generation
    query = root / before[0]
    removed = before[1]
    added = "added one.jpg"
    real_rerank = pipeline.rerank
    landed: list[int] = []

    def publish_then_rerank(*args: Any, **kwargs: Any) -> Any:
        if not landed:  # between the first stage and the second: a writer publishes
            (root / removed).unlink()
            shutil.copy2(demo.root / sorted(demo.images)[-1], root / added)
            writer = Collection.open(root)
            landed.append(writer.index(workers=1).generation)
            # another reader of the same collection (a server thread) loads it meanwhile
            assert removed not in [p for _, p in collection.images()]
        return real_rerank(*args, **kwargs)

    monkeypatch.setattr(pipeline, "rerank", publish_then_rerank)
    result = collection.search(query, k=len(before), retry=False)
    assert landed and landed[0] > first  # the new generation was published mid-search
    assert result.generation == first
    paths = [h.path for h in result]
    assert sorted(paths) == before  # the old generation's images, with their own records
    assert paths[0] == before[0] and result[0].inliers is not None and result[0].inliers > 50
    assert all(h.size is not None and h.size[0] > 0 for h in result)

    again = collection.search(query, k=len(before) + 1, retry=False)
    assert again.generation == landed[0]
    now = sorted(h.path for h in again)
    assert added in now and removed not in now


def test_a_snapshot_is_taken_once_and_swapped_whole(small: tuple[Collection, list[str]]) -> None:
    collection, _ = small
    one = collection.snapshot()
    assert collection.snapshot() is one  # nothing new published: the same snapshot
    assert [p for _, p in one.images()] == [p for _, p in collection.images()]
    assert set(one.records) == {int(i) for i in one.loaded.ids}


@pytest.mark.parametrize("version", [1, 2])
def test_a_generation_of_another_manifest_version_is_built_again(
    small: tuple[Collection, list[str]], version: int
) -> None:
    """An older index's generation (an unversioned `global.json`, or a manifest of another
    version) is stale: the next run builds it again from the stored features, describing no
    image, and the search finds what it found before. A version 2 generation (no list of its
    images, no checksums) is searched meanwhile, its images read from the catalog."""
    collection, before = small
    query = collection.root / before[2]
    hits = [(h.path, round(h.score, 6)) for h in collection.search(query, k=5)]
    folder = IndexLayout(collection.index_dir).generation(collection.generation)
    manifest = Manifest.read(folder)
    assert manifest is not None and manifest.version == MANIFEST_VERSION
    values = json.loads((folder / MANIFEST_FILE).read_text())
    del values["catalog_state"]
    (folder / MANIFEST_FILE).write_text(json.dumps({**values, "version": version}))
    (folder / CHECKSUMS).unlink()
    if version == 2:
        old = Manifest.read(folder)
        assert old is not None and old.catalog_state is None
        reader = Collection.open(collection.root)
        assert [(h.path, round(h.score, 6)) for h in reader.search(query, k=5)] == hits
    else:
        assert Manifest.read(folder) is None
    layout = IndexLayout(collection.index_dir)
    shards = shard_numbers(layout.features)
    report = Collection.open(collection.root).index(workers=1)
    assert (report.added, report.updated, report.unchanged) == ([], [], len(before))
    assert shard_numbers(layout.features) == shards  # no image described again
    assert report.generation == manifest.generation + 1
    rebuilt = Manifest.read(layout.generation(report.generation))
    assert rebuilt is not None and rebuilt.images == len(before)
    again = Collection.open(collection.root)
    assert [(h.path, round(h.score, 6)) for h in again.search(query, k=5)] == hits
    assert again.index(workers=1).generation == report.generation  # now up to date
