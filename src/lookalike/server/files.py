"""The server's file handling: uploads saved into the collection, originals served from inside
it only, thumbnails (one cached size an image, smaller ones made from it), and deleted images
moved to a trash folder (never destroyed)."""

from __future__ import annotations

import io
import os
import re
import time
import unicodedata
from pathlib import Path

from PIL import Image

from lookalike.images import ImageError, load_image, sniff
from lookalike.index.layout import IndexLayout

UPLOAD_DIR = "uploads"
"""Where uploaded images go, under the collection root, in one folder a day."""

EXTENSION_OF = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "TIFF": ".tif",
    "BMP": ".bmp",
    "HEIF": ".heic",
}
"""Formats taken as uploads (sniffed from the content) and the extension each is saved with."""
MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".bmp": "image/bmp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}


class UnsafePath(Exception):
    """A path that would leave the collection root."""


def inside(root: Path, relative: str) -> Path:
    """`root / relative`, resolved (symbolic links followed), refusing anything that ends up
    outside `root`."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or path == base:
        raise UnsafePath(f"{relative!r} is outside the collection")
    return path


def check_upload(data: bytes, name: str) -> str:
    """The extension to save an upload with, from its content; ImageError when it is not an
    image format the collection takes."""
    fmt = sniff(data, name)
    extension = EXTENSION_OF.get(fmt.upper())
    if extension is None:
        raise ImageError(name, f"{fmt} images are not taken as uploads")
    return extension


def safe_name(name: str, extension: str, limit: int = 80) -> str:
    """A file name from an uploaded one: no folders, no control or odd characters, the
    extension matching the content."""
    stem = Path(name.replace("\\", "/").split("/")[-1]).stem
    stem = unicodedata.normalize("NFC", stem)
    stem = re.sub(r"[^\w\-. ]+", "_", stem).strip(" ._")[:limit]
    return f"{stem or 'upload'}{extension}"


def save_upload(root: Path, data: bytes, name: str, extension: str) -> str:
    """Write an upload under `root/uploads/YYYY-MM-DD/`, never over an existing file; returns
    its path relative to `root`. The bytes go to a hidden partial file first, renamed when
    complete, so an index run scanning the folder never sees half a file."""
    folder = root / UPLOAD_DIR / time.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = safe_name(name, extension)
    stem, suffix = os.path.splitext(wanted)
    partial = folder / f".{stem}.{os.getpid()}.{time.monotonic_ns()}.part"
    partial.write_bytes(data)
    for n in range(10_000):
        target = folder / (wanted if n == 0 else f"{stem}-{n}{suffix}")
        try:
            os.link(partial, target)  # fails if the name is taken: no overwrite race
        except FileExistsError:
            continue
        except OSError:  # no hard links here (FAT, some network file systems)
            try:  # claim the name, then move the complete file onto it
                os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                continue
            os.replace(partial, target)
            return target.relative_to(root).as_posix()
        partial.unlink()
        return target.relative_to(root).as_posix()
    partial.unlink()
    raise FileExistsError(f"too many uploads named {wanted} today")


def move_to_trash(root: Path, index_dir: Path, relative: str) -> Path:
    """Move an image out of the collection into the index folder's trash, keeping its path."""
    source = inside(root, relative)
    target = IndexLayout(index_dir).trash / time.strftime("%Y%m%d-%H%M%S") / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target


def thumbnail_path(cache: Path, key: str, size: int) -> Path:
    """Where the thumbnail of the image whose content hash is `key` is kept at `size`."""
    return cache / f"{key}-{size}.jpg"


def make_thumbnail(source: Path, path: Path, size: int) -> None:
    """Write a JPEG of `source` no larger than `size` on either side to `path` (atomically)."""
    pixels = load_image(source, max_side=size)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.part")
    Image.fromarray(pixels).save(partial, "JPEG", quality=85)
    os.replace(partial, path)


def smaller_thumbnail(path: Path, size: int) -> bytes:
    """A JPEG no larger than `size` on either side, made from the thumbnail at `path` (a few
    hundred pixels decoded, not the original)."""
    buffer = io.BytesIO()
    Image.fromarray(load_image(path, max_side=size)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def preview_png(source: Path | bytes, size: int) -> bytes:
    """A PNG of `source` (a file or its bytes) no larger than `size` on either side, upright:
    for the formats a browser cannot show (TIFF, ...). ImageError when it is no image."""
    buffer = io.BytesIO()
    Image.fromarray(load_image(source, max_side=size)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
