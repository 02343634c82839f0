"""Second looks at a query that verified nothing: positions read off a turned image come back
to the query's own pixels, and a photograph turned 135 degrees is verified through them."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.evaluate.robustness import Transform, apply
from lookalike.features import ImageFeatures, LocalFeatures
from lookalike.images import load_image
from lookalike.search.retry import read, second_looks, turned, unturn
from lookalike.settings import RerankSettings


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_unturn_brings_a_marked_pixel_back(turns: int) -> None:
    image = np.zeros((30, 50, 3), np.uint8)
    image[7, 41] = 255  # the pixel spanning x in [41, 42], y in [7, 8]
    turned_image = turned(image, turns)
    rows, cols = np.nonzero(turned_image[..., 0])
    centre = np.array([[cols[0] + 0.5, rows[0] + 0.5]], np.float32)
    np.testing.assert_allclose(unturn(centre, turns, (50, 30)), [[41.5, 7.5]])


def test_read_reports_positions_in_the_unturned_image() -> None:
    """A fake extractor that puts one feature on the brightest pixel of what it is given: each
    look reports that pixel where it lies in the query, coarse or turned."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[10, 52] = 255
    seen: list[tuple[float, ...] | None] = []

    def extract(pixels: np.ndarray, scales: tuple[float, ...] | None) -> ImageFeatures:
        seen.append(scales)
        y, x = np.unravel_index(int(np.argmax(pixels[..., 0])), pixels.shape[:2])
        one = np.ones(1, np.float32)
        local = LocalFeatures(np.array([[x + 0.5, y + 0.5]], np.float32), one, one, one[None])
        return ImageFeatures(local, one)

    looks = second_looks((1.0, 0.5))
    assert [look.name for look in looks] == ["coarse", "turn1", "turn3", "turn2"]
    for look in looks:
        np.testing.assert_allclose(read(extract, image, look).local.xy, [[52.5, 10.5]])
    assert seen == [(0.5, 0.25), None, None, None]


def _rotation(image: np.ndarray, degrees: float) -> np.ndarray:
    """The (2, 3) map from `image`'s pixels to those of `Transform('rotation', ...)`'s copy
    (same construction: about the centre, on a canvas that holds it all)."""
    height, width = image.shape[:2]
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    matrix[0, 2] += (round(height * sin + width * cos) - 1) / 2.0 - centre[0]
    matrix[1, 2] += (round(height * cos + width * sin) - 1) / 2.0 - centre[1]
    return matrix


@pytest.mark.slow
def test_a_photograph_turned_135_degrees_is_verified_by_a_second_look(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """Turned 135 degrees, nearly every demo photograph's best hit is a verified image of it,
    at least three more than without second looks; a second look is kept only when it
    verifies more inliers than the plain one; and the points a second look matched on the
    original lie where the known rotation puts them."""
    rng = np.random.default_rng(0)
    min_inliers = demo_collection.settings.rerank.min_inliers
    photographs = sorted(set(demo.originals.values()))
    verified, verified_plain = [], []
    for original in photographs:
        image = load_image(demo.root / original)
        copy = apply(image, Transform("rotation", 4), rng)
        plain = demo_collection.search(copy, k=10, retry=False)
        hits = demo_collection.search(copy, k=10)
        assert max(h.inliers or 0 for h in hits) >= max(h.inliers or 0 for h in plain)
        photo = original.split("/")[-1].split(".")[0]
        if photo in hits[0].path and (hits[0].inliers or 0) >= min_inliers:
            verified.append(original)
        if photo in plain[0].path and (plain[0].inliers or 0) >= min_inliers:
            verified_plain.append(original)
            continue
        match = next((h.match for h in hits if h.path == original), None)
        if match is not None and match.inliers >= min_inliers:
            back = cv2.invertAffineTransform(_rotation(image, 135.0))
            expected = match.query_xy.astype(np.float64) @ back[:, :2].T + back[:, 2]
            error = np.median(np.linalg.norm(expected - match.image_xy, axis=1))
            assert error < 0.05 * max(image.shape[:2]), (original, error)
    assert len(verified) >= len(photographs) - 2, sorted(set(photographs) - set(verified))
    assert len(verified) >= len(verified_plain) + 3, (verified, verified_plain)


@pytest.mark.slow
def test_a_query_that_matches_nothing_is_looked_at_every_way_and_stays_unverified(
    demo_collection: Collection,
) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    described = demo_collection.describe(noise)
    hits = demo_collection.search(described, k=5)
    assert len(hits) == 5
    assert all((h.inliers or 0) < demo_collection.settings.rerank.min_inliers for h in hits)
    assert sorted(described.looks) == ["coarse", "turn1", "turn2", "turn3"]
    again = demo_collection.search(described, k=5, retry=False)
    assert [h.id for h in again] == [h.id for h in hits]


@pytest.mark.slow
def test_looks_are_taken_below_retry_below_and_each_verifies_retry_verify_images(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """A query with a sure match (at least `retry_below` inliers) takes no second look; asked
    for more, it takes them all. A turned photograph found by a second look has no more
    verified hits than `retry_verify`."""
    stored = demo_collection.settings
    rerank = stored.rerank
    try:
        described = demo_collection.describe(demo.root / demo.query)
        best = demo_collection.search(described, k=5)[0]
        assert (best.inliers or 0) >= rerank.retry_below and not described.looks

        higher = replace(rerank, retry_below=(best.inliers or 0) + 1)
        demo_collection.settings = replace(stored, rerank=higher)
        again = demo_collection.describe(demo.root / demo.query)
        demo_collection.search(again, k=5)
        assert sorted(again.looks) == ["coarse", "turn1", "turn2", "turn3"]

        original = sorted(set(demo.originals.values()))[0]
        image = load_image(demo.root / original)
        copy = apply(image, Transform("rotation", 4), np.random.default_rng(0))
        demo_collection.settings = replace(stored, rerank=replace(rerank, retry_verify=3))
        hits = demo_collection.search(copy, k=20)
        photo = original.split("/")[-1].split(".")[0]  # the original or an indexed copy of it
        assert photo in hits[0].path and (hits[0].inliers or 0) >= rerank.min_inliers
        assert sum(h.inliers is not None for h in hits) <= 3, [h.inliers for h in hits]
    finally:
        demo_collection.settings = stored


def test_retry_below_may_not_be_under_min_inliers() -> None:
    with pytest.raises(ValueError, match="retry_below"):
        RerankSettings(min_inliers=20, retry_below=10)
    with pytest.raises(ValueError, match="retry_verify"):
        RerankSettings(retry_verify=0)
