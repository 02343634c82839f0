"""Tests for lookalike.images: decoding, orientation, resizing, bad files, listing, hashing."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import struct
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

from lookalike import images
from lookalike.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageError,
    content_hash,
    find_images,
    image_size,
    load_image,
    sniff,
)

# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8."""
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    """(60, 90, 3) uint8: a small, clearly asymmetric photo (wider than tall)."""
    small = Image.fromarray(skimage.data.chelsea()).resize((90, 60), Image.Resampling.LANCZOS)
    return np.asarray(small).copy()


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """(128, 128) uint8 grayscale."""
    return skimage.data.camera()[::4, ::4].copy()


def save(array_or_image: np.ndarray | Image.Image, path: Path, **kwargs: Any) -> Path:
    img = (
        array_or_image
        if isinstance(array_or_image, Image.Image)
        else Image.fromarray(array_or_image)
    )
    img.save(path, **kwargs)
    return path


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (with a valid IHDR CRC)."""
    patched = bytearray(data)
    patched[16:24] = struct.pack(">II", width, height)
    patched[29:33] = struct.pack(">I", zlib.crc32(bytes(patched[12:29])))
    return bytes(patched)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_rgb(result: np.ndarray, shape: tuple[int, int]) -> None:
    assert result.shape == (*shape, 3)
    assert result.dtype == np.uint8
    assert result.flags.c_contiguous
    assert result.flags.writeable


def raises_image_error(source: Any, *reason_parts: str, **kwargs: Any) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(source, **kwargs)
    error = info.value
    label = os.fspath(source) if isinstance(source, str | os.PathLike) else None
    if label is not None:
        assert error.path == label
        assert str(error).startswith(f"{label}: ")
    for part in reason_parts:
        assert part in error.reason, error.reason
    assert str(error) == f"{error.path}: {error.reason}"
    return error


# --------------------------------------------------------------------------- colour modes


def test_rgb_png_round_trip_is_exact(tmp_path: Path, astronaut: np.ndarray) -> None:
    result = load_image(save(astronaut, tmp_path / "a.png"))
    assert_rgb(result, (512, 512))
    np.testing.assert_array_equal(result, astronaut)


def test_grayscale_l_and_bilevel(tmp_path: Path, camera: np.ndarray) -> None:
    gray = load_image(save(camera, tmp_path / "gray.png"))
    assert_rgb(gray, camera.shape)
    for channel in range(3):
        np.testing.assert_array_equal(gray[:, :, channel], camera)

    bilevel = Image.fromarray(camera).point(lambda v: 255 if v > 128 else 0).convert("1")
    result = load_image(save(bilevel, tmp_path / "bw.png"))
    assert_rgb(result, camera.shape)
    assert set(np.unique(result)) <= {0, 255}
    np.testing.assert_array_equal(result[:, :, 0] == 255, camera > 128)


def test_palette_without_and_with_transparency(tmp_path: Path, astronaut: np.ndarray) -> None:
    palette_img = Image.fromarray(astronaut).quantize(32)
    result = load_image(save(palette_img, tmp_path / "p.png"))
    np.testing.assert_array_equal(result, np.asarray(palette_img.convert("RGB")))

    indices = np.zeros((8, 8), np.uint8)
    indices[:, 4:] = 1
    transparent = Image.fromarray(indices, "P")
    transparent.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    for name in ("t.png", "t.gif"):
        result = load_image(save(transparent, tmp_path / name, transparency=0))
        assert_rgb(result, (8, 8))
        assert (result[:, :4] == 255).all(), name  # index 0 is transparent -> white
        assert (result[:, 4:] == [200, 100, 50]).all(), name


def test_alpha_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.array([[[10, 20, 30, 255], [0, 0, 0, 0], [0, 0, 0, 128], [200, 100, 0, 0]]], np.uint8)
    result = load_image(save(rgba, tmp_path / "rgba.png"))
    np.testing.assert_array_equal(
        result[0], [[10, 20, 30], [255, 255, 255], [127, 127, 127], [255, 255, 255]]
    )
    np.testing.assert_array_equal(load_image(rgba), result)

    la = Image.merge("LA", [Image.new("L", (2, 1), 40), Image.frombytes("L", (2, 1), b"\xff\x00")])
    result = load_image(save(la, tmp_path / "la.png"))
    np.testing.assert_array_equal(result[0], [[40, 40, 40], [255, 255, 255]])
    np.testing.assert_array_equal(load_image(la.convert("La")), result)


def test_sixteen_bit_gradient_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256).round().astype(np.uint16)[None].repeat(3, axis=0)
    expected = np.rint(ramp[0] / 257).astype(np.uint8)
    path = save(ramp, tmp_path / "g16.png")
    with Image.open(path) as opened:
        assert opened.mode == "I;16"
    for source in (
        path,
        save(ramp, tmp_path / "g16.tif"),
        Image.fromarray(ramp.astype(">u2")),  # I;16B
        Image.fromarray(ramp.astype(np.int32)),  # I
    ):
        result = load_image(source)
        assert_rgb(result, (3, 256))
        np.testing.assert_array_equal(result[1, :, 0], expected)
        assert (result == result[:, :, :1]).all()


def test_twelve_bit_and_signed_and_float_images() -> None:
    twelve_bit = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    result = load_image(Image.fromarray(twelve_bit))
    assert result[0, 0, 0] == 0 and result[-1, -1, 0] == 255

    signed = np.array([[-1000, 0, 1000]], np.int32)
    np.testing.assert_array_equal(load_image(Image.fromarray(signed))[0, :, 0], [0, 128, 255])

    unit = np.array([[0.0, 0.5, 1.0, np.nan]], np.float32)
    np.testing.assert_array_equal(load_image(Image.fromarray(unit))[0, :, 0], [0, 128, 255, 0])
    wide = np.array([[-2.0, 0.0, 2.0]], np.float32)
    np.testing.assert_array_equal(load_image(Image.fromarray(wide))[0, :, 0], [0, 128, 255])


def test_cmyk_and_ycbcr(tmp_path: Path, cat: np.ndarray) -> None:
    cmyk = Image.fromarray(cat).convert("CMYK")
    np.testing.assert_array_equal(load_image(save(cmyk, tmp_path / "cmyk.tif")), cat)
    cmyk_jpeg = load_image(save(cmyk, tmp_path / "cmyk.jpg", quality=95))
    assert_rgb(cmyk_jpeg, cat.shape[:2])
    assert mean_abs_diff(cmyk_jpeg, cat) < 4

    ycbcr = Image.fromarray(cat).convert("YCbCr")
    assert mean_abs_diff(load_image(ycbcr), cat) < 2


def test_first_frame_of_animations_and_multipage_tiff(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (16, 12), c) for c in colours]
    for name, kwargs in (
        ("anim.gif", {"duration": 50, "loop": 0}),
        ("anim.webp", {"lossless": True}),
        ("pages.tif", {}),
        ("anim.png", {}),
    ):
        path = tmp_path / name
        frames[0].save(path, save_all=True, append_images=frames[1:], **kwargs)
        with Image.open(path) as opened:
            assert getattr(opened, "n_frames", 1) == 3, name
        result = load_image(path)
        assert_rgb(result, (12, 16))
        assert mean_abs_diff(result, np.full((12, 16, 3), colours[0], np.uint8)) < 1, name


# --------------------------------------------------------------------------- EXIF orientation

# The stored pixels that orientation k turns upright: the inverse of k's transform.
_STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # orientation 6 rotates 90 degrees clockwise to display
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _store_oriented(upright: np.ndarray, orientation: int, path: Path, **kwargs: Any) -> Path:
    stored = Image.fromarray(upright)
    if (method := _STORE_FOR_ORIENTATION[orientation]) is not None:
        stored = stored.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(stored, path, exif=exif, **kwargs)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg(tmp_path: Path, cat: np.ndarray, orientation: int) -> None:
    path = _store_oriented(cat, orientation, tmp_path / f"o{orientation}.jpg", quality=95)
    result = load_image(path)
    assert_rgb(result, cat.shape[:2])
    assert mean_abs_diff(result, cat) < 3
    with Image.open(path) as opened:
        np.testing.assert_array_equal(result, np.asarray(ImageOps.exif_transpose(opened)))
    assert image_size(path) == (90, 60)

    small = load_image(path, max_side=45)
    assert_rgb(small, (30, 45))
    reference = np.asarray(Image.fromarray(cat).resize((45, 30), Image.Resampling.LANCZOS))
    assert mean_abs_diff(small, reference) < 4


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("o.png", {}),
        ("o.webp", {"lossless": True}),
        ("o.tif", {}),
        ("lzw.tif", {"compression": "tiff_lzw"}),
    ],
)
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_lossless_formats(
    tmp_path: Path, cat: np.ndarray, name: str, kwargs: dict[str, object], orientation: int
) -> None:
    path = _store_oriented(cat, orientation, tmp_path / name, **kwargs)
    np.testing.assert_array_equal(load_image(path), cat)
    assert image_size(path) == (90, 60)
    assert load_image(path, max_side=30).shape == (20, 30, 3)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns "Corrupt EXIF data"
@pytest.mark.parametrize(
    "exif",
    [
        b"Exif\x00\x00" + b"\xde\xad\xbe\xef" * 8,  # not TIFF at all
        b"Exif\x00\x00MM\x00*\x00\x00\xff\xff",  # IFD offset past the end
        b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00",  # IFD cut short
    ],
)
def test_broken_exif_still_decodes(tmp_path: Path, cat: np.ndarray, exif: bytes) -> None:
    path = save(cat, tmp_path / "broken-exif.jpg", exif=exif, quality=95)
    result = load_image(path)
    assert mean_abs_diff(result, cat) < 3
    assert image_size(path) == (90, 60)


@pytest.mark.parametrize("value", [0, 9, 1000])
def test_out_of_range_orientation_is_ignored(tmp_path: Path, cat: np.ndarray, value: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = value
    path = save(cat, tmp_path / "odd.png", exif=exif)
    np.testing.assert_array_equal(load_image(path), cat)


# --------------------------------------------------------------------------- max_side


@pytest.mark.parametrize("name", ["c.png", "c.jpg"])
def test_max_side_exact_aspect_kept_never_upscaled(tmp_path: Path, name: str) -> None:
    chelsea = skimage.data.chelsea()  # (300, 451, 3)
    path = save(chelsea, tmp_path / name)
    assert load_image(path, 200).shape == (133, 200, 3)  # 300 * 200 / 451 = 133.04
    assert load_image(path, 451).shape == (300, 451, 3)
    assert load_image(path, 5000).shape == (300, 451, 3)
    assert load_image(path, 1).shape == (1, 1, 3)


@pytest.mark.parametrize("max_side", [32, 64, 100])
def test_jpeg_draft_decode_matches_full_decode(
    tmp_path: Path, astronaut: np.ndarray, max_side: int
) -> None:
    path = save(astronaut, tmp_path / "astro.jpg", quality=92)
    with Image.open(path) as opened:  # the file really is DCT-scaled
        assert opened.draft("RGB", (2 * max_side, 2 * max_side)) is not None
    fast = load_image(path, max_side)
    assert_rgb(fast, (max_side, max_side))
    full = Image.fromarray(load_image(path))
    reference = np.asarray(full.resize((max_side, max_side), Image.Resampling.LANCZOS))
    assert mean_abs_diff(fast, reference) < 2.5


@pytest.mark.parametrize("orientation", [6, 7])
def test_jpeg_draft_with_rotation(tmp_path: Path, orientation: int) -> None:
    upright = skimage.data.chelsea()  # (300, 451, 3): DCT-scaled by 4 for max_side 50
    path = _store_oriented(upright, orientation, tmp_path / "big.jpg", quality=95)
    result = load_image(path, 50)
    assert_rgb(result, (33, 50))
    reference = np.asarray(Image.fromarray(upright).resize((50, 33), Image.Resampling.LANCZOS))
    assert mean_abs_diff(result, reference) < 3


def test_concurrent_decoding_leaves_pil_limit_alone(tmp_path: Path, cat: np.ndarray) -> None:
    paths = [save(np.roll(cat, i, axis=1), tmp_path / f"{i}.png") for i in range(8)]
    expected = [load_image(p) for p in paths]
    limit_before = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(load_image, paths * 10))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, expected[i % len(paths)])
    assert limit_before == Image.MAX_IMAGE_PIXELS


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 300), height=st.integers(1, 300), max_side=st.integers(1, 400))
def test_max_side_property(width: int, height: int, max_side: int) -> None:
    result = load_image(np.zeros((height, width, 3), np.uint8), max_side)
    out_h, out_w = result.shape[:2]
    longer = max(width, height)
    assert max(out_w, out_h) == min(longer, max_side)
    if longer > max_side:
        scale = max_side / longer
        assert abs(out_w - width * scale) <= 0.5 + 1e-9 or out_w == 1
        assert abs(out_h - height * scale) <= 0.5 + 1e-9 or out_h == 1
    else:
        assert (out_w, out_h) == (width, height)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (1, 20000), (20000, 1)])
def test_extreme_shapes(tmp_path: Path, width: int, height: int) -> None:
    pixels = np.full((height, width, 3), 77, np.uint8)
    path = save(pixels, tmp_path / "thin.png")
    assert_rgb(load_image(path), (height, width))
    small = load_image(path, 100)
    assert small.shape[:2] == ((100, 1) if height > width else (1, 100) if width > 1 else (1, 1))
    assert (small == 77).all()
    assert image_size(path) == (width, height)


# --------------------------------------------------------------------------- other sources


def test_bytes_pil_and_array_sources(tmp_path: Path, cat: np.ndarray) -> None:
    path = save(cat, tmp_path / "cat.jpg", quality=90)
    from_path = load_image(path)
    data = path.read_bytes()
    np.testing.assert_array_equal(load_image(data), from_path)
    np.testing.assert_array_equal(load_image(bytearray(data)), from_path)
    np.testing.assert_array_equal(load_image(memoryview(data), 45), load_image(path, 45))

    with Image.open(path) as lazy:
        np.testing.assert_array_equal(load_image(lazy), from_path)
    with Image.open(path) as lazy:
        assert load_image(lazy, 30).shape == (20, 30, 3)
        assert lazy.size == (90, 60)  # not drafted in place

    copy = load_image(cat)
    np.testing.assert_array_equal(copy, cat)
    copy[0, 0] = 0
    assert not np.shares_memory(copy, cat)
    gray = load_image(cat[:, :, 0])
    np.testing.assert_array_equal(gray[:, :, 2], cat[:, :, 0])
    assert load_image(cat[:, ::-1]).flags.c_contiguous


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4, 3), np.float32),
        np.zeros((4, 4, 3), np.uint16),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((4,), np.uint8),
        np.zeros((2, 4, 4, 3), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
    ],
)
def test_bad_arrays(array: np.ndarray) -> None:
    error = raises_image_error(array)
    assert error.path == "<array>"


def test_argument_errors(tmp_path: Path, cat: np.ndarray) -> None:
    with pytest.raises(TypeError, match="path, bytes"):
        not_an_image: Any = 12
        load_image(not_an_image)
    with pytest.raises(ValueError, match="max_side"):
        load_image(cat, 0)
    with pytest.raises(ValueError, match="max_pixels"):
        load_image(cat, max_pixels=0)
    error = raises_image_error(Image.new("RGB", (0, 5)), "zero size")
    assert error.path == "<image>"


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture()
def jpeg_bytes(astronaut: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(astronaut[:128, :128]).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_truncated_jpeg_and_png(tmp_path: Path, jpeg_bytes: bytes, cat: np.ndarray) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    raises_image_error(path, "truncated JPEG data")
    assert raises_image_error(path.read_bytes(), "truncated JPEG").path == "<bytes>"

    png = png_bytes(Image.fromarray(cat))
    path = tmp_path / "cut.png"
    path.write_bytes(png[: len(png) // 2])
    raises_image_error(path, "truncated PNG data")

    path = tmp_path / "header-only.jpg"
    path.write_bytes(jpeg_bytes[:10])
    raises_image_error(path, "JPEG header")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_png_with_bad_crc(tmp_path: Path, cat: np.ndarray) -> None:
    png = bytearray(png_bytes(Image.fromarray(cat)))
    idat = png.index(b"IDAT")
    length = struct.unpack(">I", png[idat - 4 : idat])[0]
    png[idat + 4 + length] ^= 0xFF  # the checksum only: the pixel data still inflates
    path = tmp_path / "bad-crc.png"
    path.write_bytes(bytes(png))
    raises_image_error(path, "corrupt PNG data", "CRC", "IDAT")

    png = bytearray(png_bytes(Image.fromarray(cat)))
    png[idat + 40] ^= 0xFF  # the data itself
    path.write_bytes(bytes(png))
    raises_image_error(path, "corrupt PNG data")


def test_empty_missing_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.touch()
    raises_image_error(empty, "empty file (0 bytes)")
    raises_image_error(b"", "empty")
    raises_image_error(tmp_path / "missing.jpg", "file not found")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    raises_image_error(tmp_path / "broken.jpg", "broken symbolic link")
    (tmp_path / "x.jpg").mkdir()
    raises_image_error(tmp_path / "x.jpg", "is a directory")
    with pytest.raises(ImageError, match="is a directory"):
        image_size(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="file not found"):
        content_hash(tmp_path / "missing.jpg")


def test_permission_denied(tmp_path: Path, cat: np.ndarray) -> None:
    path = save(cat, tmp_path / "locked.png")
    path.chmod(0)
    try:
        try:
            path.open("rb").close()
        except PermissionError:
            pass
        else:
            pytest.skip("this user reads files without permission (root)")
        raises_image_error(path, "permission denied")
        with pytest.raises(ImageError, match="permission denied"):
            content_hash(path)
    finally:
        path.chmod(0o644)


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photo.jpg", b"not really")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"just some notes\nabout a photo\n" * 20, "not an image file (looks like text)"),
        (b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>", "looks like HTML"),
        (b"\n  <html lang='en'><body>Moved</body></html>", "looks like HTML"),
        (_zip_bytes(), "looks like a zip archive"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "looks like PDF"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (bytes(range(256)) * 2, "unrecognised format, starts with 00 01 02 03"),
        (  # the HEIF plugin (pillow-heif) is there: the file is damaged
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
            "corrupt or truncated HEIC/HEIF file",
        ),
        (
            b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heicmiaf" + bytes(64),
            "corrupt or truncated HEIC/HEIF file",
        ),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64), "video"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "PNG header"),
    ],
)
def test_not_images_named_jpg(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    raises_image_error(path, reason)
    with pytest.raises(ImageError, match=r"photo\.jpg: "):
        image_size(path)
    assert raises_image_error(data, reason).path == "<bytes>"


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    tiny = png_bytes(Image.new("RGB", (4, 4), "white"))
    path = tmp_path / "bomb.png"
    path.write_bytes(patch_png_size(tiny, 30000, 30000))
    limit_before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        # A decode attempt would report truncated data (and allocate 2.7 GB first):
        # the reason shows the size was refused from the header alone.
        raises_image_error(path, "image is 30000x30000 = 900 Mpx, over the 40 Mpx limit")
        raises_image_error(path.read_bytes(), "30000x30000")
        raises_image_error(patch_png_size(tiny, 10000, 10000), "10000x10000 = 100 Mpx")
        assert image_size(path) == (30000, 30000)  # the header is fine
    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert DEFAULT_MAX_PIXELS == 40_000_000

    raises_image_error(tiny, "image is 4x4 = 0 Mpx, over the 0 Mpx limit", max_pixels=15)
    assert load_image(tiny, max_pixels=16).shape == (4, 4, 3)


def test_the_limit_counts_the_pixels_a_decode_holds(tmp_path: Path, astronaut: np.ndarray) -> None:
    """A baseline JPEG drafted at a reduced DCT scale holds its reduced size; a progressive one,
    or any other format, its whole size (the reason says which)."""
    baseline = save(astronaut, tmp_path / "baseline.jpg", quality=90)
    progressive = save(astronaut, tmp_path / "progressive.jpg", quality=90, progressive=True)
    lossless = save(astronaut, tmp_path / "lossless.png")
    limit = 100_000  # 512 x 512 is 262k pixels; drafted at 1/2 for max_side 128, 65.5k
    assert load_image(baseline, 128, max_pixels=limit).shape == (128, 128, 3)
    assert sniff(baseline.read_bytes(), max_pixels=limit) == "JPEG"  # at 1/8: 4k pixels
    raises_image_error(baseline, "image is 512x512 = 0.3 Mpx, over the 0.1 Mpx", max_pixels=limit)
    for whole in (progressive, lossless):
        raises_image_error(
            whole, "image is 512x512 = 0.3 Mpx, over", max_side=128, max_pixels=limit
        )
        with pytest.raises(ImageError, match=r"over the 0\.1 Mpx limit"):
            sniff(whole.read_bytes(), max_pixels=limit)
    raises_image_error(
        baseline,
        "512x512 = 0.3 Mpx, 0 Mpx decoded at 64x64, over the 0 Mpx limit",
        max_side=16,
        max_pixels=1000,
    )


@pytest.mark.parametrize("name", ["small.png", "small.tif", "small.jpg"])
def test_our_limit_not_pils_global_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cat: np.ndarray, name: str
) -> None:
    path = save(cat, tmp_path / name)  # 5400 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL alone would refuse it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).shape == (60, 90, 3)
        assert image_size(path) == (90, 60)
        raises_image_error(path, "image is 90x60", max_pixels=5000)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored


def test_image_error_pickles_and_formats() -> None:
    error = ImageError(Path("dir/a b.jpg"), "truncated JPEG data")
    assert (error.path, error.reason) == ("dir/a b.jpg", "truncated JPEG data")
    assert str(error) == "dir/a b.jpg: truncated JPEG data"
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.path, clone.reason, str(clone)) == (error.path, error.reason, str(error))


# --------------------------------------------------------------------------- file names

AWKWARD_NAMES = ["with space.jpg", "ünïcødé 猫.png", "a,b;c'd.jpg", "new\nline.png", "UPPER.JPEG"]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_awkward_file_names(tmp_path: Path, cat: np.ndarray, name: str) -> None:
    folder = tmp_path / "dir with, commas"
    folder.mkdir()
    path = save(cat, folder / name, **({"quality": 95} if "jp" in name.lower() else {}))
    assert mean_abs_diff(load_image(path), cat) < 3
    assert load_image(str(path), 45).shape == (30, 45, 3)
    assert image_size(path) == (90, 60)
    assert content_hash(path) == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    assert find_images(tmp_path) == [path]

    truncated = folder / f"cut {name}"
    truncated.write_bytes(path.read_bytes()[:200])
    assert f"{truncated}: " in str(raises_image_error(truncated))


# --------------------------------------------------------------------------- find_images


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_find_images(tmp_path: Path) -> None:
    root = tmp_path / "collection"
    for relative in [
        "b.jpg",
        "A.PNG",
        "c.TiFf",
        "d.Jpeg",
        "e.webp",
        "f.bmp",
        "g.gif",
        "h.tif",
        "sub/deep/z.jpg",
        "sub/a.png",
        ".hidden/i.jpg",
        "x.jpg/inner.png",
        "notes.txt",
        "noext",
        "archive.jpg.zip",
        ".lookalike/features/cache.jpg",
        "sub/.lookalike/cache.png",
    ]:
        _touch(root / relative)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "sub" / "up").symlink_to(root / "sub", target_is_directory=True)
    (root / "self.jpg").symlink_to(root / "self.jpg")  # a symlink loop named like an image
    (root / "dangling.png").symlink_to(root / "nowhere.png")
    (root / "link.jpg").symlink_to(root / "b.jpg")

    found = find_images(root)
    assert [p.relative_to(root).as_posix() for p in found] == [
        ".hidden/i.jpg",
        "A.PNG",
        "b.jpg",
        "c.TiFf",
        "d.Jpeg",
        "e.webp",
        "f.bmp",
        "g.gif",
        "h.tif",
        "link.jpg",
        "sub/a.png",
        "sub/deep/z.jpg",
        "x.jpg/inner.png",
    ]
    assert all(p.is_file() for p in found)
    assert all(str(p).startswith(str(root)) for p in found)

    excluded = (".lookalike", "sub", ".hidden", "x.jpg")
    assert [p.name for p in find_images(root, exclude_dirs=excluded)] == [
        "A.PNG",
        "b.jpg",
        "c.TiFf",
        "d.Jpeg",
        "e.webp",
        "f.bmp",
        "g.gif",
        "h.tif",
        "link.jpg",
    ]
    assert "cache.png" in [p.name for p in find_images(root, exclude_dirs="nothing")]
    assert {s.lower() for s in IMAGE_EXTENSIONS} == IMAGE_EXTENSIONS


def test_find_images_unreadable_and_vanishing_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for relative in ["a.jpg", "locked/b.jpg", "gone/c.jpg", "ok/d.jpg"]:
        _touch(tmp_path / relative)
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        name = os.path.basename(path)
        if name == "locked":
            raise PermissionError(13, "Permission denied", path)
        if name == "gone":
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_scandir(path)

    monkeypatch.setattr(images.files.os, "scandir", scandir)
    with caplog.at_level(logging.WARNING, logger="lookalike"):
        found = find_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "ok/d.jpg"]
    assert any("locked" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert not any("gone" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_find_images_bad_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        find_images(tmp_path / "missing")
    with pytest.raises(NotADirectoryError, match=r"a\.jpg"):
        find_images(_touch(tmp_path / "a.jpg"))


# --------------------------------------------------------------------------- content_hash


def test_content_hash(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 2_500_000, dtype=np.uint8).tobytes()
    path = tmp_path / "big.bin"
    path.write_bytes(data)  # more than two 1 MiB chunks
    digest = content_hash(path)
    assert digest == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert len(digest) == 32
    assert content_hash(str(path)) == digest

    copy = tmp_path / "copy.bin"
    copy.write_bytes(data)
    assert content_hash(copy) == digest
    changed = bytearray(data)
    changed[-1] ^= 1
    path.write_bytes(bytes(changed))
    assert content_hash(path) != digest

    empty = tmp_path / "empty.bin"
    empty.touch()
    assert content_hash(empty) == hashlib.blake2b(b"", digest_size=16).hexdigest()
