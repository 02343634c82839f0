"""A search reads one generation snapshot from start to end: a generation published between its
first stage and its re-ranking changes nothing in its hits, and the next search reads the new
one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
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
