"""Global classic descriptors (colour, texture, shape histograms) on hand-made images with
known answers, and on small photographs that ship with scikit-image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from lookalike.features.classic import (
    CLASSIC_DESCRIPTORS,
    ClassicSettings,
    colour_histogram,
    describe,
    edge_histogram,
    lbp_histogram,
    normalise_colour,
    uniform_lbp,
)


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (60, 80)) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (*size, 3)).copy()


def stripes(vertical: bool, period: int = 8, size: int = 128) -> np.ndarray:
    ramp = (np.arange(size) // (period // 2)) % 2 * 255
    grey = np.tile(ramp, (size, 1)) if vertical else np.tile(ramp[:, None], (1, size))
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def texture(name: str) -> np.ndarray:
    grey = getattr(data, name)()
    grey = grey if grey.ndim == 2 else cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[:256, :256, None], 3, axis=2)


@pytest.mark.parametrize(
    ("rgb", "hue_bin"),
    [((255, 0, 0), 0), ((0, 255, 0), 5), ((0, 0, 255), 11)],  # 16 bins of 22.5 degrees
)
def test_a_pure_colour_fills_one_cell(rgb: tuple[int, int, int], hue_bin: int) -> None:
    settings = ClassicSettings()
    h = colour_histogram(solid(rgb), settings)
    assert h.shape == (settings.dims("colour"),) and h.dtype == np.float32
    full_s, full_v = settings.saturation_bins - 1, settings.value_bins - 1
    cell = (hue_bin * settings.saturation_bins + full_s) * settings.value_bins + full_v
    expected = np.zeros_like(h)
    expected[cell] = 1.0
    np.testing.assert_allclose(h, expected)


def test_half_red_half_blue_splits_the_mass() -> None:
    image = np.concatenate([solid((255, 0, 0)), solid((0, 0, 255))], axis=1)
    h = colour_histogram(image)
    assert np.linalg.norm(h) == pytest.approx(1.0)
    np.testing.assert_allclose(np.sort(h)[-2:], [np.sqrt(0.5)] * 2, atol=1e-6)
    assert np.count_nonzero(h) == 2


def test_grey_world_removes_a_colour_cast() -> None:
    photo = data.astronaut()
    cast = np.clip(photo * np.array([1.0, 0.8, 0.55]), 0, 255).astype(np.uint8)
    fixed = normalise_colour(cast, "grey_world")
    means = fixed.reshape(-1, 3).mean(axis=0)
    assert np.ptp(means) < 2.0  # channel means equal, up to rounding and clipping
    plain, world = ClassicSettings(), ClassicSettings(colour_normalisation="grey_world")
    raw_match = colour_histogram(photo, plain) @ colour_histogram(cast, plain)
    fixed_match = colour_histogram(photo, world) @ colour_histogram(cast, world)
    assert fixed_match > raw_match + 0.1


def test_equalisation_undoes_underexposure() -> None:
    photo = data.coffee()
    dark = (photo * 0.35).astype(np.uint8)
    assert normalise_colour(dark, "equalise")[..., :].max() >= 250  # the range is stretched
    plain, equal = ClassicSettings(), ClassicSettings(colour_normalisation="equalise")
    raw_match = colour_histogram(photo, plain) @ colour_histogram(dark, plain)
    equal_match = colour_histogram(photo, equal) @ colour_histogram(dark, equal)
    assert equal_match > raw_match + 0.2


def test_normalisation_none_is_the_identity_and_unknown_is_refused() -> None:
    photo = data.astronaut()
    assert normalise_colour(photo, "none") is photo
    with pytest.raises(ValueError, match="grey_world"):
        normalise_colour(photo, "retinex")
    with pytest.raises(ValueError, match="colour normalisation"):
        ClassicSettings(colour_normalisation="retinex")


def turned(image: np.ndarray, degrees: float) -> np.ndarray:
    """`image` rotated about its centre, cropped to a middle part that stays inside it."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    c = h // 5
    return np.ascontiguousarray(cv2.warpAffine(image, matrix, (w, h))[c:-c, c:-c])


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_lbp_codes_are_scikit_images(radius: int) -> None:
    """The codes of `uniform_lbp` are scikit-image's definition, sampled faster: on real
    photographs and noise, nearly every pixel has the same code and the histograms agree
    within 0.5%."""
    from skimage.feature import local_binary_pattern

    noise = np.random.default_rng(3).integers(0, 256, (57, 91)).astype(np.uint8)
    for grey in (data.camera(), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY), noise):
        theirs = local_binary_pattern(grey, 8, radius, method="uniform").astype(np.int64)
        ours = uniform_lbp(grey, 8, radius)
        assert ours.shape == theirs.shape and ours.dtype == np.int64
        assert (ours != theirs).mean() < 0.005
        inner = (slice(radius, -radius), slice(radius, -radius))
        counts = [np.bincount(c[inner].ravel(), minlength=10) for c in (ours, theirs)]
        assert np.abs(counts[0] - counts[1]).sum() < 0.005 * counts[1].sum()


def test_lbp_is_rotation_invariant() -> None:
    bricks = texture("brick")
    h = lbp_histogram(bricks)
    assert h.shape == (ClassicSettings().dims("texture"),)
    assert np.linalg.norm(h) == pytest.approx(1.0, abs=1e-5)
    # a quarter turn moves every neighbour onto another: the same codes exactly
    assert float(h @ lbp_histogram(np.ascontiguousarray(np.rot90(bricks)))) > 0.9999


def test_lbp_finds_a_rotated_texture_among_others() -> None:
    names = ("brick", "grass", "gravel", "camera", "coins")
    # both sides resampled (10 and 40 degrees), so that the 30-degree turn is what differs
    stored = np.stack([lbp_histogram(turned(texture(n), 10)) for n in names])
    for i, name in enumerate(names):
        scores = stored @ lbp_histogram(turned(texture(name), 40))
        assert scores[i] > np.delete(scores, i).max() + 0.001, name


def test_lbp_of_a_flat_image_is_all_one_pattern() -> None:
    h = lbp_histogram(solid((90, 90, 90)), ClassicSettings(lbp_radii=(1,)))
    assert np.count_nonzero(h) == 1  # every pixel equals its neighbours: one uniform code


def test_hog_sees_edge_orientation() -> None:
    settings = ClassicSettings()
    vertical, horizontal = edge_histogram(stripes(True)), edge_histogram(stripes(False))
    assert vertical.shape == (settings.dims("shape"),)
    assert np.linalg.norm(vertical) == pytest.approx(1.0, abs=1e-5)
    # energy per orientation bin, summed over cells and blocks
    bins = settings.hog_orientations
    v_energy = (vertical**2).reshape(-1, bins).sum(axis=0)
    h_energy = (horizontal**2).reshape(-1, bins).sum(axis=0)
    assert v_energy.argmax() != h_energy.argmax()
    assert float(vertical @ horizontal) < 0.5
    # a quarter turn turns one into the other
    turned = edge_histogram(np.ascontiguousarray(np.rot90(stripes(True))))
    assert float(turned @ horizontal) > 0.99


def test_hog_of_a_blank_image_is_zero() -> None:
    assert not edge_histogram(solid((200, 10, 10))).any()


def test_describe_gives_every_descriptor_and_shrinks_big_images() -> None:
    photo = data.astronaut()
    big = cv2.resize(photo, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    small = describe(photo, CLASSIC_DESCRIPTORS, ClassicSettings(max_side=256))
    large = describe(big, CLASSIC_DESCRIPTORS, ClassicSettings(max_side=256))
    assert set(small) == set(CLASSIC_DESCRIPTORS)
    for name in CLASSIC_DESCRIPTORS:
        assert small[name].shape == (ClassicSettings().dims(name),)
        assert float(small[name] @ large[name]) > 0.95  # same picture at another size
    with pytest.raises(ValueError, match="colour, texture, shape"):
        describe(photo, ("sift",))
    with pytest.raises(ValueError, match="uint8"):
        describe(photo.astype(np.float32), ("colour",))
