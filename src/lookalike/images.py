"""Image decoding: files, bytes, PIL images and arrays to RGB uint8 arrays.

Every image that enters lookalike goes through :func:`load_image`, which

- applies the EXIF orientation,
- decodes JPEGs at a reduced DCT scale when only a small version is wanted,
- converts every colour mode to RGB (alpha over white, 16-bit and float
  scaled to 8 bits),
- refuses decompression bombs before any pixel is decoded, and
- turns every failure into one :class:`ImageError` that names the file and
  says what is wrong with it.

:func:`find_images` lists a collection, :func:`image_size` reads a header and
:func:`content_hash` fingerprints a file's bytes.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import io
import logging
import os
import pathlib
import stat
import threading
import zlib
from collections.abc import Callable, Collection, Iterator
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger("lookalike")

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
"""File name extensions (lower case, with the dot) that :func:`find_images` lists."""

DEFAULT_MAX_PIXELS: int = 64_000_000
"""Images with more pixels (width * height) are refused as decompression bombs."""

_HASH_CHUNK = 1 << 20
_SNIFF_BYTES = 1024
_REDUCING_GAP = 3.0
"""Resize in two steps (integer box reduction, then Lanczos) when shrinking by
more than this factor; Pillow's docs call the result indistinguishable from a
single Lanczos pass."""

_ORIENTATION_TAG = 0x0112
_TRANSPOSE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""The same table as ``PIL.ImageOps.exif_transpose``."""

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_VIDEO_BRANDS = frozenset(
    {b"isom", b"iso2", b"mp41", b"mp42", b"avc1", b"qt  ", b"M4V ", b"3gp4", b"3gp5", b"dash"}
)

# Image.MAX_IMAGE_PIXELS is process-global; this lock serialises our
# temporary changes to it (see _pil_bomb_check_off).
_PIL_LIMIT_LOCK = threading.Lock()


class ImageError(Exception):
    """A file that cannot be used as an image.

    Attributes:
        path: the file's path as a string, or ``'<bytes>'`` / ``'<array>'`` /
            ``'<image>'`` for in-memory sources.
        reason: a short human sentence, e.g. ``'truncated JPEG data'`` or
            ``'not an image file (looks like HTML)'``.

    ``str(error) == f"{path}: {reason}"``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path: str = os.fspath(path)
        self.reason: str = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageError], tuple[str, str]]:
        # Exception pickles its args, which here is the one formatted message;
        # rebuild from (path, reason) so errors cross process boundaries.
        return (type(self), (self.path, self.reason))


# --------------------------------------------------------------------------- public API


def load_image(
    source: str | os.PathLike[str] | bytes | Image.Image | np.ndarray,
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
        max_pixels: images with more than this many pixels (width * height, as
            stored) are refused before any pixel is decoded.

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
        with _open_file(path) as f:
            return _decode_stream(f, path, max_side, max_pixels)
    raise TypeError(
        "load_image() takes a path, bytes, a PIL.Image.Image or a numpy array, "
        f"not {type(source).__name__}"
    )


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of an image after EXIF orientation, reading only its header.

    No size limit applies here: a decompression bomb reports its claimed size.

    Raises:
        ImageError: the file is missing, unreadable or not an image.
    """
    label = os.fspath(path)
    with _open_file(label) as f:
        img = _open_pil(f, label)
        with img:
            return _upright_size(img, label)


def source_size(
    source: str | os.PathLike[str] | bytes | Image.Image | np.ndarray,
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
        return _upright_size(source, os.fsdecode(getattr(source, "filename", "") or "<image>"))
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise ImageError("<bytes>", "empty data (0 bytes)")
        with io.BytesIO(source) as f:
            img = _open_pil(f, "<bytes>")
            with img:
                return _upright_size(img, "<bytes>")
    return image_size(source)


def sniff(data: bytes, label: str = "<bytes>", *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """The format of encoded image `data` ('JPEG', 'PNG', ...), judged from its content (not
    its name) by reading its header only.

    Raises:
        ImageError: the data is not an image Pillow can decode, or has more than
            `max_pixels` pixels.
    """
    if len(data) == 0:
        raise ImageError(label, "empty data (0 bytes)")
    with io.BytesIO(data) as f:
        img = _open_pil(f, label)
        with img:
            _check_size(*img.size, label, max_pixels)
            return str(img.format)


def _upright_size(img: Image.Image, label: str) -> tuple[int, int]:
    width, height = img.size
    # Image.Image.getexif, not the subclass's: PngImageFile.getexif
    # decodes the whole image to look for an eXIf chunk after the pixels.
    orientation = _orientation(img, label, Image.Image.getexif)
    swap = orientation >= 5 and not _size_already_oriented(img)
    if width <= 0 or height <= 0:
        raise ImageError(label, f"image has zero size ({width}x{height})")
    return (height, width) if swap else (width, height)


def content_hash(path: str | os.PathLike[str]) -> str:
    """Hex blake2b digest (16 bytes, 32 hex characters) of a file's bytes, streamed.

    Raises:
        ImageError: the file is missing, is a directory or cannot be read.
    """
    label = os.fspath(path)
    digest = hashlib.blake2b(digest_size=16)
    with _open_file(label, allow_empty=True) as f:
        try:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        except OSError as e:
            raise ImageError(label, _os_reason(e)) from e
    return digest.hexdigest()


def find_images(
    root: str | os.PathLike[str], *, exclude_dirs: Collection[str] = (".lookalike",)
) -> list[pathlib.Path]:
    """All image files under ``root``, recursively, by extension (case-insensitive).

    Sorted by their POSIX path relative to ``root``; each returned path is
    ``root`` joined with that relative path. Directories whose name is in
    ``exclude_dirs`` are skipped at any depth, directory symlinks are not
    followed (so symlink loops cannot hang the scan), file symlinks are listed,
    directories named like images (``x.jpg/``) are searched but not listed.
    Unreadable directories are logged as warnings and skipped; entries that
    vanish during the scan are skipped.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        NotADirectoryError: ``root`` is not a directory.
    """
    root_path = pathlib.Path(root)
    if not root_path.is_dir():
        if root_path.exists():
            raise NotADirectoryError(f"{root_path}: not a directory")
        raise FileNotFoundError(f"{root_path}: no such directory")
    excluded = frozenset([exclude_dirs] if isinstance(exclude_dirs, str) else exclude_dirs)

    found: list[tuple[str, str]] = []  # (relative posix path, path)
    pending: list[tuple[str, str]] = [("", os.fspath(root_path))]  # (relative prefix, path)
    while pending:
        prefix, directory = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except FileNotFoundError:
            logger.debug("%s: directory vanished during the scan", directory)
            continue
        except OSError as e:
            logger.warning("%s: cannot list directory (%s), skipped", directory, e.strerror or e)
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in excluded:
                        pending.append((f"{prefix}{entry.name}/", entry.path))
                elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS and (
                    entry.is_file()
                ):
                    found.append((prefix + entry.name, entry.path))
            except OSError as e:  # e.g. a symlink loop named x.jpg
                logger.debug("%s: skipped (%s)", entry.path, e)
    found.sort()
    return [pathlib.Path(path) for _, path in found]


# --------------------------------------------------------------------------- decoding


def _decode_stream(f: IO[bytes], label: str, max_side: int | None, max_pixels: int) -> np.ndarray:
    img = _open_pil(f, label)
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
                piece = f.read(min(remaining, _HASH_CHUNK))
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
    _check_size(width, height, label, max_pixels)

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

    try:
        # ImageFile.LOAD_TRUNCATED_IMAGES is left False: a short file fails here.
        big = _over_pil_limit(width * height)
        limit = _pil_bomb_check_off() if big else contextlib.nullcontext()
        with limit:
            img.load()
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError, ...
        raise ImageError(label, _failure_reason(e, fmt)) from e

    orientation = _orientation(img, label, type(img).getexif)
    rgb = _to_rgb(img, label)
    out = Image.fromarray(rgb) if target is not None or orientation != 1 else None
    if out is not None and target is not None:
        out = out.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)
    if out is not None and orientation in _TRANSPOSE_FOR_ORIENTATION:
        out = out.transpose(_TRANSPOSE_FOR_ORIENTATION[orientation])
    if out is not None:
        rgb = np.asarray(out)
    return _owned_rgb(rgb)


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int] | None:
    """(w, h) with the longer side exactly max_side, or None when no resize is needed."""
    longer = max(width, height)
    if max_side is None or longer <= max_side:
        return None
    scale = max_side / longer
    if width >= height:
        return max_side, max(1, round(height * scale))
    return max(1, round(width * scale)), max_side


def _size_already_oriented(img: Image.Image) -> bool:
    """Whether ``img.size`` already has the EXIF orientation applied.

    True for TIFF in recent Pillow (it reports the rotated size and rotates
    while loading); the stored width and height are in the TIFF tags.
    """
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return False
    stored = (tags.get(256), tags.get(257))  # ImageWidth, ImageLength
    return stored != img.size and stored[::-1] == img.size


def _orientation(img: Image.Image, label: str, getexif: Callable[[Image.Image], Image.Exif]) -> int:
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


def _to_rgb(img: Image.Image, label: str) -> np.ndarray:
    """A loaded image of any mode to (H, W, 3) uint8 (possibly read-only)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode in _INT_MODES:
        return _gray_to_rgb(_int_to_uint8(np.asarray(img)))
    if mode == "F":
        return _gray_to_rgb(_float_to_uint8(np.asarray(img)))
    try:
        if mode == "La":  # premultiplied; Pillow converts it to LA only
            img = img.convert("LA")
        if mode in _ALPHA_MODES or img.has_transparency_data:
            return _over_white(np.asarray(img.convert("RGBA")))
        return np.asarray(img.convert("RGB"))
    except (ValueError, OSError) as e:
        raise ImageError(label, f"unsupported colour mode {mode} ({e})") from e


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8."""
    return np.repeat(gray[:, :, None], 3, axis=2)


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA composited over white -> (H, W, 3) uint8."""
    rgb = rgba[:, :, :3].astype(np.uint16)
    alpha = rgba[:, :, 3:].astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _int_to_uint8(values: np.ndarray) -> np.ndarray:
    """(H, W) integers -> (H, W) uint8.

    Non-negative values are scaled by the smallest bit depth (at least 8) that
    holds the maximum: 0..255 unchanged, 16-bit 0..65535 -> 0..255, 12-bit
    0..4095 -> 0..255. Images with negative values are stretched min..max.
    """
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi <= 255:
        return values.astype(np.uint8)
    if lo >= 0 and hi <= 0xFFFF:
        full = (1 << hi.bit_length()) - 1
        scaled = (values.astype(np.uint32) * 255 + full // 2) // full
        return scaled.astype(np.uint8)
    base, span = (0, (1 << hi.bit_length()) - 1) if lo >= 0 else (lo, hi - lo)
    scaled_f = (values.astype(np.float64) - base) * (255.0 / span)
    return np.rint(scaled_f).clip(0, 255).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """(H, W) floats -> (H, W) uint8: [0, 1] * 255, [0, 255] as is, else stretched.

    NaN becomes 0, infinities the ends of the range.
    """
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.uint8)
    lo, hi = float(values[finite].min()), float(values[finite].max())
    if lo >= 0.0 and hi <= 1.0:
        scaled = values * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = values
    else:
        scaled = (values - lo) * (255.0 / (hi - lo))
    return (
        np.nan_to_num(np.rint(scaled), nan=0.0, posinf=255.0, neginf=0.0)
        .clip(0, 255)
        .astype(np.uint8)
    )


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
        rgb = _gray_to_rgb(array)
    elif array.shape[2] == 4:
        rgb = _over_white(array)
    else:
        rgb = array
    target = _target_size(width, height, max_side)
    if target is not None:
        resized = Image.fromarray(np.ascontiguousarray(rgb)).resize(
            target, Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP
        )
        rgb = np.asarray(resized)
    return _owned_rgb(rgb, copy=rgb is array)


def _owned_rgb(rgb: np.ndarray, *, copy: bool = False) -> np.ndarray:
    """A C-contiguous, writeable array that shares memory with nobody else's."""
    if copy or not rgb.flags.c_contiguous or not rgb.flags.writeable:
        return np.array(rgb, dtype=np.uint8, order="C", copy=True)
    return rgb


# --------------------------------------------------------------------------- opening


@contextlib.contextmanager
def _open_file(path: str, *, allow_empty: bool = False) -> Iterator[IO[bytes]]:
    """Open a regular file for reading; every failure is an ImageError with a reason."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "file not found"
        raise ImageError(path, reason) from None
    except OSError as e:
        raise ImageError(path, _os_reason(e)) from e
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(path, "not a regular file")
    if st.st_size == 0 and not allow_empty:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise ImageError(path, _os_reason(e)) from e
    with f:
        yield f


def _os_reason(e: OSError) -> str:
    reasons = {
        errno.ENOENT: "file not found",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a directory",
        errno.ELOOP: "too many levels of symbolic links",
        errno.ENAMETOOLONG: "file name too long",
        errno.EIO: "input/output error while reading",
    }
    return reasons.get(e.errno or 0, f"cannot read file ({e.strerror or e})")


def _open_pil(f: IO[bytes], label: str) -> Image.Image:
    """Identify the image in f and read its header (no pixels)."""
    try:
        # Our own check against max_pixels guards the decode; PIL's global one
        # would refuse bombs without saying their size, and warn about images
        # between its warning and error thresholds.
        with _pil_bomb_check_off():
            return Image.open(f)
    except UnidentifiedImageError:
        reason = _unidentified_reason(_head(f))
    except Exception as e:  # a plugin failed on a corrupt header
        fmt = _magic_format(_head(f)) or "image"
        reason = _failure_reason(e, fmt, "header")
    raise ImageError(label, reason)


def _head(f: IO[bytes]) -> bytes:
    try:
        f.seek(0)
        return f.read(_SNIFF_BYTES)
    except (OSError, ValueError):
        return b""


@contextlib.contextmanager
def _pil_bomb_check_off() -> Iterator[None]:
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


def _over_pil_limit(pixels: int) -> bool:
    limit = Image.MAX_IMAGE_PIXELS
    return limit is not None and pixels > limit


# --------------------------------------------------------------------------- reasons


def _check_size(width: int, height: int, label: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(label, f"image has zero size ({width}x{height})")
    pixels = width * height
    if pixels > max_pixels:
        size = f"{width}x{height} = {_mpx(pixels)} Mpx"
        raise ImageError(label, f"image is {size}, over the {_mpx(max_pixels)} Mpx limit")


def _mpx(pixels: int) -> str:
    """900_000_000 -> '900', 65_536_000 -> '65.5'."""
    return f"{pixels / 1e6:.1f}".removesuffix(".0")


def _failure_reason(e: Exception, fmt: str, part: str = "data") -> str:
    """A reason for a PIL exception raised while reading a file's ``part`` ("data"/"header")."""
    message = str(e)
    lowered = message.lower()
    if isinstance(e, MemoryError):
        return f"out of memory decoding the {fmt} data"
    if isinstance(e, EOFError) or "truncated" in lowered or "premature end" in lowered:
        return f"truncated {fmt} {part}"
    if "crc" in lowered or "checksum" in lowered:
        return f"corrupt {fmt} {part} (checksum mismatch)"
    if any(word in lowered for word in ("broken", "corrupt", "unrecognized", "decoder error")):
        return f"corrupt {fmt} {part} ({message})"
    return f"cannot decode {fmt} {part} ({type(e).__name__}: {message})"


def _magic_format(head: bytes) -> str | None:
    """The image format a file's first bytes announce, if any."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 26 and head[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    return None


def _unidentified_reason(head: bytes) -> str:
    """Why Pillow could not identify a file, judged from its first bytes."""
    fmt = _magic_format(head)
    if fmt is not None:
        return f"corrupt or truncated {fmt} header"
    if head[4:8] == b"ftyp":
        return _iso_media_reason(head)
    reason = _other_format_reason(head)
    if reason is not None:
        return reason
    text = _as_text(head)
    if text is not None:
        return _text_reason(text)
    return f"not an image file (unrecognised format, starts with {head[:8].hex(' ')})"


def _iso_media_reason(head: bytes) -> str:
    """Why an ISO media file (``ftyp`` box: HEIF, AVIF, CR3, MP4...) cannot be read."""
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    if brands & _HEIF_BRANDS:
        return "HEIC/HEIF is not supported (install pillow-heif)"
    if brands & _AVIF_BRANDS:
        return "AVIF is not supported by this Pillow build"
    if head[8:12] == b"crx ":
        return "camera RAW (CR3) is not supported"
    if brands & _VIDEO_BRANDS:
        return "not an image file (looks like an MP4/QuickTime video)"
    return f"unsupported ISO media file (brand {head[8:12].decode('latin-1')!r})"


def _other_format_reason(head: bytes) -> str | None:
    """The reason for a known non-image or unsupported binary format (JPEG XL, PDF, archives)."""
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL is not supported"
    if head.startswith(b"%PDF"):
        return "not an image file (looks like PDF)"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "not an image file (looks like a zip archive)"
    if head.startswith(b"\x1f\x8b"):
        return "not an image file (looks like gzip data)"
    if head.startswith((b"Rar!\x1a\x07", b"7z\xbc\xaf\x27\x1c")):
        return "not an image file (looks like a RAR/7z archive)"
    return None


def _text_reason(text: str) -> str:
    """Why a file that decodes as text is not an image (HTML, SVG, XML or plain text)."""
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    if lowered.startswith(("<!doctype html", "<html")) or (
        lowered.startswith("<") and ("<html" in lowered or "<head" in lowered)
    ):
        return "not an image file (looks like HTML)"
    if "<svg" in lowered:
        return "SVG (vector) images are not supported; rasterise it first"
    if lowered.startswith("<?xml"):
        return "not an image file (looks like XML)"
    return "not an image file (looks like text)"


def _as_text(head: bytes) -> str | None:
    """head decoded as UTF-8 when it looks like text (a cut-off last character allowed)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    if any(ch < " " and ch not in "\t\n\r\f" for ch in text):
        return None
    return text
