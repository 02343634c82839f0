"""RootSIFT features (OpenCV SIFT) and the RootSIFT + ASMK benchmark path, on small photographs."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from lookalike.evaluate.datasets import RetrievalSet, groups
from lookalike.features.classic import SiftSettings, rootsift, rootsift_file
from lookalike.features.local import LocalFeatures

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _single_threaded_opencv() -> None:
    cv2.setNumThreads(1)


def mutual_matches(a: LocalFeatures, b: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Indices `(i, j)` of the mutual nearest neighbours between two descriptor sets."""
    sim = a.desc @ b.desc.T
    ab = sim.argmax(axis=1)
    ba = sim.argmax(axis=0)
    i = np.flatnonzero(ba[ab] == np.arange(len(a)))
    return i, ab[i]


def fraction_within(
    a: LocalFeatures,
    b: LocalFeatures,
    to_b: Callable[[np.ndarray], np.ndarray],
    pixels: float = 4.0,
) -> tuple[float, int]:
    """Fraction of mutual matches whose `a` position, mapped by `to_b`, is within `pixels` of
    the matched `b` position; and the number of mutual matches."""
    i, j = mutual_matches(a, b)
    err = np.linalg.norm(to_b(a.xy[i]) - b.xy[j], axis=1)
    return float(np.mean(err <= pixels)), len(i)


def half_size(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def test_rootsift_descriptors_are_unit_nonnegative_and_sorted() -> None:
    image = data.astronaut()
    feats = rootsift(image, SiftSettings(max_features=300))
    n = len(feats)
    assert 100 <= n <= 300
    assert feats.desc.shape == (n, 128) and feats.desc.dtype == np.float32
    assert feats.xy.shape == (n, 2) and feats.xy.dtype == np.float32
    assert feats.scale.dtype == np.float32 and feats.strength.dtype == np.float32
    assert (feats.desc >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(feats.desc, axis=1), 1.0, atol=1e-5)
    assert (np.diff(feats.strength) <= 0).all()
    assert (feats.scale > 0).all()
    h, w = image.shape[:2]
    assert (feats.xy >= -1).all() and (feats.xy[:, 0] <= w).all() and (feats.xy[:, 1] <= h).all()


def test_rootsift_squares_back_to_l1_normalised_sift() -> None:
    image = data.coffee()
    feats = rootsift(image, SiftSettings(max_features=50))
    # squaring RootSIFT gives the L1-normalised SIFT descriptor back
    np.testing.assert_allclose((feats.desc**2).sum(axis=1), 1.0, atol=1e-5)


def test_rotated_copy_matches_at_known_positions() -> None:
    image = data.coffee()  # (400, 600, 3)
    w = image.shape[1]
    settings = SiftSettings(max_features=500)
    original = rootsift(image, settings)
    rotated = rootsift(np.ascontiguousarray(np.rot90(image)), settings)

    def to_rotated(xy: np.ndarray) -> np.ndarray:
        # np.rot90 turns counter-clockwise: (x, y) -> (y, w - 1 - x)
        return np.stack([xy[:, 1], w - 1 - xy[:, 0]], axis=1)

    fraction, n = fraction_within(original, rotated, to_rotated)
    assert n >= 50
    assert fraction >= 0.5


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_half_size_copy_matches_through_internal_downscale(name: str) -> None:
    image = getattr(data, name)()
    small = half_size(image)
    # the original is shrunk internally to the half copy's size: xy must come back in its pixels
    settings = SiftSettings(max_features=500, max_side=max(small.shape[:2]))
    original = rootsift(image, settings)
    copy = rootsift(small, settings)
    assert len(original) > 0 and len(copy) > 0
    fy = small.shape[0] / image.shape[0]
    fx = small.shape[1] / image.shape[1]

    def to_small(xy: np.ndarray) -> np.ndarray:
        return (xy + 0.5) * np.array([fx, fy], dtype=np.float32) - 0.5

    fraction, n = fraction_within(original, copy, to_small, pixels=2.0)
    assert n >= 30
    assert fraction >= 0.5
    # and the internal downscale did happen: positions span the full-size image
    assert original.xy[:, 0].max() > small.shape[1]


def test_scale_is_in_input_pixels() -> None:
    image = data.astronaut()
    settings = SiftSettings(max_features=300, max_side=256)
    big = rootsift(image, settings)  # shrunk to 256 internally
    small = rootsift(half_size(image), settings)
    i, j = mutual_matches(big, small)
    ratio = np.median(big.scale[i] / small.scale[j])
    assert ratio == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_image_has_no_features(value: int) -> None:
    feats = rootsift(np.full((64, 80, 3), value, np.uint8))
    assert len(feats) == 0
    assert feats.xy.shape == (0, 2) and feats.scale.shape == (0,)
    assert feats.strength.shape == (0,) and feats.desc.shape == (0, 128)
    assert feats.desc.dtype == np.float32


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        rootsift(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        rootsift(np.zeros((32, 32, 3), np.float32))


def test_settings_validate_and_name_themselves() -> None:
    assert SiftSettings().key == "rootsift-n1000-r1024"
    with pytest.raises(ValueError, match="max_features"):
        SiftSettings(max_features=0)


def test_rootsift_file_positions_are_in_file_pixels(tmp_path: Path) -> None:
    image = data.astronaut()
    path = tmp_path / "a photo, é.png"
    Image.fromarray(image).save(path)
    settings = SiftSettings(max_features=300, max_side=256)
    from_file = rootsift_file(path, settings)  # decoded at 256, positions back in 512 px
    from_array = rootsift(image, settings)
    fraction, n = fraction_within(from_file, from_array, lambda xy: xy)
    assert n >= 50
    assert fraction >= 0.5
    assert from_file.xy[:, 0].max() > 256


# --- the RootSIFT + ASMK benchmark path ---------------------------------------------------


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "rootsift_benchmark", REPO / "benchmarks" / "rootsift.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three photographs, each with a rotated half-size copy, one folder per photograph, and a
    loose file that fails to load."""
    root = tmp_path_factory.mktemp("rootsift") / "tiny set"
    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea()}
    for name, image in photos.items():
        folder = root / f"{name}, é"
        folder.mkdir(parents=True)
        Image.fromarray(image).save(folder / "original.png")
        copy = half_size(np.ascontiguousarray(np.rot90(image)))
        Image.fromarray(copy).save(folder / "copy 1.png")
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_asmk_finds_each_copy_original(tiny_set: Path, bench: ModuleType) -> None:
    folders = sorted(p.name for p in tiny_set.iterdir() if p.is_dir())
    rset = RetrievalSet(
        name="tiny",
        root=tiny_set,
        images=tuple(
            sorted(
                [
                    "broken.jpg",
                    *(f"{f}/{n}" for f in folders for n in ("copy 1.png", "original.png")),
                ]
            )
        ),
        queries={f"{f}/copy 1.png": frozenset({f"{f}/original.png"}) for f in folders},
        junk={f"{f}/copy 1.png": frozenset({f"{f}/copy 1.png"}) for f in folders},
        rotations={},
        groups={},
    )
    result = bench.evaluate_rootsift(rset, codebook_size=32, workers=1, settings=SiftSettings())
    assert result["failed_images"] == 1
    assert result["queries"] == 3
    assert result["p_at_1"] == 1.0
    assert result["codebook_size"] == 32
    assert 0 < result["features_per_image"] <= 1000
    assert result["images_per_second"] > 0
    assert not result["whiten"]


def test_whitened_asmk_ranks_every_group_first(tiny_set: Path, bench: ModuleType) -> None:
    rset = groups(tiny_set)  # originals query their copies too; broken.jpg is a loose distractor
    assert len(rset.images) == 7 and len(rset.queries) == 6
    result = bench.evaluate_rootsift(
        rset,
        codebook_size=32,
        workers=1,
        settings=SiftSettings(),
        whiten=True,
    )
    assert result["failed_images"] == 1
    assert result["map"] == 1.0
