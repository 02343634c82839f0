"""One truth for what is searchable: a published generation carries its own list of its images,
so readers never meet a half-applied update, and an update stopped between changing the catalog
and publishing is published by the next run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import CatalogError
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.index import build
from lookalike.index.generation import IMAGES_TEXT, load_images
from lookalike.index.layout import IndexLayout
from lookalike.index.store import existing_shards

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "camera")


def _photos(demo: DemoCollection, root: Path) -> None:
    root.mkdir(parents=True)
    for name in PHOTOS:
        shutil.copyfile(demo.root / f"originals/{name}.jpg", root / f"{name}.jpg")


class Stopped(BaseException):
    """What the test's stand-in for a kill raises (not an Exception: nothing may catch it)."""


def _stop(*_: object, **__: object) -> None:
    raise Stopped


def _finds_itself(collection: Collection) -> None:
    """Every searchable image finds itself first, by id and (with its file there) by file."""
    for image_id, path in collection.images():
        assert collection.search(image_id, k=1)[0].id == image_id, path
        file = collection.root / path
        if file.exists():
            assert collection.search(file, k=1)[0].path == path


def test_an_update_stopped_before_publishing_is_published_by_the_next_run(
    demo: DemoCollection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "photos"
    _photos(demo, root)
    Collection.create(root).index(workers=1)
    (root / "coffee.jpg").unlink()
    shutil.copyfile(demo.root / "copies/moon-rotate.jpg", root / "moon.jpg")

    # stopped after the catalog took the removal and the new photo, before publishing
    monkeypatch.setattr(build, "build_generation", _stop)
    with pytest.raises(Stopped):
        Collection.create(root).index(workers=1)
    monkeypatch.undo()

    # meanwhile readers search the published generation as it was, without an error
    reader = Collection.open(root)
    assert reader.generation == 1
    assert not reader.info()["up_to_date"]
    assert sorted(p for _, p in reader.images()) == sorted(f"{n}.jpg" for n in PHOTOS)
    _finds_itself(reader)
    hits = reader.search(root / "chelsea.jpg", k=len(PHOTOS), verify=0)
    assert all(not h.path.startswith("<removed") for h in hits), [h.path for h in hits]

    # the next run sees that the catalog is ahead of the generation, and publishes it
    report = Collection.create(root).index(workers=1)
    assert report.generation == 2 and not report.added and not report.removed
    after = Collection.open(root)
    assert after.info()["up_to_date"]
    paths = {p for _, p in after.images()}
    assert "coffee.jpg" not in paths and "moon.jpg" in paths
    assert after.search(demo.root / "originals/moon.jpg", k=1)[0].path == "moon.jpg"
    _finds_itself(after)
    # and a run after that has nothing to do
    assert Collection.create(root).index(workers=1).generation == 2


def test_a_reader_keeps_its_generation_while_an_update_deletes_and_publishes(
    demo: DemoCollection, tmp_path: Path
) -> None:
    """A server opened on generation 1 searches the photo deleted from the folder until it
    takes the next generation; the shard that held it stays while the previous generation
    may still be read, and goes with the one after."""
    root = tmp_path / "photos"
    _photos(demo, root)
    Collection.create(root).index(workers=1, shard_size=1)  # one shard per photo
    reader = Collection.open(root)
    before = reader.snapshot()
    coffee = next(i for i, p in reader.images() if p == "coffee.jpg")
    shard = before.records[coffee].shard
    assert shard is not None

    (root / "coffee.jpg").unlink()
    assert Collection.create(root).index(workers=1, shard_size=1).generation == 2
    layout = IndexLayout(reader.index_dir)
    assert shard in existing_shards(layout.features)  # generation 1 may still be read
    # a search that took generation 1 before the update reads it to the end
    row = int(np.flatnonzero(before.loaded.ids == coffee)[0])
    assert len(before.stored.local(row, 50).xy) == 50
    # a new search takes generation 2, where the photo is no more
    assert reader.generation == 2
    assert all(p != "coffee.jpg" for _, p in reader.images())

    shutil.copyfile(demo.root / "originals/moon.jpg", root / "moon.jpg")
    assert Collection.create(root).index(workers=1, shard_size=1).generation == 3
    assert shard not in existing_shards(layout.features)
    _finds_itself(Collection.open(root))


def test_a_damaged_image_list_is_named_and_rebuilt_by_the_next_run(
    demo: DemoCollection, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    _photos(demo, root)
    Collection.create(root).index(workers=1)
    folder = IndexLayout(root / ".lookalike").generation(1)
    ids = np.load(folder / "ids.npy")
    assert sorted(r.path for r in load_images(folder, ids).values()) == sorted(
        f"{n}.jpg" for n in PHOTOS
    )
    (folder / IMAGES_TEXT).write_text('{"paths": ["a"')
    with pytest.raises(CatalogError, match=f"{IMAGES_TEXT} is missing or damaged"):
        Collection.open(root).search(root / "chelsea.jpg", k=1)
    assert Collection.create(root).index(workers=1).generation == 2
    _finds_itself(Collection.open(root))
