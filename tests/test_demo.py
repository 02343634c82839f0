"""The demo collection: files, shapes, determinism and the transforms registry."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from lookalike import demo
from lookalike.demo import (
    CROP_AREA,
    DEFAULT_TRANSFORMS,
    MAX_SIDE,
    RESCALE_FACTOR,
    TRANSFORMS,
    DemoCollection,
    DemoScore,
    apply_transform,
    build_demo_collection,
    score_demo,
)

ALL_TRANSFORMS = tuple(TRANSFORMS)


def _size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    with Image.open(path) as image:
        assert image.mode == "RGB", path
        return image.height, image.width


def _expected_shape(transform: str, h: int, w: int) -> tuple[int, int]:
    if transform == "crop":
        side = math.sqrt(CROP_AREA)
        return round(h * side), round(w * side)
    if transform == "rescale":
        return round(h * RESCALE_FACTOR), round(w * RESCALE_FACTOR)
    if transform == "rotate90":
        return w, h
    return h, w


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> DemoCollection:
    """A collection with every registered transform."""
    return build_demo_collection(tmp_path_factory.mktemp("demo full"), transforms=ALL_TRANSFORMS)


def test_registry_names() -> None:
    assert set(TRANSFORMS) == {
        "crop", "rotate", "rotate90", "rescale", "light", "noise", "jpeg", "flip"
    }  # fmt: skip
    assert set(DEFAULT_TRANSFORMS) == {"crop", "rotate", "rescale", "light", "noise"}
    assert set(demo._TRANSFORM_HELP) == set(TRANSFORMS)


def test_files_and_counts(full: DemoCollection) -> None:
    root = full.root
    originals = sorted(set(full.originals.values()))
    assert len(originals) >= 8
    assert len(full.originals) == len(originals) * len(ALL_TRANSFORMS)
    jpgs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert len(jpgs) == len(originals) * (1 + len(ALL_TRANSFORMS))
    assert jpgs == full.images
    assert (root / "README.txt").is_file()
    assert "skimage" in (root / "README.txt").read_text(encoding="utf-8")
    assert full.query in full.originals
    for copy, original in full.originals.items():
        name = Path(original).stem
        assert original == f"originals/{name}.jpg"
        assert copy.startswith(f"copies/{name}-")
        assert (root / copy).is_file()


def test_originals_are_bounded_rgb(full: DemoCollection) -> None:
    for original in set(full.originals.values()):
        h, w = _size(full.root / original)
        assert max(h, w) <= MAX_SIDE
        assert min(h, w) >= 64


def test_copy_shapes_follow_their_transform(full: DemoCollection) -> None:
    for copy, original in full.originals.items():
        transform = Path(copy).stem.rsplit("-", 1)[1]
        h, w = _size(full.root / original)
        assert _size(full.root / copy) == _expected_shape(transform, h, w), copy


def test_same_seed_same_bytes_and_idempotent(tmp_path: Path) -> None:
    transforms = ("crop", "noise")
    a = build_demo_collection(tmp_path / "a", seed=3, transforms=transforms)
    b = build_demo_collection(tmp_path / "b, ünï", seed=3, transforms=transforms)
    assert a.originals == b.originals and a.query == b.query
    bytes_a = _tree_bytes(a.root)
    assert bytes_a == _tree_bytes(b.root)
    build_demo_collection(tmp_path / "a", seed=3, transforms=transforms)  # again, same folder
    assert _tree_bytes(a.root) == bytes_a
    c = build_demo_collection(tmp_path / "c", seed=4, transforms=transforms)
    bytes_c = _tree_bytes(c.root)
    changed = [k for k in bytes_a if k.startswith("copies/") and bytes_a[k] != bytes_c[k]]
    assert len(changed) == len(a.originals)  # crop offsets and noise both depend on the seed


def test_a_copy_does_not_depend_on_the_other_transforms(tmp_path: Path) -> None:
    one = build_demo_collection(tmp_path / "one", transforms=("noise",))
    two = build_demo_collection(tmp_path / "two", transforms=("crop", "noise"))
    for copy in one.originals:
        assert (one.root / copy).read_bytes() == (two.root / copy).read_bytes()


def test_unknown_transform_names_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="allowed: crop, rotate"):
        build_demo_collection(tmp_path, transforms=("crop", "blur"))
    assert not (tmp_path / "originals").exists()


def test_apply_transform_checks_shapes() -> None:
    rng = np.random.default_rng(0)
    image = np.random.default_rng(1).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    for name in TRANSFORMS:
        out = apply_transform(name, image, np.random.default_rng(0))
        assert out.dtype == np.uint8 and out.shape == (*_expected_shape(name, 37, 50), 3), name
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        apply_transform("crop", image[:, :, 0], rng)
    with pytest.raises(ValueError, match="uint8"):
        apply_transform("crop", image.astype(np.float32), rng)


class _Ranked:
    """A collection stand-in whose search returns fixed rankings (relative paths) per query."""

    def __init__(self, root: Path, rankings: dict[str, list[str]]) -> None:
        self.root, self.rankings, self.asked = root, rankings, []

    def search(self, query: Path, *, k: int) -> list[SimpleNamespace]:
        rel = query.relative_to(self.root).as_posix()
        self.asked.append((rel, k))
        return [SimpleNamespace(path=p) for p in self.rankings[rel][:k]]


def test_score_demo_counts_copies_that_find_their_own_photograph_first() -> None:
    root = Path("/nowhere/démo, photos")
    a, b = "originals/a.jpg", "originals/b.jpg"
    built = DemoCollection(
        root=root,
        originals={
            "copies/a-crop.jpg": a,
            "copies/a-noise.jpg": a,
            "copies/b-crop.jpg": b,
            "copies/b-noise.jpg": b,
            "copies/b-light.jpg": b,
        },
        query="copies/a-crop.jpg",
    )
    rankings = {
        "copies/a-crop.jpg": ["copies/a-crop.jpg", a, "copies/b-crop.jpg"],  # itself, then a
        "copies/a-noise.jpg": ["copies/a-crop.jpg", a, b],  # another copy of a, then a
        "copies/b-crop.jpg": [a, b],  # another photograph first
        "copies/b-noise.jpg": ["copies/b-crop.jpg", a, b],  # the original after another one
        "copies/b-light.jpg": ["copies/b-light.jpg"],  # nothing but itself
    }
    ranked = _Ranked(root, rankings)
    score = score_demo(ranked, built, k=3)  # type: ignore[arg-type]
    assert score == DemoScore(found=2, copies=5) and not score.passed
    assert sorted(ranked.asked) == sorted((copy, 3) for copy in built.originals)

    rankings["copies/a-noise.jpg"] = ["copies/a-noise.jpg", "copies/a-crop.jpg", a, b]
    assert score_demo(_Ranked(root, rankings), built, k=2) == DemoScore(found=1, copies=5)
    assert DemoScore(found=5, copies=5).passed
