"""Opening a source for decoding: a regular file with every failure named, the image
identified and its header read (no pixels yet), and the decompression-bomb limit."""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import threading
from collections.abc import Iterator
from typing import IO

from PIL import Image, UnidentifiedImageError

from lookalike.images.errors import ImageError
from lookalike.images.reasons import failure_reason, magic_format, os_reason, unidentified_reason

DEFAULT_MAX_PIXELS: int = 40_000_000
"""The most pixels a decode may hold (40 megapixels, up to about 400 MB while decoding): width
* height as decoded. A JPEG decoded at a reduced DCT scale counts its reduced size, except a
progressive one, whose decoder holds the whole image's coefficients; every other format counts
its whole size. An image over the limit is refused from its header, before any pixel is
decoded: a decompression bomb, or a picture too large to decode safely."""

READ_CHUNK = 1 << 20
"""Bytes read at a time when streaming a file (hashing it, checking PNG CRCs)."""

_SNIFF_BYTES = 1024

# Image.MAX_IMAGE_PIXELS is process-global; this lock serialises our
# temporary changes to it (see pil_bomb_check_off).
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def open_file(path: str, *, allow_empty: bool = False) -> Iterator[IO[bytes]]:
    """Open a regular file for reading; every failure is an ImageError with a reason."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "file not found"
        raise ImageError(path, reason) from None
    except OSError as e:
        raise ImageError(path, os_reason(e)) from e
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(path, "not a regular file")
    if st.st_size == 0 and not allow_empty:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise ImageError(path, os_reason(e)) from e
    with f:
        yield f


@functools.cache
def heif_registered() -> bool:
    """Register pillow-heif's HEIC/HEIF opener with Pillow (once, on the first image opened:
    importing it takes 0.1 s); False when pillow-heif is not installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def open_pil(f: IO[bytes], label: str) -> Image.Image:
    """Identify the image in f and read its header (no pixels). HEIC/HEIF files too, through
    pillow-heif (`heif_registered`): their format is "HEIF"."""
    heif = heif_registered()
    try:
        # Our own check against max_pixels guards the decode; PIL's global one
        # would refuse bombs without saying their size, and warn about images
        # between its warning and error thresholds.
        with pil_bomb_check_off():
            return Image.open(f)
    except UnidentifiedImageError:
        reason = unidentified_reason(_head(f), heif=heif)
    except Exception as e:  # a plugin failed on a corrupt header
        fmt = magic_format(_head(f)) or "image"
        reason = failure_reason(e, fmt, "header")
    raise ImageError(label, reason)


def _head(f: IO[bytes]) -> bytes:
    try:
        f.seek(0)
        return f.read(_SNIFF_BYTES)
    except (OSError, ValueError):
        return b""


@contextlib.contextmanager
def pil_bomb_check_off() -> Iterator[None]:
    """Switch off PIL's own decompression-bomb check (a process-global setting) for a moment.

    The change is serialised by a lock and always restored; the callers check
    width * height against their ``max_pixels`` themselves.
    """
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def over_pil_limit(pixels: int) -> bool:
    """Whether PIL's own (process-global) bomb check would refuse this many pixels."""
    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and pixels > limit


def decoded_size(img: Image.Image, stored: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of what decoding ``img`` as it is set up now holds in memory: a JPEG
    drafted at a reduced DCT scale (``img.size`` after ``draft``), the reduced size, unless it is
    progressive (libjpeg then keeps every coefficient of the ``stored`` size); anything else,
    its size."""
    return stored if img.info.get("progressive") else img.size


def check_size(
    width: int,
    height: int,
    label: str,
    max_pixels: int,
    decoded: tuple[int, int] | None = None,
) -> None:
    """Refuse a zero-size image, or one whose decode would hold over ``max_pixels`` pixels (a
    decompression bomb): ``decoded``, the (width, height) it is decoded at when not its stored
    ``width`` x ``height`` (`decoded_size`)."""
    if width <= 0 or height <= 0:
        raise ImageError(label, f"image has zero size ({width}x{height})")
    decoded_width, decoded_height = decoded or (width, height)
    pixels = decoded_width * decoded_height
    if pixels > max_pixels:
        size = f"{width}x{height} = {_mpx(width * height)} Mpx"
        if (decoded_width, decoded_height) != (width, height):
            size += f", {_mpx(pixels)} Mpx decoded at {decoded_width}x{decoded_height}"
        raise ImageError(label, f"image is {size}, over the {_mpx(max_pixels)} Mpx limit")


def _mpx(pixels: int) -> str:
    """900_000_000 -> '900', 65_536_000 -> '65.5'."""
    return f"{pixels / 1e6:.1f}".removesuffix(".0")
