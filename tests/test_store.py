"""Feature shards and atomic folders: round trips in awkward folders, failures leave no damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.features import ImageFeatures, LocalFeatures
from lookalike.index.atomic import atomic_dir
from lookalike.index.store import existing_shards, open_shard, shard_path, write_shard

C, G = 8, 5
# float16 keeps 11 significant bits: relative error <= 2**-11 for values of order 1.
F16_TOL = dict(rtol=2**-10, atol=1e-4)


def image(rng: np.random.Generator, n: int) -> ImageFeatures:
    desc = rng.standard_normal((n, C)).astype(np.float32)
    desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    global_ = rng.standard_normal(G).astype(np.float32)
    return ImageFeatures(
        local=LocalFeatures(
            xy=rng.uniform(0, 566, (n, 2)).astype(np.float32),
            scale=rng.choice([1.0, 0.7071, 0.5], n).astype(np.float32),
            strength=rng.uniform(0, 30, n).astype(np.float32),
            desc=desc,
        ),
        global_=global_ / np.linalg.norm(global_),
    )


def images(seed: int, counts: list[int]) -> list[ImageFeatures]:
    rng = np.random.default_rng(seed)
    return [image(rng, n) for n in counts]


def assert_shard_holds(features_dir: Path, shard: int, expected: list[ImageFeatures]) -> None:
    data = open_shard(features_dir, shard)
    assert len(data) == len(expected)
    for row, feats in enumerate(expected):
        got = data.local(row)
        assert len(got) == len(feats.local)
        np.testing.assert_array_equal(got.xy, feats.local.xy)
        np.testing.assert_array_equal(got.scale, feats.local.scale)
        np.testing.assert_array_equal(got.strength, feats.local.strength)
        assert got.desc.shape == (len(feats.local), C)
        np.testing.assert_allclose(got.desc.astype(np.float32), feats.local.desc, **F16_TOL)
        np.testing.assert_allclose(data.global_[row].astype(np.float32), feats.global_, **F16_TOL)


@pytest.fixture
def features_dir(tmp_path: Path) -> Path:
    return tmp_path / "my collection, ünïcode" / "features"


def test_round_trip_with_an_image_without_local_features(features_dir: Path) -> None:
    feats = images(0, [4, 0, 3, 1])
    path = write_shard(features_dir, 7, feats, {"features": "lite0-s16-head-r566-n1000"})
    assert path == shard_path(features_dir, 7)
    assert path.name == "shard-000007"
    assert_shard_holds(features_dir, 7, feats)

    data = open_shard(features_dir, 7)
    np.testing.assert_array_equal(data.offsets, [0, 4, 4, 7, 8])
    assert data.desc.dtype == np.float16 and data.global_.dtype == np.float16
    assert data.global_.shape == (4, G)
    empty = data.local(1)
    assert empty.desc.shape == (0, C) and empty.xy.shape == (0, 2) and len(empty) == 0
    meta = json.loads((path / "meta.json").read_text())
    assert meta == {"features": "lite0-s16-head-r566-n1000", "images": 4}
    assert sorted(p.name for p in features_dir.iterdir()) == ["shard-000007"]


def test_round_trip_of_a_single_image_without_local_features(features_dir: Path) -> None:
    feats = images(1, [0])
    write_shard(features_dir, 0, feats, {})
    assert_shard_holds(features_dir, 0, feats)


def test_write_shard_needs_an_image(features_dir: Path) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        write_shard(features_dir, 0, [], {})
    assert existing_shards(features_dir) == []


def test_existing_shards(features_dir: Path) -> None:
    assert existing_shards(features_dir) == []  # the folder does not exist yet
    for shard in (12, 3, 7):
        write_shard(features_dir, shard, images(shard, [2]), {})
    # Names that only look like shards are ignored: temporaries, short numbers, files.
    (features_dir / ".shard-000005.tmp-123").mkdir()
    (features_dir / "shard-12").mkdir()
    (features_dir / "shard-0000001").mkdir()
    (features_dir / "notes.txt").write_text("not a shard")
    assert existing_shards(features_dir) == [3, 7, 12]


def test_writing_a_shard_twice_fails_without_damage(features_dir: Path) -> None:
    first = images(2, [3, 0, 2])
    write_shard(features_dir, 4, first, {"round": 1})
    with pytest.raises(OSError):
        write_shard(features_dir, 4, images(3, [5, 5]), {"round": 2})
    # Opened only now, so nothing was cached from before the failed write.
    assert_shard_holds(features_dir, 4, first)
    assert json.loads((shard_path(features_dir, 4) / "meta.json").read_text())["round"] == 1
    assert sorted(p.name for p in features_dir.iterdir()) == ["shard-000004"]


def test_missing_shard_raises_helpful_error(features_dir: Path) -> None:
    write_shard(features_dir, 1, images(4, [1]), {})
    with pytest.raises(FileNotFoundError) as info:
        open_shard(features_dir, 9)
    message = str(info.value)
    assert "shard-000009" in message
    assert "lookalike check --repair" in message


# --- atomic_dir ----------------------------------------------------------------------------


def test_atomic_dir_publishes_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out dir, é"
    with atomic_dir(final) as tmp:
        assert tmp != final and tmp.parent == final.parent
        (tmp / "a.txt").write_text("hello")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.npy").write_bytes(b"\x00\x01")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "hello"
    assert (final / "sub" / "b.npy").read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["out dir, é"]


def test_atomic_dir_leaves_nothing_when_body_raises(tmp_path: Path) -> None:
    final = tmp_path / "out dir, é"

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic_dir(final) as tmp:
        (tmp / "partial.txt").write_text("half")
        raise Boom
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_leaves_existing_final_untouched_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "published"
    final.mkdir()
    (final / "keep.txt").write_text("original")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "keep.txt").write_text("replacement")
        raise RuntimeError("stop")
    assert (final / "keep.txt").read_text() == "original"
    assert [p.name for p in tmp_path.iterdir()] == ["published"]


# --- a shard number reused after its folder was removed ------------------------------------


def test_rewritten_shard_number_is_read_afresh(features_dir: Path) -> None:
    write_shard(features_dir, 5, images(5, [2]), {})
    assert len(open_shard(features_dir, 5)) == 1
    shutil.rmtree(shard_path(features_dir, 5))
    second = images(6, [3, 1])
    write_shard(features_dir, 5, second, {})
    assert_shard_holds(features_dir, 5, second)
