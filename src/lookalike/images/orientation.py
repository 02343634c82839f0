"""EXIF orientation: read it (a broken tag never fails a decode) and give an image's size
once upright."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PIL import Image

from lookalike.images.errors import ImageError

logger = logging.getLogger("lookalike")

_ORIENTATION_TAG = 0x0112
TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""The same table as ``PIL.ImageOps.exif_transpose``."""


def exif_orientation(
    img: Image.Image, label: str, getexif: Callable[[Image.Image], Image.Exif]
) -> int:
    """EXIF orientation 1..8; 1 when absent, out of range or unreadable."""
    try:
        exif = getexif(img)
        value = exif.get(_ORIENTATION_TAG, 1)
    except Exception as e:  # broken EXIF must not fail the decode
        logger.debug(
            "%s: unreadable EXIF (%s: %s), orientation ignored", label, type(e).__name__, e
        )
        return 1
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    logger.debug("%s: invalid EXIF orientation %r ignored", label, value)
    return 1


def upright_size(img: Image.Image, label: str) -> tuple[int, int]:
    """(width, height) of an opened image once its EXIF orientation is applied (header only)."""
    width, height = img.size
    # Image.Image.getexif, not the subclass's: PngImageFile.getexif
    # decodes the whole image to look for an eXIf chunk after the pixels.
    orientation = exif_orientation(img, label, Image.Image.getexif)
    swap = orientation >= 5 and not size_already_oriented(img)
    if width <= 0 or height <= 0:
        raise ImageError(label, f"image has zero size ({width}x{height})")
    return (height, width) if swap else (width, height)


def size_already_oriented(img: Image.Image) -> bool:
    """Whether ``img.size`` already has the EXIF orientation applied.

    True for TIFF in recent Pillow (it reports the rotated size and rotates
    while loading); the stored width and height are in the TIFF tags.
    """
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return False
    stored = (tags.get(256), tags.get(257))  # ImageWidth, ImageLength
    return stored != img.size and stored[::-1] == img.size
