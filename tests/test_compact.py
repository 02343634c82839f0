"""Compact local descriptors (`index.compact`): a product quantiser learned on real local
descriptors keeps them in a few bytes and gives back close approximations, deterministically,
and survives a round trip through its folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.features import Extractor, ImageFeatures, LocalFeatures
from lookalike.index.check import check_index
from lookalike.index.compact import MIN_SAMPLE, FeatureCodec
from lookalike.index.compaction import recover
from lookalike.index.layout import IndexLayout
from lookalike.index.store import ShardDamaged, open_shard, write_shard
from lookalike.settings import FeatureSettings, StoreSettings

# Copies whose geometry verification can follow (as in test_rerank: a mirror image it cannot).
VERIFIABLE = ("crop", "rotate", "rotate90", "rescale", "light", "noise", "jpeg")


@pytest.fixture(scope="module")
def descriptors() -> tuple[np.ndarray, np.ndarray]:
    """Raw local descriptors of two photographs (to learn on) and of a third (to code)."""
    extractor = Extractor(FeatureSettings(image_size=448, max_features=1000))
    learn = [extractor.extract(image).local.desc for image in (data.astronaut(), data.coffee())]
    held_out = extractor.extract(data.chelsea()).local.desc
    # repeated up to the size a fit needs (k-means does not mind)
    sample = np.resize(np.concatenate(learn), (MIN_SAMPLE, held_out.shape[1]))
    return np.asarray(sample, np.float32), np.asarray(held_out, np.float32)


def test_codes_are_bytes_and_decode_close_to_the_descriptors(
    descriptors: tuple[np.ndarray, np.ndarray],
) -> None:
    sample, held_out = descriptors
    codec = FeatureCodec.fit(sample, subspaces=16, iterations=8)
    assert codec.dim == held_out.shape[1] and codec.subspaces == 16
    codes = codec.encode(held_out)
    assert codes.shape == (len(held_out), 16) and codes.dtype == np.uint8
    approx = codec.decode(codes)
    assert approx.shape == held_out.shape and approx.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(approx, axis=1), 1.0, atol=1e-5)
    unit = held_out / np.linalg.norm(held_out, axis=1, keepdims=True)
    cosines = (approx * unit).sum(axis=1)
    # learned on two photographs only, on a third it never saw each descriptor comes back
    # close to itself (0.85 here) ...
    assert np.median(cosines) > 0.8
    # ... and nearer to itself than to the other descriptors, as matching needs
    nearest = (approx @ unit.T).argmax(axis=1)
    assert (nearest == np.arange(len(unit))).mean() > 0.5, (nearest == np.arange(len(unit))).mean()


def test_fitting_is_seeded_and_the_key_names_the_codec(
    descriptors: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    sample, held_out = descriptors
    first = FeatureCodec.fit(sample, subspaces=8, iterations=4, seed=3)
    again = FeatureCodec.fit(sample, subspaces=8, iterations=4, seed=3)
    other = FeatureCodec.fit(sample, subspaces=8, iterations=4, seed=4)
    assert first.key == again.key != other.key
    np.testing.assert_array_equal(first.encode(held_out), again.encode(held_out))
    first.save(tmp_path / "codec")
    loaded = FeatureCodec.load(tmp_path / "codec")
    assert loaded.key == first.key
    np.testing.assert_array_equal(
        loaded.decode(first.encode(held_out)), first.decode(first.encode(held_out))
    )


def test_a_centroid_decodes_to_itself_and_bad_input_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    codec = FeatureCodec(rng.normal(size=(4, 256, 3)).astype(np.float32))
    codes = rng.integers(0, 256, (10, 4)).astype(np.uint8)
    exact = np.concatenate([codec.centroids[j][codes[:, j]] for j in range(4)], axis=1)
    exact /= np.linalg.norm(exact, axis=1, keepdims=True)
    np.testing.assert_allclose(codec.decode(codes), exact, atol=1e-6)
    np.testing.assert_array_equal(codec.encode(exact * 7.0 / 7.0)[:, :], codec.encode(exact))
    assert codec.decode(np.zeros((0, 4), np.uint8)).shape == (0, 12)
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        codec.encode(np.zeros((3, 11), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        codec.decode(codes.astype(np.int64))
    with pytest.raises(ValueError, match="multiple of 5"):
        FeatureCodec.fit(np.zeros((MIN_SAMPLE, 12), np.float32), subspaces=5)
    with pytest.raises(ValueError, match="at least"):
        FeatureCodec.fit(np.zeros((10, 12), np.float32), subspaces=4)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "codec.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot be read"):
        FeatureCodec.load(tmp_path / "broken")


def _image(rng: np.random.Generator, n: int, dim: int) -> ImageFeatures:
    desc = rng.normal(size=(n, dim)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    local = LocalFeatures(
        xy=rng.uniform(0, 500, (n, 2)).astype(np.float32),
        scale=np.ones(n, np.float32),
        strength=np.sort(rng.uniform(0, 1, n))[::-1].astype(np.float32),
        desc=desc,
    )
    return ImageFeatures(local=local, global_=rng.normal(size=8).astype(np.float32))


def test_a_compact_shard_keeps_the_strongest_features_coded(tmp_path: Path) -> None:
    """Written with a codec, a shard keeps each image's `keep` strongest features and codes
    for descriptors (no `desc.npy`); read back, they are the codec's approximations, at the
    same places, and the shard names its codec. A shard whose codec is not the index's, or
    an index without its codec, is damaged."""
    rng = np.random.default_rng(1)
    dim = 12
    codec = FeatureCodec(rng.normal(size=(4, 256, 3)).astype(np.float32))
    index = tmp_path / "index, côté"
    codec.save(index / "codec")
    images = [_image(rng, n, dim) for n in (40, 7, 25)]
    folder = write_shard(index / "features", 1, images, {"settings": "x"}, codec=codec, keep=20)
    assert (folder / "codes.npy").is_file() and not (folder / "desc.npy").exists()
    assert json.loads((folder / "meta.json").read_text())["codec"] == codec.key
    shard = open_shard(index / "features", 1)
    assert shard.compact and len(shard) == 3
    for row, image in enumerate(images):
        kept = min(len(image.local), 20)
        local = shard.local(row)
        assert len(local) == kept
        # positions, scales and strengths kept in float16, read as float32
        assert local.xy.dtype == local.scale.dtype == local.strength.dtype == np.float32
        np.testing.assert_allclose(local.xy, image.local.xy[:kept], rtol=1e-3)
        np.testing.assert_allclose(local.strength, image.local.strength[:kept], rtol=1e-3)
        np.testing.assert_array_equal(local.scale, image.local.scale[:kept])
        expected = codec.decode(codec.encode(image.local.desc[:kept]))
        np.testing.assert_allclose(local.desc, expected, atol=1e-6)
        assert len(shard.local(row, limit=5)) == min(5, kept)
    assert shard.descriptors().shape == (20 + 7 + 20, dim)
    for name in ("xy", "scale", "strength"):
        assert np.load(folder / f"{name}.npy", mmap_mode="r").dtype == np.float16
    # written by another codec, or read without the index's codec: damaged, saying which
    other = FeatureCodec(rng.normal(size=(4, 256, 3)).astype(np.float32))
    write_shard(index / "features", 2, images, {}, codec=other, keep=20)
    with pytest.raises(ShardDamaged, match=other.key):
        open_shard(index / "features", 2)
    bare = tmp_path / "bare"
    write_shard(bare / "features", 1, images, {}, codec=codec)
    with pytest.raises(ShardDamaged, match="codec"):
        open_shard(bare / "features", 1)
    # without a codec, as before: every feature, raw
    raw = write_shard(index / "features", 3, images, {})
    assert (raw / "desc.npy").is_file() and not open_shard(index / "features", 3).compact
    assert np.load(raw / "xy.npy", mmap_mode="r").dtype == np.float32  # exact, as extracted
    # an image wider than float16 reaches (a 40 MP panorama): its shard keeps float32
    wide = _image(rng, 10, dim)
    wide.local.xy[:, 0] *= 200.0  # up to 100,000 px
    folder = write_shard(index / "features", 4, [wide], {}, codec=codec, keep=20)
    assert np.load(folder / "xy.npy", mmap_mode="r").dtype == np.float32
    np.testing.assert_array_equal(open_shard(index / "features", 4).local(0).xy, wide.local.xy)


def test_a_killed_compaction_is_finished_or_undone(tmp_path: Path) -> None:
    features = tmp_path / "features"
    (features / ".raw-shard-000001").mkdir(parents=True)  # killed before its copy moved in
    (features / "shard-000002").mkdir()
    (features / ".raw-shard-000002").mkdir()  # killed after: the copy is in place
    (features / ".compacting" / "shard-000003").mkdir(parents=True)
    recover(features)
    assert sorted(p.name for p in features.iterdir()) == ["shard-000001", "shard-000002"]


def test_the_demo_indexed_compact_finds_the_same_originals(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    """The demo index with compact features on: every shard is rewritten compact after its
    codes are made (the codec learned once), the local features take a fraction of their
    space, and the copies still find their originals first."""
    index = tmp_path / "index"
    shutil.copytree(demo_collection.index_dir, index)
    settings = replace(demo_collection.settings, store=StoreSettings(compact=True, keep=300))
    compact = Collection.create(demo.root, index=index, settings=settings)
    report = compact.index(workers=1)
    assert report.timings.get("compact", 0) > 0
    features = IndexLayout(index).features
    shards = sorted(features.glob("shard-*"))
    assert shards and all((s / "codes.npy").is_file() for s in shards)
    assert (index / "codec" / "codec.npz").is_file()
    before = sum(f.stat().st_size for f in demo_collection.index_dir.glob("features/**/*.npy"))
    after = sum(f.stat().st_size for f in features.glob("**/*.npy"))
    assert after < 0.25 * before, (after, before)
    copies = [c for c in demo.originals if c.startswith("copies/")]

    def photograph(path: str) -> str:
        return Path(path).stem.split("-")[0]

    def first_is_original(collection: Collection, copy: str) -> bool:
        """The copy's file searched with its own indexed image left out: an image of its
        photograph first (the original, or another copy of it: `moon-light` may hold more of
        `moon-noise`'s features than `moon` does)."""
        own = collection.id_of(copy)
        hits = collection.search(demo.root / copy, k=1, exclude=[] if own is None else [own])
        return photograph(hits[0].path) == photograph(copy)

    found = sum(first_is_original(compact, c) for c in copies)
    reference = sum(first_is_original(demo_collection, c) for c in copies)
    assert found >= 0.9 * len(copies) and found >= reference - 1, (found, reference, len(copies))

    def original_inliers(collection: Collection, copy: str) -> int:
        """The inliers verification finds between the copy's file and its original."""
        original = collection.id_of(demo.originals[copy])
        assert original is not None
        own = collection.id_of(copy)
        hits = collection.search(
            demo.root / copy, k=10, verify=10, exclude=[] if own is None else [own]
        )
        hit = next((h for h in hits if h.id == original), None)
        return 0 if hit is None or hit.inliers is None else hit.inliers

    # matching on decoded codes agrees with matching on the full features: a copy that
    # geometry can follow keeps most of its inliers with its original
    verifiable = [c for c in copies if Path(c).stem.split("-", 1)[1] in VERIFIABLE]
    pairs = [
        (original_inliers(demo_collection, c), original_inliers(compact, c)) for c in verifiable
    ]
    ratios = [small / full for full, small in pairs if full >= 20]
    assert len(ratios) >= 0.8 * len(pairs), pairs
    # (300 features kept against the 500 verification matches with: about 0.6 of the inliers)
    assert min(ratios) >= 0.3 and float(np.median(ratios)) >= 0.5, pairs
    again = compact.index(workers=1)  # nothing left to compact
    assert "compact" not in again.timings
    # a damaged codec: `check` names it and every compact shard; the next run repairs it
    codec_file = index / "codec" / "codec.npz"
    codec_file.write_bytes(codec_file.read_bytes()[:100])
    damages = check_index(index)
    assert {d.part for d in damages} == {"codec", "features"}
    assert sum(d.part == "features" for d in damages) == len(shards)
    compact.index(workers=1)
    assert check_index(index, full=True) == []
    assert sum(first_is_original(compact, c) for c in copies) >= 0.9 * len(copies)
