"""How much fine detail a query holds: sharp photographs measure high, blurred copies low, and
a blurred query weighs colour in while a sharp one is searched as before."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from skimage import data

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.evaluate.robustness import Transform, apply
from lookalike.features.detail import BLURRED, SHARP, blurred_share, detail
from lookalike.images import load_image
from lookalike.settings import SearchSettings

PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")


def _blurred(image: np.ndarray, sigma_per_512: float) -> np.ndarray:
    sigma = sigma_per_512 * max(image.shape[:2]) / 512.0
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


@pytest.mark.parametrize("name", PHOTOGRAPHS)
def test_photographs_are_sharp_and_their_blurred_copies_are_not(name: str) -> None:
    image = np.asarray(getattr(data, name)())
    sharp = detail(image)
    assert sharp > 1.5 * SHARP, sharp
    values = [detail(_blurred(image, s)) for s in (1.0, 3.0, 5.0, 8.0)]
    assert values == sorted(values, reverse=True)  # more blur, less detail
    assert values[-1] < BLURRED * 1.5 and values[-2] < SHARP, values
    assert blurred_share(sharp) == 0.0 and blurred_share(values[-1]) > 0.5


def test_detail_ignores_contrast_and_size_and_is_zero_when_flat() -> None:
    image = np.asarray(data.astronaut())
    dim = (image.astype(np.float32) * 0.4 + 40).astype(np.uint8)
    assert detail(dim) == pytest.approx(detail(image), rel=0.1)
    big = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_AREA)
    assert detail(big) == pytest.approx(detail(image), rel=0.25)  # both read at 512
    assert detail(np.full((40, 60, 3), 128, np.uint8)) == 0.0
    assert detail(image[:, :, 0]) == pytest.approx(detail(np.repeat(image[:, :, :1], 3, 2)))
    with pytest.raises(ValueError, match="image"):
        detail(np.zeros((4, 4, 2), np.uint8))


def test_blurred_share_ramps_from_sharp_to_blurred() -> None:
    assert blurred_share(None) == 0.0
    assert blurred_share(SHARP) == 0.0 and blurred_share(1.0) == 0.0
    assert blurred_share(BLURRED) == 1.0 and blurred_share(0.0) == 1.0
    middle = float(np.sqrt(SHARP * BLURRED))  # halfway in log
    assert blurred_share(middle) == pytest.approx(0.5)
    shares = [blurred_share(v) for v in np.geomspace(SHARP, BLURRED, 7)]
    assert shares == sorted(shares)


def test_blurred_settings_are_checked() -> None:
    assert SearchSettings().blurred == ("colour",)
    assert SearchSettings(mode="asmk").blurred == ()
    assert SearchSettings(blurred_weight=0.0).blurred == ()
    with pytest.raises(ValueError, match="classic descriptors"):
        SearchSettings(blurred_fuse=("rootsift",))
    with pytest.raises(ValueError, match="blurred_weight"):
        SearchSettings(blurred_weight=-1.0)


@pytest.mark.slow
def test_a_heavily_blurred_query_finds_its_photograph_by_colour(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """Blurred at sigma 8 px per 512 (the robustness suite's harshest), the demo's colour
    photographs find an image of themselves first with colour weighed in, more often than
    without; sharp queries get exactly the hits they got before."""
    colourless = Collection.open(demo_collection.index_dir)
    search = replace(demo_collection.settings.search, blurred_weight=0.0)
    colourless.settings = replace(demo_collection.settings, search=search)
    rng = np.random.default_rng(0)
    found, found_without, colour_photographs = 0, 0, 0
    for original in sorted(set(demo.originals.values())):
        image = load_image(demo.root / original)
        photo = original.split("/")[-1].split(".")[0]
        sharp = demo_collection.search(image, k=10)
        assert [(h.id, h.score) for h in sharp] == [
            (h.id, h.score) for h in colourless.search(image, k=10)
        ]
        if np.allclose(image[..., 0], image[..., 1], atol=8):
            continue  # a grey photograph: colour tells little among the grey ones
        colour_photographs += 1
        copy = apply(image, Transform("blur", 5), rng)
        described = demo_collection.describe(copy)
        assert described.detail is not None and described.detail < SHARP
        found += photo in demo_collection.search(described, k=1)[0].path
        found_without += photo in colourless.search(described, k=1)[0].path
    assert colour_photographs >= 6
    assert found >= colour_photographs - 1, (found, colour_photographs)
    assert found >= found_without, (found, found_without)
