"""The robustness suite's transforms, checked on synthetic images with known answers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.evaluate.datasets import RetrievalSet
from lookalike.evaluate.robustness import FAMILIES, LEVELS, Transform, apply, suite
from lookalike.evaluate.robustness_run import (
    METHODS,
    RobustnessResult,
    combine,
    plot_families,
    run_robustness,
)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def grey(value: int = 128, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    return np.full((*size, 3), value, np.uint8)


def pattern(size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """A smooth colour pattern with a sharp edge down the middle."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x * 255 // w, y * 255 // h, (x + y) * 127 // (h + w)], axis=2)
    image[:, w // 2 :, 2] = 255
    return image.astype(np.uint8)


def test_the_suite_has_five_levels_of_eight_families() -> None:
    transforms = suite()
    assert len(transforms) == 8 * LEVELS == 40
    assert {t.family for t in transforms} == set(FAMILIES)
    assert len({t.name for t in transforms}) == 40
    with pytest.raises(ValueError, match="allowed"):
        Transform("sepia", 1)
    with pytest.raises(ValueError, match="level"):
        Transform("blur", 6)


@pytest.mark.parametrize("level", range(1, LEVELS + 1))
def test_noise_has_the_stated_spread(level: int) -> None:
    t = Transform("noise", level)
    out = apply(grey(), t, rng())
    spread = (out.astype(np.float32) - 128).std()
    assert spread == pytest.approx(t.value, rel=0.08)  # clipping at 0/255 trims a little


def test_light_follows_gamma_and_gain() -> None:
    image = grey(128)
    means = [float(apply(image, Transform("light", level), rng()).mean()) for level in (1, 2)]
    assert means[0] > 128 > means[1]  # level 1 brightens, level 2 darkens
    expected = 0.45 * (128 / 255) ** 2.2 * 255
    harsh = apply(image, Transform("light", 5), rng())
    assert float(harsh.mean()) == pytest.approx(expected, abs=1)


@pytest.mark.parametrize("level", range(1, LEVELS + 1))
def test_scale_resizes_both_sides(level: int) -> None:
    t = Transform("scale", level)
    out = apply(pattern(), t, rng())
    assert out.shape == (round(120 * t.value), round(160 * t.value), 3)


def test_rotation_by_half_and_quarter_turns_matches_numpy() -> None:
    image = pattern((64, 96))
    half = apply(image, Transform("rotation", 5), rng())
    assert half.shape == image.shape
    diff = np.abs(half.astype(int) - np.rot90(image, 2).astype(int))
    assert np.median(diff) <= 1
    quarter = apply(image, Transform("rotation", 3), rng())
    assert quarter.shape == (96, 64, 3)  # the canvas turns with the picture
    assert np.median(np.abs(quarter.astype(int) - np.rot90(image).astype(int))) <= 1


def test_rotation_keeps_the_whole_picture() -> None:
    out = apply(grey(200), Transform("rotation", 2), rng())  # 45 degrees
    h, w = 120, 160
    side = np.sqrt(2) / 2 * (h + w)
    assert out.shape[:2] == (round(side), round(side))
    assert (out > 0).all(axis=2).sum() == pytest.approx(h * w, rel=0.03)  # every pixel kept


@pytest.mark.parametrize("level", range(1, LEVELS + 1))
def test_crop_keeps_a_window_of_the_stated_area(level: int) -> None:
    t = Transform("crop", level)
    image = pattern()
    out = apply(image, t, rng())
    assert out.shape[0] * out.shape[1] == pytest.approx(120 * 160 * t.value, rel=0.05)
    found = cv2.matchTemplate(image, out, cv2.TM_SQDIFF)
    y, x = np.unravel_index(int(found.argmin()), found.shape)
    window = image[y : y + out.shape[0], x : x + out.shape[1]]
    np.testing.assert_array_equal(window, out)  # an exact window of the original


def test_jpeg_loses_more_at_lower_quality() -> None:
    image = pattern()
    errors = [
        float(np.abs(apply(image, Transform("jpeg", level), rng()).astype(int) - image).mean())
        for level in range(1, LEVELS + 1)
    ]
    assert errors == sorted(errors) and errors[0] > 0


def test_blur_softens_the_edge_more_at_each_level() -> None:
    image = pattern()
    steps = []
    for level in range(1, LEVELS + 1):
        out = apply(image, Transform("blur", level), rng()).astype(int)
        steps.append(int(np.abs(np.diff(out[:, :, 2], axis=1)).max()))
    assert steps == sorted(steps, reverse=True) and steps[0] < 255


def test_perspective_shrinks_the_picture_inside_its_canvas() -> None:
    image = grey(200)
    covered = []
    for level in range(1, LEVELS + 1):
        out = apply(image, Transform("perspective", level), rng())
        assert out.shape == image.shape
        covered.append(float((out > 0).all(axis=2).mean()))
    assert covered == sorted(covered, reverse=True)
    assert 0.3 < covered[-1] < covered[0] < 0.95


def test_the_same_seed_gives_the_same_copy() -> None:
    image = pattern()
    for t in suite(("noise", "crop", "perspective")):
        a = apply(image, t, np.random.default_rng(7))
        b = apply(image, t, np.random.default_rng(7))
        np.testing.assert_array_equal(a, b)


def test_every_transform_returns_rgb_bytes() -> None:
    image = pattern()
    for t in suite():
        out = apply(image, t, rng())
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3, t.name
        assert t.describe()
    with pytest.raises(ValueError, match="uint8"):
        apply(image.astype(np.float32), Transform("blur", 1), rng())


def test_the_suite_finds_originals_with_every_method_and_plots_each_family(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    originals = sorted(set(demo.originals.values()))[:2]
    rset = RetrievalSet(
        name="demo",
        root=demo.root,
        images=tuple(demo.images),
        queries={o: frozenset(c for c, s in demo.originals.items() if s == o) for o in originals},
        junk={},
        rotations={},
        groups={},
    )
    result = run_robustness(
        rset,
        demo_collection,
        queries=None,
        families=("jpeg", "rotation"),
        peer_cache=tmp_path / "phash.npz",
    )
    available = tuple(m for m in METHODS if "rootsift" not in m)  # the demo index has none
    assert result.methods == available and result.queries == tuple(originals)
    assert len(result.transforms) == 10 and result.images == len(demo.images)
    for method in available:
        assert all(len(r) == 2 for r in result.ranks[method].values())
    # after a mild recompression every method has the original in its top 10, and lookalike
    # first (the demo's own copies of it are close rivals)
    assert result.recall("lookalike", "jpeg-1", 1) == 1.0
    for method in ("asmk", "global", "phash", "gem", "colour"):
        assert result.recall(method, "jpeg-1", 10) == 1.0, method
    # a half turn: lookalike's local features still find it; a perceptual hash cannot
    assert result.recall("lookalike", "rotation-5", 10) == 1.0
    assert result.recall("phash", "rotation-5", 1) < 1.0
    summary = result.as_dict()
    jpeg = [result.recall("lookalike", f"jpeg-{level}", 1) for level in range(1, LEVELS + 1)]
    assert summary["methods"]["lookalike"]["families"]["jpeg"]["r1"] == pytest.approx(np.mean(jpeg))
    assert (tmp_path / "phash.npz").is_file()

    written = plot_families(result, tmp_path / "plots")
    assert [p.name for p in written] == ["robustness-rotation.png", "robustness-jpeg.png"]
    for path in written:
        assert Image.open(path).format == "PNG"
    with pytest.raises(ValueError, match="unknown method"):
        run_robustness(rset, demo_collection, methods=("clip",))


def _result(queries: tuple[str, ...], ranks: dict[str, list[int]]) -> RobustnessResult:
    transforms = tuple(suite(("jpeg",)))[:1]
    return RobustnessResult(
        dataset="d",
        images=10,
        queries=queries,
        transforms=transforms,
        ranks={m: {transforms[0].name: r} for m, r in ranks.items()},
        seconds={**{m: 0.1 for m in ranks}, "describe": 0.5},
    )


def test_runs_combine_by_query_and_by_method() -> None:
    chunks = [
        _result(("a",), {"lookalike": [1]}),
        _result(("b", "c"), {"lookalike": [11, 1], "rootsift": [1, 2]}),
        _result(("a",), {"rootsift": [2], "lookalike": [5]}),  # 'a' by lookalike: first wins
        _result(("d",), {"gem": [1]}),
    ]
    both = combine(chunks, ["a", "b", "c"])
    assert both.queries == ("a", "b", "c") and both.methods == ("lookalike", "rootsift")
    assert both.ranks["lookalike"]["jpeg-1"] == [1, 11, 1]
    assert both.ranks["rootsift"]["jpeg-1"] == [2, 1, 2]
    assert both.recall("rootsift", "jpeg-1", 1) == pytest.approx(1 / 3)
    assert both.seconds["describe"] == 0.5
    assert combine(chunks, ["d"]).methods == ("gem",)
    with pytest.raises(ValueError, match="differ"):
        combine([*chunks, replace(chunks[0], images=11)], ["a"])
