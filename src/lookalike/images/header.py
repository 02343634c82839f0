"""What an image's header says, no pixel decoded: its size once upright, and its format."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from lookalike.images.errors import ImageError
from lookalike.images.opening import (
    DEFAULT_MAX_PIXELS,
    check_size,
    decoded_size,
    open_file,
    open_pil,
)
from lookalike.images.orientation import upright_size
from lookalike.images.source import ImageSource


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an image after EXIF orientation, reading only its header.

    No size limit applies here: a decompression bomb reports its claimed size.

    Raises:
        ImageError: the file is missing, unreadable or not an image.
    """
    label = os.fspath(path)
    with open_file(label) as f:
        img = open_pil(f, label)
        with img:
            return upright_size(img, label)


def source_size(
    source: ImageSource,
) -> tuple[int, int]:
    """(width, height) of any `load_image` source as `load_image(source)` would return it
    (EXIF orientation applied), reading only the header of encoded data.

    Raises:
        ImageError: the source is not an image.
    """
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3):
            raise ImageError("<array>", f"array of shape {source.shape} is not an image")
        return int(source.shape[1]), int(source.shape[0])
    if isinstance(source, Image.Image):
        return upright_size(source, os.fsdecode(getattr(source, "filename", "") or "<image>"))
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise ImageError("<bytes>", "empty data (0 bytes)")
        with io.BytesIO(source) as f:
            img = open_pil(f, "<bytes>")
            with img:
                return upright_size(img, "<bytes>")
    return image_size(source)


def sniff(data: bytes, label: str = "<bytes>", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """The format of encoded image `data` ('JPEG', 'PNG', ...), judged from its content (not
    its name) by reading its header only.

    Raises:
        ImageError: the data is not an image Pillow can decode, or holds more than
            `max_pixels` pixels however small it is decoded (a JPEG at 1/8 scale, as
            `load_image` drafts a large one; see `DEFAULT_MAX_PIXELS`).
    """
    if len(data) == 0:
        raise ImageError(label, "empty data (0 bytes)")
    with io.BytesIO(data) as f:
        img = open_pil(f, label)
        with img:
            stored = img.size
            img.draft(None, (1, 1))  # the least a decode of it holds: a JPEG at 1/8 scale
            check_size(*stored, label, max_pixels, decoded_size(img, stored))
            return str(img.format)
