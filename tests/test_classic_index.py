"""Classic descriptors inside an index: stored at extraction, backfilled for images indexed
before, searched alone (`--mode colour|texture|shape`) and fused with the CNN scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.images import load_image
from lookalike.index.generation import Manifest
from lookalike.index.layout import IndexLayout
from lookalike.settings import CLASSIC_DESCRIPTORS, ClassicSettings, Settings


def _photo(path: str) -> str:
    return Path(path).stem.split("-")[0]


def _colourful(path: Path) -> bool:
    rgb = load_image(path).astype(np.int16)
    return float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()) > 8.0


def _generation(collection: Collection) -> Path:
    return IndexLayout(collection.index_dir).generations()[-1][1]


def test_a_generation_holds_one_matrix_per_descriptor(demo_collection: Collection) -> None:
    folder = _generation(demo_collection)
    manifest = Manifest.read(folder)
    assert manifest is not None and manifest.classic == ClassicSettings().key
    assert list(manifest.classic_descriptors) == sorted(CLASSIC_DESCRIPTORS)
    images = manifest.images
    for name in CLASSIC_DESCRIPTORS:
        matrix = np.load(folder / f"classic-{name}.npy")
        assert matrix.shape == (images, ClassicSettings().dims(name))
        np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("mode", "kinds"),
    [("colour", ("jpeg", "noise", "rescale")), ("texture", ("rotate90", "rescale", "jpeg"))],
)
def test_classic_modes_find_copies_that_keep_their_property(
    demo: DemoCollection, demo_collection: Collection, mode: str, kinds: tuple[str, ...]
) -> None:
    """Colour survives recompression, noise and rescaling (of colour photographs: grey ones all
    share one histogram); LBP texture survives quarter turns. Each such copy's best hit shows
    the same photograph."""
    copies = [
        c
        for c in demo.originals
        if Path(c).stem.split("-", 1)[1] in kinds
        and (mode != "colour" or _colourful(demo.root / demo.originals[c]))
    ]
    assert len(copies) >= 6
    for copy in copies:
        hits = demo_collection.search(demo.root / copy, k=2, mode=mode)
        best = next(h for h in hits if h.path != copy)
        assert _photo(best.path) == _photo(copy), (mode, copy, [h.path for h in hits])
        assert best.asmk_score is None and best.inliers is None  # no CNN, no second stage


def test_a_stored_query_and_its_file_give_the_same_colour_ranking(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    image_id = demo_collection.id_of(demo.query)
    assert image_id is not None
    by_id = demo_collection.search(image_id, k=5, mode="colour")
    by_file = demo_collection.search(demo.root / demo.query, k=5, mode="colour")
    assert [h.path for h in by_id] == [h.path for h in by_file]
    np.testing.assert_allclose([h.score for h in by_id], [h.score for h in by_file], atol=1e-5)


def test_fusion_adds_to_the_cnn_scores_without_losing_the_copies(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    query = demo.root / demo.query
    plain = demo_collection.search(query, k=5, verify=0)
    fused = demo_collection.search(query, k=5, verify=0, fuse=("colour", "texture"))
    assert _photo(fused[0].path) == _photo(demo.query)
    plain_scores = {h.path: h.score for h in plain}
    gained = [h.score - plain_scores[h.path] for h in fused if h.path in plain_scores]
    assert gained and all(0.0 <= g <= 0.25 + 1e-6 for g in gained)  # at most fuse_weight
    assert any(g > 0 for g in gained)


def test_backfill_describes_images_indexed_without_classic_descriptors(
    demo: DemoCollection, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(demo.root / "originals", folder)
    none = Settings(classic=ClassicSettings(descriptors=()))
    bare = Collection.create(folder, settings=none)
    bare.index(workers=1)
    assert not list((bare.index_dir / "classic").glob("*"))
    with pytest.raises(ValueError, match="no 'colour' descriptors"):
        bare.search(sorted(folder.glob("*.jpg"))[0], mode="colour")

    stages: list[str] = []
    described = Collection.create(folder, settings=Settings())
    report = described.index(workers=1, progress=lambda stage, done, total: stages.append(stage))
    assert "classic" in stages and report.added == []  # no image was extracted again
    matrix = np.load(_generation(described) / "classic-colour.npy")
    assert matrix.shape[0] == report.images and np.all(np.linalg.norm(matrix, axis=1) > 0.99)

    # the same descriptors as extraction writes: index a fresh copy with them from the start
    fresh_folder = tmp_path / "fresh"
    shutil.copytree(folder, fresh_folder, ignore=shutil.ignore_patterns(".lookalike"))
    fresh = Collection.create(fresh_folder)
    fresh.index(workers=1)
    np.testing.assert_allclose(
        np.load(_generation(fresh) / "classic-texture.npy"),
        np.load(_generation(described) / "classic-texture.npy"),
        atol=1e-6,
    )


def test_cli_fuse_checks_names_and_reports_them(demo_collection: Collection) -> None:
    root = demo_collection.root
    query = str(next(root.glob("originals/*.jpg")))
    bad = CliRunner().invoke(app, ["search", query, "--index", str(root), "--fuse", "sift"])
    assert bad.exit_code != 0 and "colour, texture, shape" in (bad.stdout + bad.stderr)
    ok = CliRunner().invoke(
        app, ["search", query, "--index", str(root), "--fuse", "colour", "--json", "-k", "3"]
    )
    assert ok.exit_code == 0, (ok.stdout, ok.stderr)
    data = json.loads(ok.stdout)
    assert data["fuse"] == ["colour"] and len(data["hits"]) == 3


def test_a_leftover_classic_folder_does_not_block_the_next_shard(
    demo: DemoCollection, tmp_path: Path
) -> None:
    """A run killed after writing a shard's classic descriptors but before the catalog named
    the shard leaves a folder whose number a later shard reuses."""
    from lookalike.index.classic_store import classic_shard
    from lookalike.index.store import existing_shards

    folder = tmp_path / "photos"
    originals = sorted((demo.root / "originals").glob("*.jpg"))
    folder.mkdir()
    for path in originals[:4]:
        shutil.copyfile(path, folder / path.name)
    collection = Collection.create(folder)
    collection.index(workers=1)
    features = IndexLayout(collection.index_dir).features
    next_shard = max(existing_shards(features)) + 1
    leftover = classic_shard(collection.index_dir, ClassicSettings(), next_shard)
    leftover.mkdir(parents=True)
    np.save(leftover / "colour.npy", np.zeros((1, 3), np.float32))  # the wrong shape, even
    shutil.copyfile(originals[4], folder / originals[4].name)
    report = collection.index(workers=1)
    assert report.added == [originals[4].name]
    matrix = np.load(_generation(collection) / "classic-colour.npy")
    assert matrix.shape[0] == 5 and np.all(np.linalg.norm(matrix, axis=1) > 0.99)
