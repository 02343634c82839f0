"""Decoding: :func:`load_image`, the one door through which every image enters lookalike.

From a path, bytes, a PIL image or an array to an upright (H, W, 3) uint8 RGB array,
resized on request (JPEGs drafted at a reduced DCT scale), bombs refused before any pixel
is decoded, PNG checksums verified, and every failure one ImageError with a reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import zlib
from typing import IO

import numpy as np
from PIL import Image

from lookalike.images.errors import ImageError
from lookalike.images.opening import (
    DEFAULT_MAX_PIXELS,
    READ_CHUNK,
    check_size,
    decoded_size,
    open_file,
    open_pil,
    over_pil_limit,
    pil_bomb_check_off,
)
from lookalike.images.orientation import TRANSPOSE_FOR_ORIENTATION, exif_orientation
from lookalike.images.pixels import gray_to_rgb, over_white, owned_rgb, to_rgb
from lookalike.images.reasons import failure_reason
from lookalike.images.source import ImageSource

_REDUCING_GAP = 3.0
"""Resize in two steps (integer box reduction, then Lanczos) when shrinking by
more than this factor; Pillow's docs call the result indistinguishable from a
single Lanczos pass."""


def load_image(
    source: ImageSource,
    max_side: int | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image to an RGB array.

    Args:
        source: a file path; encoded file bytes; a ``PIL.Image.Image`` (used as
            is: loaded if lazy, but not drafted or resized in place; EXIF
            orientation applied); or a uint8 array of shape (H, W),
            (H, W, 3) RGB or (H, W, 4) RGBA (always copied).
        max_side: when given and the image is larger, the result's longer side
            is exactly ``max_side`` (aspect kept, the shorter side rounded, at
            least 1); smaller images are never upscaled. JPEGs are decoded at a
            reduced DCT scale (at least twice the target size), then resized
            with Lanczos.
        max_pixels: images whose decode would hold more than this many pixels
            (width * height as decoded: a JPEG drafted at a reduced DCT scale counts
            its reduced size, unless progressive; see ``DEFAULT_MAX_PIXELS``) are
            refused before any pixel is decoded.

    Returns:
        (H, W, 3) uint8, C-contiguous, writeable, upright (EXIF orientation
        applied). Alpha is composited over white; 16-bit and 32-bit integer
        images are scaled by the smallest bit depth (8, 9, ... bits) that holds
        their maximum, so 16-bit data maps 0..65535 to 0..255 and 12-bit data
        in 16-bit containers is not left black; float images in [0, 1] are
        scaled by 255, others are stretched. Animated GIF/WebP/PNG and
        multi-page TIFF: the first frame.

    Raises:
        ImageError: the source cannot be used as an image; ``path`` and
            ``reason`` say which and why.
        ValueError: ``max_side`` or ``max_pixels`` is not positive.
        TypeError: ``source`` is none of the accepted types.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive integer or None, got {max_side!r}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")

    if isinstance(source, np.ndarray):
        return _from_array(source, max_side)
    if isinstance(source, Image.Image):
        label = os.fsdecode(getattr(source, "filename", "") or "<image>")
        return _decode(source, label, max_side, max_pixels, allow_draft=False)
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise ImageError("<bytes>", "empty data (0 bytes)")
        with io.BytesIO(source) as f:
            return _decode_stream(f, "<bytes>", max_side, max_pixels)
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        with open_file(path) as f:
            return _decode_stream(f, path, max_side, max_pixels)
    raise TypeError(
        "load_image() takes a path, bytes, a PIL.Image.Image or a numpy array, "
        f"not {type(source).__name__}"
    )


def _decode_stream(f: IO[bytes], label: str, max_side: int | None, max_pixels: int) -> np.ndarray:
    img = open_pil(f, label)
    with img:
        if img.format == "PNG":
            _check_png_crcs(f, label)
        return _decode(img, label, max_side, max_pixels, allow_draft=True)


def _check_png_crcs(f: IO[bytes], label: str) -> None:
    """Verify the CRC of every critical PNG chunk (IHDR, PLTE, IDAT, IEND), as libpng does.

    Pillow skips the IDAT checksums, so a flipped bit in the pixel data could
    otherwise decode silently to wrong pixels. Truncation is left to the decoder.
    """
    position = f.tell()
    try:
        f.seek(8)  # the signature
        while len(header := f.read(8)) == 8:
            length = int.from_bytes(header[:4], "big")
            chunk_type = header[4:]
            if not chunk_type[:1].isupper():  # ancillary: Pillow checks those it reads
                f.seek(length + 4, os.SEEK_CUR)
                continue
            crc = zlib.crc32(chunk_type)
            remaining = length
            while remaining > 0:
                piece = f.read(min(remaining, READ_CHUNK))
                if not piece:
                    return
                crc = zlib.crc32(piece, crc)
                remaining -= len(piece)
            stored = f.read(4)
            if len(stored) < 4:
                return
            if int.from_bytes(stored, "big") != crc:
                name = chunk_type.decode("latin-1")
                raise ImageError(label, f"corrupt PNG data (bad CRC in {name} chunk)")
            if chunk_type == b"IEND":
                return
    finally:
        f.seek(position)


def _decode(
    img: Image.Image, label: str, max_side: int | None, max_pixels: int, *, allow_draft: bool
) -> np.ndarray:
    """Decode an opened (possibly not yet loaded) image to (H, W, 3) uint8."""
    width, height = img.size
    fmt = img.format or "image"

    target = _target_size(width, height, max_side)  # in stored (not yet rotated) coordinates
    box: tuple[float, float, float, float] | None = None
    if target is not None and allow_draft:
        # JPEG only (a no-op elsewhere): decode at 1/2, 1/4 or 1/8 scale, keeping
        # at least twice the target size so the final Lanczos pass has detail to
        # work with. The target is in stored coordinates, so EXIF rotation
        # cannot make the decode smaller than wanted.
        drafted = img.draft("RGB", (2 * target[0], 2 * target[1]))
        if drafted is not None:
            box = drafted[1]
    check_size(width, height, label, max_pixels, decoded_size(img, (width, height)))

    try:
        # ImageFile.LOAD_TRUNCATED_IMAGES is left False: a short file fails here.
        big = over_pil_limit(width * height)
        limit = pil_bomb_check_off() if big else contextlib.nullcontext()
        with limit:
            img.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError, ...
        raise ImageError(label, failure_reason(e, fmt)) from e

    orientation = exif_orientation(img, label, type(img).getexif)
    rgb = to_rgb(img, label)
    out = Image.fromarray(rgb) if target is not None or orientation != 1 else None
    if out is not None and target is not None:
        out = out.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)
    if out is not None and orientation in TRANSPOSE_FOR_ORIENTATION:
        out = out.transpose(TRANSPOSE_FOR_ORIENTATION[orientation])
    if out is not None:
        rgb = np.asarray(out)
    return owned_rgb(rgb)


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """(w, h) with the longer side exactly max_side, or None when no resize is needed."""
    longer = max(width, height)
    if max_side is None or longer <= max_side:
        return None
    scale = max_side / longer
    if width >= height:
        return max_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_side


def _from_array(array: np.ndarray, max_side: int | None) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8, resized to max_side."""
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    if array.dtype != np.uint8 or not shape_ok:
        raise ImageError(
            "<array>",
            "array must be uint8 of shape (H, W), (H, W, 3) or (H, W, 4), "
            f"got {array.dtype} of shape {array.shape}",
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageError("<array>", f"image has zero size ({width}x{height})")
    if array.ndim == 2:
        rgb = gray_to_rgb(array)
    elif array.shape[2] == 4:
        rgb = over_white(array)
    else:
        rgb = array
    target = _target_size(width, height, max_side)
    if target is not None:
        resized = Image.fromarray(np.ascontiguousarray(rgb)).resize(
            target, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP
        )
        rgb = np.asarray(resized)
    return owned_rgb(rgb, copy=rgb is array)
