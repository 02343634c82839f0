"""Searching around an indexed copy of the query (the official Holidays protocol, searched by
file): the copy changes no other hit's rank or score."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.search.pipeline import SearchResult

pytestmark = pytest.mark.slow

QUERIES = ("copies/camera-rotate.jpg", "copies/coffee-crop.jpg", "turned.png")
"""Queries searched from their files: a rotated copy, a crop, and a photograph turned a quarter
(second looks, which an indexed copy would make needless, are taken unless it is left out)."""


def _folder(demo: DemoCollection, root: Path, extra: dict[str, Path]) -> Path:
    """The demo's originals and every copy but the queries', plus `extra` (name -> file)."""
    names = {p: demo.root / p for p in demo.images if p not in QUERIES} | extra
    for target, source in names.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / target)
    return root


def _query_files(demo: DemoCollection, folder: Path) -> list[Path]:
    """The query files: the demo's, and the turned photograph written into `folder`."""
    folder.mkdir()
    turned = folder / "turned.png"
    with Image.open(demo.root / "originals/chelsea.jpg") as im:
        im.transpose(Image.Transpose.ROTATE_90).save(turned)
    return [turned if q == "turned.png" else demo.root / q for q in QUERIES]


def _ranked(result: SearchResult) -> list[tuple[str, float, int | None]]:
    return [(h.path, round(h.score, 5), h.inliers) for h in result]


def test_an_indexed_copy_of_the_query_changes_no_other_hit(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    bundle = demo_collection.index_dir / "model"  # one model for both: only the copy differs
    files = _query_files(demo, tmp_path / "queries")
    without = Collection.create(_folder(demo, tmp_path / "without", {}), model=bundle)
    without.index(workers=1)
    copies = {f"zz-copy-{i}{f.suffix}": f for i, f in enumerate(files)}  # indexed last
    with_copy = Collection.create(_folder(demo, tmp_path / "with", copies), model=bundle)
    with_copy.index(workers=1)
    for (name, path), query in zip(copies.items(), QUERIES, strict=True):
        copy_ids = with_copy.copies(path)
        assert [(i, name) for i, p in with_copy.images()[-len(copies) :] if p == name] == [
            (c, name) for c in copy_ids
        ]  # one copy, in the last rows: the others keep their rows (and tie order)
        plain = with_copy.search(path, k=30)
        assert plain[0].path == name  # the copy, left in, comes first
        expected = _ranked(without.search(path, k=30))
        others = [i for i, p in with_copy.images() if p in copies and p != name]
        around = _ranked(with_copy.search(path, k=30, exclude=[*copy_ids, *others]))
        assert around == expected, query
        assert _ranked(plain)[1:] != expected[:-1], "the copy left in changes the others' scores"
