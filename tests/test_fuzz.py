"""Fuzzing the decoder boundary: mutated JPEG, PNG, GIF, TIFF, WebP and BMP files (bit flips,
byte overwrites, truncations, insertions, deletions, duplicated or dropped chunks, changed
header fields such as the width and height) go to `load_image` (as bytes and as a file),
`source_size` and `sniff`. The only exception allowed is `ImageError`; a decode that succeeds
gives (H, W, 3) uint8, the same from bytes as from the file.

Derandomised: every run tries the same `FUZZ_CASES` files.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import skimage.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lookalike.images import ImageError, load_image, sniff, source_size

FUZZ_CASES = 1000
"""Mutated files tried (hypothesis examples)."""
FUZZ_MAX_PIXELS = 4_000_000
"""A lower limit than the default keeps each case fast when a mutation claims a large size;
the refusal itself is part of what is fuzzed."""

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF data"

Order = Literal["big", "little"]
Field = tuple[int, int, Order]
"""(offset, size in bytes, byte order) of an integer header field."""
Span = tuple[int, int]
"""(start, end) of a structural unit: a chunk, a marker segment, a block, an IFD entry."""


@dataclass(frozen=True)
class Base:
    """A small valid file and where its header fields and structural units lie."""

    name: str
    suffix: str
    data: bytes
    fields: tuple[Field, ...]
    spans: tuple[Span, ...]
    magic: int
    """Length of the signature: most mutations leave it alone, so that they reach a decoder."""


# --------------------------------------------------------------------------- base files


def _u(data: bytes, offset: int, size: int, order: Order) -> int:
    return int.from_bytes(data[offset : offset + size], order)


def _png_layout(data: bytes) -> tuple[list[Field], list[Span]]:
    fields: list[Field] = [(16, 4, "big"), (20, 4, "big")]  # IHDR width, height
    fields += [(offset, 1, "big") for offset in range(24, 29)]  # depth, colour type, ...
    spans: list[Span] = []
    pos = 8
    while pos + 12 <= len(data):
        length = _u(data, pos, 4, "big")
        fields.append((pos, 4, "big"))
        spans.append((pos, pos + 12 + length))
        pos += 12 + length
    return fields, spans


def _jpeg_layout(data: bytes) -> tuple[list[Field], list[Span]]:
    fields: list[Field] = []
    spans: list[Span] = []
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], _u(data, pos + 2, 2, "big")
        fields.append((pos + 2, 2, "big"))
        spans.append((pos, pos + 2 + length))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            fields += [(pos + 4, 1, "big"), (pos + 5, 2, "big"), (pos + 7, 2, "big")]
            fields.append((pos + 9, 1, "big"))  # components, then their sampling factors
            fields += [(pos + 11 + 3 * i, 1, "big") for i in range(3)]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            fields += [(pos + 4, 1, "big")]
            spans.append((pos + 2 + length, len(data) - 2))
            break
        pos += 2 + length
    return fields, spans


def _gif_layout(data: bytes) -> tuple[list[Field], list[Span]]:
    fields: list[Field] = [(6, 2, "little"), (8, 2, "little"), (10, 1, "little")]
    spans: list[Span] = []

    def sub_blocks(pos: int) -> int:
        while pos < len(data) and data[pos]:
            pos += data[pos] + 1
        return pos + 1

    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while pos < len(data) and data[pos] != 0x3B:
        start = pos
        if data[pos] == 0x21:  # extension
            pos = sub_blocks(pos + 2)
        elif data[pos] == 0x2C:  # image descriptor: left, top, width, height, flags
            fields += [(pos + 1 + 2 * i, 2, "little") for i in range(4)] + [(pos + 9, 1, "little")]
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            fields.append((pos, 1, "little"))  # LZW minimum code size
            pos = sub_blocks(pos + 1)
        else:
            break
        spans.append((start, pos))
    return fields, spans


def _tiff_layout(data: bytes) -> tuple[list[Field], list[Span]]:
    fields: list[Field] = [(4, 4, "little")]  # offset of the first IFD
    spans: list[Span] = []
    ifd = _u(data, 4, 4, "little")
    count = _u(data, ifd, 2, "little")
    fields.append((ifd, 2, "little"))
    for i in range(count):
        entry = ifd + 2 + 12 * i
        value_size = 2 if _u(data, entry + 2, 2, "little") == 3 else 4  # SHORT or LONG
        fields += [(entry + 2, 2, "little"), (entry + 4, 4, "little")]
        fields.append((entry + 8, value_size, "little"))
        spans.append((entry, entry + 12))
    return fields, spans


def _webp_layout(data: bytes) -> tuple[list[Field], list[Span]]:
    fields: list[Field] = [(4, 4, "little")]  # RIFF size
    spans: list[Span] = []
    pos = 12
    while pos + 8 <= len(data):
        fourcc, size = data[pos : pos + 4], _u(data, pos + 4, 4, "little")
        fields.append((pos + 4, 4, "little"))
        if fourcc == b"VP8 ":  # key frame: tag, start code, 14-bit width and height
            fields += [(pos + 14, 2, "little"), (pos + 16, 2, "little"), (pos + 8, 3, "little")]
        elif fourcc == b"VP8L":  # signature, then width-1 and height-1 packed in 28 bits
            fields += [(pos + 8, 1, "little"), (pos + 9, 4, "little")]
        spans.append((pos, pos + 8 + size + (size & 1)))
        pos += 8 + size + (size & 1)
    return fields, spans


def _bmp_layout(data: bytes) -> tuple[list[Field], list[Span]]:
    # file size, pixel offset, header size, width, height, planes, bits, compression,
    # image size, colours used
    offsets = [(2, 4), (10, 4), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2), (30, 4), (34, 4)]
    fields: list[Field] = [(offset, size, "little") for offset, size in offsets]
    fields.append((46, 4, "little"))
    row = 32 * 3
    spans: list[Span] = [(54 + row * i, 54 + row * (i + 1)) for i in range(0, 32, 4)]
    return fields, spans


def _encode(images: list[Image.Image], fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    if len(images) > 1:
        kwargs.update(save_all=True, append_images=images[1:])
    images[0].save(buf, fmt, **kwargs)
    return buf.getvalue()


Layout = Callable[[bytes], tuple[list[Field], list[Span]]]
_BASES: list[tuple[str, str, int, Layout, str, dict[str, Any]]] = [
    # name, suffix, signature length, layout, Pillow format, save options
    ("jpeg-exif", ".jpg", 3, _jpeg_layout, "JPEG", {"quality": 80, "orientation": 6}),
    ("jpeg-progressive", ".jpg", 3, _jpeg_layout, "JPEG", {"progressive": True}),
    ("png-rgb", ".png", 8, _png_layout, "PNG", {}),
    ("png-palette-alpha", ".png", 8, _png_layout, "PNG", {"palette": True, "transparency": 0}),
    ("gif-animated", ".gif", 6, _gif_layout, "GIF", {"frames": 2, "duration": 50, "loop": 0}),
    ("tiff-raw", ".tif", 4, _tiff_layout, "TIFF", {}),
    ("tiff-lzw", ".tif", 4, _tiff_layout, "TIFF", {"compression": "tiff_lzw"}),
    ("webp-lossy", ".webp", 16, _webp_layout, "WEBP", {"quality": 70}),
    ("webp-lossless", ".webp", 16, _webp_layout, "WEBP", {"lossless": True}),
    ("bmp", ".bmp", 2, _bmp_layout, "BMP", {}),
]


@functools.cache
def bases() -> tuple[Base, ...]:
    """The valid 32x32 files that are mutated, with their layouts."""
    astronaut = Image.fromarray(skimage.data.astronaut()).resize((32, 32))
    made = []
    for name, suffix, magic, layout, fmt, options in _BASES:
        options = dict(options)
        frames = [astronaut, astronaut.transpose(Image.Transpose.ROTATE_90)]
        images = frames[: options.pop("frames", 1)]
        if options.pop("palette", False):
            images = [img.quantize(16) for img in images]
        if "orientation" in options:
            exif = Image.Exif()
            exif[0x0112] = options.pop("orientation")
            options["exif"] = exif
        data = _encode(images, fmt, **options)
        fields, spans = layout(data)
        made.append(Base(name, suffix, data, tuple(fields), tuple(spans), magic))
    return tuple(made)


# --------------------------------------------------------------------------- mutations

_INTERESTING = [0, 1, 2, 3, 7, 8, 15, 16, 255, 256, 4095, 32767, 32768, 65535, 65536]
_INTERESTING += [2**24, 2**31 - 1, 2**31, 2**32 - 1]
_OPS = (
    "flip",
    "overwrite",
    "truncate",
    "insert",
    "delete",
    "duplicate",
    "field",
    "drop unit",
    "repeat unit",
)


def _position(draw: Callable[[Any], Any], base: Base, length: int) -> int:
    """An offset in [0, length]: past the signature and often within the headers, rarely in
    the signature itself."""
    start = min(base.magic, length)
    near = st.integers(start, min(length, start + 96))
    anywhere = st.integers(start, length)
    return int(draw(st.one_of(near, anywhere, near, st.integers(0, length))))


def _mutate(draw: Callable[[Any], Any], op: str, base: Base, data: bytearray) -> bytearray:
    n = len(data)
    if op == "flip" and n:
        pos = _position(draw, base, n - 1)
        data[pos] ^= 1 << draw(st.integers(0, 7))
    elif op == "overwrite" and n:
        pos = _position(draw, base, n - 1)
        patch = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b"\x00", b"\xff"] * 2))
        data[pos : pos + len(patch)] = patch
    elif op == "truncate":
        del data[_position(draw, base, n) :]
    elif op == "insert":
        data[_position(draw, base, n) : 0] = draw(st.binary(min_size=1, max_size=32))
    elif op == "delete" and n:
        pos = _position(draw, base, n - 1)
        del data[pos : pos + draw(st.integers(1, 32))]
    elif op == "duplicate" and n:
        start = draw(st.integers(0, n - 1))
        piece = data[start : start + draw(st.integers(1, 256))]
        data[_position(draw, base, n) : 0] = piece
    elif op == "field":
        offset, size, order = draw(st.sampled_from(base.fields))
        value = draw(st.sampled_from(_INTERESTING) | st.integers(0, 2**32 - 1))
        data[offset : offset + size] = (value % (1 << 8 * size)).to_bytes(size, order)
    elif op in ("drop unit", "repeat unit") and base.spans:
        start, end = draw(st.sampled_from(base.spans))
        unit = data[start:end]
        if op == "drop unit":
            del data[start:end]
        else:
            data[end:end] = unit * draw(st.integers(1, 3))
    return data


def _fix_png_crcs(data: bytearray) -> None:
    """Recompute every complete PNG chunk's CRC, so that mutations reach past the checksums."""
    pos = 8
    while pos + 12 <= len(data):
        length = _u(bytes(data[pos : pos + 4]), 0, 4, "big")
        end = pos + 8 + length
        if end + 4 > len(data):
            return
        data[end : end + 4] = struct.pack(">I", zlib.crc32(bytes(data[pos + 4 : end])))
        pos = end + 4


@st.composite
def mutants(draw: Callable[[Any], Any]) -> tuple[Base, bytes]:
    """A base file with one to four mutations applied."""
    base = bases()[draw(st.integers(0, len(_BASES) - 1))]
    data = bytearray(base.data)
    for op in draw(st.lists(st.sampled_from(_OPS), min_size=1, max_size=4)):
        data = _mutate(draw, op, base, data)
    if base.suffix == ".png" and draw(st.booleans()):
        _fix_png_crcs(data)
    return base, bytes(data)


# --------------------------------------------------------------------------- the fuzz


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _decoded(source: bytes | Path, max_side: int | None) -> np.ndarray | None:
    """load_image's result, or None for an ImageError; any other exception propagates."""
    try:
        result = load_image(source, max_side, max_pixels=FUZZ_MAX_PIXELS)
    except ImageError as e:
        assert e.reason, e
        assert str(e) == f"{e.path}: {e.reason}"
        return None
    assert result.ndim == 3 and result.shape[2] == 3, result.shape
    assert result.dtype == np.uint8
    assert result.flags.c_contiguous and result.flags.writeable
    assert min(result.shape[:2]) >= 1
    if max_side is not None:
        assert max(result.shape[:2]) <= max_side
    return result


def _size(source: bytes | Path) -> tuple[int, int] | None:
    try:
        width, height = source_size(source)
    except ImageError:
        return None
    assert width >= 1 and height >= 1
    return width, height


def test_bases_are_valid() -> None:
    for base in bases():
        assert load_image(base.data).shape[2] == 3, base.name
        assert sniff(base.data) in {"JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP"}, base.name
        assert all(0 <= offset < len(base.data) for offset, _, _ in base.fields), base.name
        assert all(0 <= start < end <= len(base.data) for start, end in base.spans), base.name


@settings(
    max_examples=FUZZ_CASES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=mutants(), max_side=st.none() | st.integers(1, 48))
def test_mutated_files_raise_only_image_error(
    fuzz_dir: Path, case: tuple[Base, bytes], max_side: int | None
) -> None:
    base, data = case
    path = fuzz_dir / f"case{base.suffix}"
    path.write_bytes(data)

    from_bytes = _decoded(data, max_side)
    from_file = _decoded(path, max_side)
    assert (from_bytes is None) == (from_file is None)
    if from_bytes is not None and from_file is not None:
        np.testing.assert_array_equal(from_bytes, from_file)

    size = _size(data)
    assert _size(path) == size
    if from_bytes is not None and max_side is None:
        assert size == (from_bytes.shape[1], from_bytes.shape[0])

    try:
        fmt = sniff(data, max_pixels=FUZZ_MAX_PIXELS)
    except ImageError:
        pass
    else:
        assert fmt and size is not None
