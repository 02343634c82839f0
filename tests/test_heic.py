"""HEIC/HEIF photographs (what phones take), read through pillow-heif: real HEIC files made
here from scikit-image photographs are decoded, indexed and searched like JPEGs, and a damaged
one is reported by path and reason while the run goes on."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image
from skimage import data

from lookalike.collection import Collection
from lookalike.images import IMAGE_EXTENSIONS, ImageError, find_images, image_size, load_image
from lookalike.server.files import MEDIA_TYPES, check_upload

DAMAGED = "corrupt or truncated HEIC/HEIF file"

PHOTOS = {
    "chelsea": data.chelsea,
    "coffee": data.coffee,
    "astronaut": data.astronaut,
    "rocket": data.rocket,
}


def _heic(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 pixels as HEIC bytes, encoded by libheif (through pillow-heif)."""
    heif = pillow_heif.from_bytes(
        mode="RGB", size=(pixels.shape[1], pixels.shape[0]), data=pixels.tobytes()
    )
    buffer = io.BytesIO()
    heif.save(buffer, quality=90)
    return buffer.getvalue()


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_heic_file_decodes_to_its_photograph(tmp_path: Path) -> None:
    photo = data.coffee()
    path = tmp_path / "coffee, ünï.HEIC"
    path.write_bytes(_heic(photo))
    assert path in find_images(tmp_path)  # listed, whatever the case of its extension
    assert {".heic", ".heif"} <= IMAGE_EXTENSIONS
    assert image_size(path) == (photo.shape[1], photo.shape[0])
    pixels = load_image(path)
    assert pixels.shape == photo.shape and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - photo).mean() < 4  # lossy, but the same picture
    small = load_image(path, max_side=200)
    assert max(small.shape[:2]) == 200


def test_a_damaged_heic_says_so(tmp_path: Path) -> None:
    whole = _heic(data.coffee())
    for cut, name in ((len(whole) // 2, "half.heic"), (100, "header only.heic")):
        path = tmp_path / name
        path.write_bytes(whole[:cut])
        with pytest.raises(ImageError) as caught:
            load_image(path)
        assert (caught.value.path, caught.value.reason) == (str(path), DAMAGED)


def test_a_heic_upload_is_saved_as_heic() -> None:
    heic = _heic(data.chelsea())
    assert check_upload(heic, "IMG_0001.HEIC") == ".heic"
    assert check_upload(heic, "named wrongly.jpg") == ".heic"  # from the content, not the name
    assert MEDIA_TYPES[".heic"] == "image/heic"


@pytest.mark.slow
def test_heic_files_are_indexed_searched_and_a_damaged_one_reported(tmp_path: Path) -> None:
    root = tmp_path / "phone photos"
    root.mkdir()
    photos = {name: make() for name, make in PHOTOS.items()}
    (root / "coffee.heic").write_bytes(_heic(photos["coffee"]))
    for name in ("chelsea", "astronaut", "rocket"):
        (root / f"{name}.jpg").write_bytes(_jpeg(photos[name]))
    heic = _heic(photos["astronaut"])
    (root / "sub").mkdir()
    (root / "sub" / "cut short.heic").write_bytes(heic[: len(heic) // 2])

    collection = Collection.create(root)
    report = collection.index(workers=1)
    assert sorted(report.added) == ["astronaut.jpg", "chelsea.jpg", "coffee.heic", "rocket.jpg"]
    assert report.failed == [("sub/cut short.heic", DAMAGED)]  # reported, and the run went on
    assert report.images == len(collection) == 4

    # a JPEG of the coffee photograph, cropped, finds the HEIC first ...
    query = tmp_path / "coffee query.jpg"
    height, width = photos["coffee"].shape[:2]
    query.write_bytes(_jpeg(photos["coffee"][height // 10 :, width // 10 :]))
    hits = collection.search(query, k=4)
    assert hits[0].path == "coffee.heic", hits
    assert hits[0].inliers is not None and hits[0].inliers >= 20

    # ... and a HEIC of chelsea, not in the collection, finds its JPEG twin first
    twin = tmp_path / "chelsea twin.heic"
    twin.write_bytes(_heic(photos["chelsea"]))
    hits = collection.search(twin, k=4)
    assert hits[0].path == "chelsea.jpg", hits
    assert hits[0].inliers is not None and hits[0].inliers >= 20

    # the damaged file stays reported by the next run, which describes nothing again
    again = collection.index(workers=1)
    assert again.failed == [("sub/cut short.heic", DAMAGED)] and again.unchanged == 4
