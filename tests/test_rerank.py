"""The second stage on real images: spatial verification, query expansion, region queries,
explanations and near-duplicate groups, on the demo collection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.images import image_size

pytestmark = pytest.mark.slow

# Copies whose geometry verification can follow (a mirror image it cannot, by design).
VERIFIABLE = ("crop", "rotate", "rotate90", "rescale", "light", "noise", "jpeg")


def _photo(path: str) -> str:
    return Path(path).stem.split("-")[0]


def _kind(path: str) -> str:
    return Path(path).stem.split("-", 1)[1]


def test_verification_confirms_copies_and_not_other_photographs(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """Each verifiable copy's original is verified with many inliers; no image of another
    photograph gets as many as the weakest true match."""
    true_counts, false_counts = [], []
    for copy, original in demo.originals.items():
        if _kind(copy) not in VERIFIABLE:
            continue
        hits = demo_collection.search(demo.root / copy, k=20, verify=20)
        by_path = {h.path: h for h in hits}
        assert original in by_path, copy
        true_counts.append(by_path[original].inliers)
        false_counts += [h.inliers or 0 for h in hits if _photo(h.path) != _photo(copy)]
    assert min(true_counts) >= 15, true_counts
    assert max(false_counts) < min(true_counts), (max(false_counts), min(true_counts))


def test_verification_and_expansion_keep_every_copy_first(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    for copy in demo.originals:
        for expand in (False, True):
            hits = demo_collection.search(demo.root / copy, k=3, verify=30, expand=expand)
            assert _photo(hits[0].path) == _photo(copy), (copy, expand, [h.path for h in hits])


def test_expansion_goes_around_an_excluded_image(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """A photograph searched with its own indexed copy excluded (as `lookalike eval` does), with
    query expansion: the copy, the first stage's best row, is neither verified, listed nor
    expanded from; the photograph's other copies come first."""
    original = next(o for c, o in demo.originals.items() if _kind(c) == "rescale")
    own = demo_collection.id_of(original)
    assert own is not None
    for expand in (False, True):
        hits = demo_collection.search(
            demo.root / original, k=5, verify=30, expand=expand, exclude=[own]
        )
        assert original not in [h.path for h in hits]
        assert all(_photo(h.path) == _photo(original) for h in hits[:3]), [h.path for h in hits]


def test_hits_carry_the_match(demo: DemoCollection, demo_collection: Collection) -> None:
    copy = next(c for c in demo.originals if _kind(c) == "rescale")
    original = demo.originals[copy]
    hits = demo_collection.search(demo.root / copy, k=5, verify=5)
    hit = next(h for h in hits if h.path == original)
    assert hit.match is not None and hit.box is not None
    data = hit.as_dict()
    assert data["inliers"] == hit.inliers > 0
    assert np.asarray(data["homography"]).shape == (3, 3)
    # the copy is the original at a different size: its frame maps onto the whole original
    width, height = image_size(demo.root / original)
    corners = np.asarray(data["box"])
    assert corners.shape == (4, 2)
    np.testing.assert_allclose(corners[0], [0, 0], atol=0.06 * width)
    np.testing.assert_allclose(corners[2], [width, height], atol=0.06 * width)
    unverified = demo_collection.search(demo.root / copy, k=5, verify=0)
    assert all(h.match is None and h.as_dict()["inliers"] is None for h in unverified)


def test_a_described_query_verifies_each_image_once_and_ranks_as_a_fresh_search(
    demo: DemoCollection, demo_collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lookalike.search.rerank as rerank

    copy = next(c for c in demo.originals if _kind(c) == "crop")
    described = demo_collection.describe(demo.root / copy)
    fused = {
        fuse: demo_collection.search(demo.root / copy, k=10, verify=10, fuse=fuse)
        for fuse in ((), ("colour", "texture"))
    }
    calls = []
    real = rerank.verify_pair
    monkeypatch.setattr(rerank, "verify_pair", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    for fuse, fresh in fused.items():
        again = demo_collection.search(described, k=10, verify=10, fuse=fuse)
        assert [(h.id, h.inliers) for h in again] == [(h.id, h.inliers) for h in fresh]
        np.testing.assert_allclose([h.score for h in again], [h.score for h in fresh], atol=1e-5)
    # each image was verified once, though both shortlists held it
    assert 10 <= len(calls) == len(described.memo) < 20


def test_a_description_searched_in_two_collections_verifies_each_collections_own_images(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    """A description's verification outcomes belong to the collection that made them: searched
    in another collection (also at generation 1, its rows other images), it ranks as a fresh
    search there."""
    copy = next(c for c in demo.originals if _kind(c) == "crop")
    other = tmp_path / "other"
    other.mkdir()
    # the originals in reverse name order under new names, so that rows are other images
    for i, original in enumerate(sorted(set(demo.originals.values()), reverse=True)):
        shutil.copy(demo.root / original, other / f"{i:02d}-{Path(original).name}")
    collection = Collection.create(other)
    collection.index(workers=1)
    assert collection.generation == demo_collection.generation
    described = demo_collection.describe(demo.root / copy)
    demo_collection.search(described, k=10, verify=10)
    fresh = collection.search(demo.root / copy, k=10, verify=10)
    again = collection.search(described, k=10, verify=10)
    assert [(h.path, h.inliers) for h in again] == [(h.path, h.inliers) for h in fresh]
    assert Path(again[0].path).name.endswith(Path(demo.originals[copy]).name)


def test_a_region_query_finds_its_photograph(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """A quarter of each original, cut out by `region`, finds that photograph first, and the
    matched box lands where the region lies in the original."""
    for original in sorted(set(demo.originals.values())):
        width, height = image_size(demo.root / original)
        region = (width * 0.25, height * 0.25, width * 0.5, height * 0.5)
        hits = demo_collection.search(demo.root / original, k=3, region=region)
        assert _photo(hits[0].path) == _photo(original), (original, [h.path for h in hits])
        on_itself = next((h for h in hits if h.path == original), None)
        if on_itself is not None and on_itself.box is not None:
            expected = [[0.25 * width, 0.25 * height], [0.75 * width, 0.75 * height]]
            np.testing.assert_allclose(on_itself.box[[0, 2]], expected, atol=0.08 * width)


def test_a_region_outside_the_image_is_an_error(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    with pytest.raises(ValueError, match="outside"):
        demo_collection.search(demo.root / demo.query, region=(10_000, 0, 10, 10))


def test_explain_writes_pictures_whose_inliers_match_the_json(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    out_dir = tmp_path / "why"
    copy = next(c for c in demo.originals if _kind(c) == "rotate")
    result = CliRunner().invoke(
        app,
        [
            "search",
            str(demo.root / copy),
            "--index",
            str(demo_collection.index_dir),
            "-k",
            "3",
            "--explain",
            str(out_dir),
            "--json",
        ],
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data = json.loads(result.stdout)
    assert len(data["explanations"]) == 3
    for hit, written in zip(data["hits"], data["explanations"], strict=True):
        picture = Image.open(written)
        assert picture.format == "PNG" and picture.height == 480
        assert picture.text["hit"] == hit["path"]
        assert int(picture.text["inliers"]) == hit["inliers"]
    assert data["hits"][0]["inliers"] > 0


def test_dedup_finds_planted_copies_and_none_among_distinct_images(
    demo: DemoCollection, tmp_path: Path
) -> None:
    distinct = Collection.create(demo.root / "originals", index=tmp_path / "distinct")
    distinct.index(workers=1)
    assert distinct.dedup() == []

    folder = tmp_path / "planted"
    folder.mkdir()
    originals = sorted(set(demo.originals.values()))[:3]
    planted: dict[str, set[str]] = {}
    for original in originals:
        members = [original] + [
            copy
            for copy in demo.originals
            if demo.originals[copy] == original and _kind(copy) in ("rescale", "light", "noise")
        ]
        for member in members:
            shutil.copyfile(demo.root / member, folder / Path(member).name)
        planted[_photo(original)] = {Path(m).name for m in members}
    photo = _photo(originals[0])
    shutil.copyfile(folder / Path(originals[0]).name, folder / f"{photo}-again.jpg")
    planted[photo].add(f"{photo}-again.jpg")
    assert all(len(m) >= 3 for m in planted.values())
    collection = Collection.create(folder)
    collection.index(workers=1)
    groups = collection.dedup()
    assert {_photo(g.paths[0]): set(g.paths) for g in groups} == planted
    for group in groups:
        assert group.kind == "near" and group.inliers is not None


def test_dedup_cli_reports_exact_copies(demo: DemoCollection, tmp_path: Path) -> None:
    folder = tmp_path / "exact"
    folder.mkdir()
    source = demo.root / demo.query
    for name in ("a.jpg", "b copy.jpg"):
        shutil.copyfile(source, folder / name)
    other = sorted(set(demo.originals.values()) - {demo.query})[0]
    shutil.copyfile(demo.root / other, folder / "other.jpg")
    result = CliRunner().invoke(app, ["dedup", str(folder), "--json", "-q"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data = json.loads(result.stdout)
    assert [(g["kind"], [i["path"] for i in g["images"]]) for g in data["groups"]] == [
        ("exact", ["a.jpg", "b copy.jpg"])
    ]
