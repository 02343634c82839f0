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

Where each part lives: :mod:`~lookalike.images.decode` (``load_image``),
:mod:`~lookalike.images.header` (sizes and formats from headers),
:mod:`~lookalike.images.files` (extensions, listing, hashing),
:mod:`~lookalike.images.errors` (``ImageError``) and, behind them,
:mod:`~lookalike.images.opening`, :mod:`~lookalike.images.orientation`,
:mod:`~lookalike.images.pixels` and :mod:`~lookalike.images.reasons`.
"""

from lookalike.images.decode import load_image
from lookalike.images.errors import ImageError
from lookalike.images.files import IMAGE_EXTENSIONS, content_hash, find_images
from lookalike.images.header import image_size, sniff, source_size
from lookalike.images.opening import DEFAULT_MAX_PIXELS
from lookalike.images.source import ImageSource

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageError",
    "ImageSource",
    "content_hash",
    "find_images",
    "image_size",
    "load_image",
    "sniff",
    "source_size",
]
