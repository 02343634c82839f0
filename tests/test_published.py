"""ASMK codes are stored once (`index.published`): a shard's codes leave `codes/` once a
generation holding them is published, and the next build takes them from that generation, so
that an index holds one copy of them. What is taken must be exactly what encoding the stored
features gives; a shard whose number was reused for other features is encoded anew."""

from __future__ import annotations

import io
import json
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import write_tiny_folder
from lookalike.catalog import Catalog
from lookalike.collection import Collection
from lookalike.index import build
from lookalike.index.asmk_index import Vocabulary
from lookalike.index.asmk_shortlist import SHORTLIST, code_of
from lookalike.index.generation import (
    LoadedGeneration,
    generation_model,
    load_generation,
    stored_features,
)
from lookalike.index.layout import IndexLayout, shard_numbers
from lookalike.index.store import shard_uid
from lookalike.settings import IndexSettings, Settings


def _current(index_dir: Path) -> LoadedGeneration:
    _, folder = IndexLayout(index_dir).generations()[-1]
    manifest = json.loads((folder / "manifest.json").read_text())
    model = generation_model(index_dir, manifest["model_id"])
    assert model is not None
    return load_generation(folder, model)


def _assert_codes_are_the_encoded_features(index_dir: Path) -> None:
    """Every row's code in the current generation is what encoding its stored features gives,
    and `codes/` keeps no copy of them."""
    loaded = _current(index_dir)
    vocabulary = Vocabulary(loaded.model.codebook)
    with Catalog.open(index_dir, readonly=True) as catalog:
        records = {r.id: r for r in catalog.records("ok")}
    assert len(loaded.ids) == len(records)
    for row, image in enumerate(loaded.ids):
        local = stored_features(index_dir, records[int(image)]).local
        expected = vocabulary.encode(loaded.model.local_whitening.apply(local.desc))
        held = code_of(loaded.asmk, row)
        np.testing.assert_array_equal(held.words, expected.words)
        np.testing.assert_array_equal(held.residuals, expected.residuals)
    layout = IndexLayout(index_dir)
    assert not list(layout.codes_root.glob("*/shard-*")), "codes kept twice"
    shards = shard_numbers(layout.features)
    assert loaded.manifest.shard_uids == {str(s): shard_uid(layout.features, s) for s in shards}


def _add_photograph(root: Path, name: str, image: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    (root / name).write_bytes(buffer.getvalue())


@pytest.mark.parametrize("asmk", ["exact", SHORTLIST])
def test_codes_are_kept_once_and_taken_from_the_published_generation(
    tmp_path: Path, asmk: str
) -> None:
    root = write_tiny_folder(tmp_path / "photos")
    settings = Settings(index=IndexSettings(asmk="auto" if asmk == "exact" else asmk))
    collection = Collection.create(root, settings=settings)
    collection.index(workers=1)
    assert _current(collection.index_dir).manifest.asmk_index["kind"] != (
        "inverted" if asmk == SHORTLIST else SHORTLIST
    )
    _assert_codes_are_the_encoded_features(collection.index_dir)
    features = IndexLayout(collection.index_dir).features
    first = shard_numbers(features)

    _add_photograph(root, "camera.jpg", skimage.data.camera())
    with patch.object(build, "encode_shard", wraps=build.encode_shard) as encode:
        report = collection.index(workers=1)
    assert report.added == ["camera.jpg"] and report.generation == 2
    # only the new shard was encoded: the others' codes came from generation 1
    new = sorted(set(shard_numbers(features)) - set(first))
    assert [c.args[3] for c in encode.call_args_list] == new
    _assert_codes_are_the_encoded_features(collection.index_dir)

    # search by id reads its code from the generation: an exact copy comes first
    chelsea = collection.id_of("a.jpg")
    assert chelsea is not None
    hits = collection.search(chelsea, k=3)
    assert {h.path for h in hits[:2]} <= {"a.jpg", "b, c.jpg", "é.jpg"}, hits


def test_a_shard_with_other_features_under_its_number_is_encoded_again(tmp_path: Path) -> None:
    """The generation names each shard's codes by the shard's uid: a shard whose uid is not
    the one recorded (its number reused for other images by a repair) is encoded anew."""
    root = write_tiny_folder(tmp_path / "photos")
    collection = Collection.create(root)
    collection.index(workers=1)
    features = IndexLayout(collection.index_dir).features
    (shard,) = shard_numbers(features)
    meta_file = features / f"shard-{shard:06d}" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "uid": "another"}))

    _add_photograph(root, "camera.jpg", skimage.data.camera())
    with patch.object(build, "encode_shard", wraps=build.encode_shard) as encode:
        collection.index(workers=1)
    assert shard in [c.args[3] for c in encode.call_args_list]
    _assert_codes_are_the_encoded_features(collection.index_dir)


def _classic(index_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """The current generation's classic descriptors by image path."""
    _, folder = IndexLayout(index_dir).generations()[-1]
    manifest = json.loads((folder / "manifest.json").read_text())
    paths = json.loads((folder / "images-text.json").read_text())["paths"]
    return {
        name: {
            p: row for p, row in zip(paths, np.load(folder / f"classic-{name}.npy"), strict=True)
        }
        for name in manifest["classic_descriptors"]
    }


def test_classic_descriptors_are_kept_once_and_survive_a_damaged_generation(
    tmp_path: Path,
) -> None:
    root = write_tiny_folder(tmp_path / "photos")
    collection = Collection.create(root)
    collection.index(workers=1)
    layout = IndexLayout(collection.index_dir)
    assert not list(layout.classic_root.glob("*/shard-*")), "classic descriptors kept twice"
    first = _classic(collection.index_dir)
    assert first and all(len(rows) == 6 for rows in first.values())

    # a new image: the others' descriptors come from generation 1, not from their files
    _add_photograph(root, "camera.jpg", skimage.data.camera())
    report = collection.index(workers=1)
    assert "backfill" not in report.timings
    second = _classic(collection.index_dir)
    for name, rows in first.items():
        for path, row in rows.items():
            np.testing.assert_array_equal(second[name][path], row)
    assert not list(layout.classic_root.glob("*/shard-*"))

    # the published generation cut short: the next run deletes it, takes what generation 1
    # (kept for readers) holds, and describes (its file decoded again) and encodes again the
    # one image only generation 2 held; the index is whole and searchable
    _, folder = layout.generations()[-1]
    residuals = next(folder.glob("asmk*/residuals.npy"))
    residuals.write_bytes(residuals.read_bytes()[: residuals.stat().st_size // 2])
    with patch.object(build, "encode_shard", wraps=build.encode_shard) as encode:
        again = collection.index(workers=1)
    camera = collection.id_of("camera.jpg")
    with Catalog.open(collection.index_dir, readonly=True) as catalog:
        camera_shard = next(r.shard for r in catalog.records("ok") if r.id == camera)
    assert again.generation == 3 and [c.args[3] for c in encode.call_args_list] == [camera_shard]
    assert again.timings.get("backfill", 0) > 0
    third = _classic(collection.index_dir)
    for name, rows in second.items():
        for path, row in rows.items():
            np.testing.assert_allclose(third[name][path], row, atol=1e-6)
    _assert_codes_are_the_encoded_features(collection.index_dir)
    assert collection.search(root / "camera.jpg", k=1)[0].path == "camera.jpg"
