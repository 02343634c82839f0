"""Hostile inputs: one folder of broken, odd and awkward files next to a few good photographs,
indexed once. The run never stops: every file is either indexed correctly (upright, in RGB, and
found first by a search with itself) or reported with a clear reason, memory stays bounded (the
decompression bombs are refused from their headers), and the good images stay searchable.

Every file is made here (nothing is downloaded or committed). The index runs with `workers=1`,
in this process, so that the file that vanishes mid-run can be removed deterministically right
before it is decoded and the peak memory of the decoding is this process's.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import resource
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
from PIL import Image

from lookalike.collection import Collection, IndexReport
from lookalike.features import batch
from lookalike.images import load_image
from test_images import _STORE_FOR_ORIENTATION  # the inverse of each EXIF orientation

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning"),  # the broken EXIF
]

INDEXED, FAILED, IGNORED = "indexed", "failed", "ignored"

DEEP = "/".join(f"level-{i:02d}-" + "d" * 110 for i in range(24))
"""24 nested folders, 2879 characters."""
LONG_NAME = "n" * 250 + ".png"  # 254 bytes, one short of the usual NAME_MAX
LONG_UTF8_NAME = "猫" * 83 + ".jpg"  # 253 bytes in UTF-8
NOT_UTF8_NAME = b"not-utf8-\xff\xfe.jpg"
ORIENTATION_SIZE = (120, 80)
"""(width, height) of the upright pictures stored sideways with an EXIF orientation."""
PEAK_RSS_LIMIT = 1.5 * 2**30
"""Bytes the index run may add to this process's peak memory; one 30000x30000 RGB decode
alone would take 2.7 GB."""


@dataclass(frozen=True)
class Kind:
    """One kind of hostile input and what the index run must make of it.

    expect: INDEXED (searchable, with the upright `size`), FAILED (in `report.failed` with a
        reason containing `reason`, case-insensitive) or IGNORED (neither: not an image file).
    paths: the entries made for it, relative to the collection root as the catalog names them.
    inside: images inside a hostile directory entry, each to be indexed exactly once.
    twin: an indexed file with the same bytes, which a search may give first instead.
    """

    name: str
    paths: tuple[str, ...]
    expect: str
    reason: str = ""
    size: tuple[int, int] | None = None
    inside: tuple[str, ...] = ()
    twin: str | None = None


GOOD: tuple[Kind, ...] = (
    Kind("good JPEG", ("good/astronaut.jpg",), INDEXED, size=(256, 256)),
    Kind("good PNG", ("good/chelsea.png",), INDEXED, size=(451, 300)),
    Kind("good WebP", ("good/coffee.webp",), INDEXED, size=(300, 200)),
)

KINDS: tuple[Kind, ...] = (
    # broken or not images at all: reported with a reason
    Kind("truncated JPEG", ("bad/truncated.jpg",), FAILED, "truncated JPEG"),
    Kind("JPEG cut inside its header", ("bad/header-only.jpg",), FAILED, "JPEG header"),
    Kind("truncated PNG", ("bad/truncated.png",), FAILED, "truncated PNG"),
    Kind("PNG with a bad CRC", ("bad/bad-crc.png",), FAILED, "CRC"),
    Kind("empty file (0 bytes)", ("bad/empty.jpg",), FAILED, "empty"),
    Kind("text named .jpg", ("bad/notes.jpg",), FAILED, "looks like text"),
    Kind("HTML named .jpg", ("bad/page.jpg",), FAILED, "HTML"),
    Kind("zip named .jpg", ("bad/archive.jpg",), FAILED, "zip"),
    Kind("PDF named .jpg", ("bad/document.jpg",), FAILED, "PDF"),
    Kind("SVG named .png", ("bad/vector.png",), FAILED, "SVG"),
    Kind("gzip named .png", ("bad/compressed.png",), FAILED, "gzip"),
    Kind("MP4 video named .jpg", ("bad/video.jpg",), FAILED, "video"),
    Kind("random bytes named .bmp", ("bad/noise.bmp",), FAILED, "unrecognised"),
    Kind("damaged HEIC named .jpg", ("bad/phone.jpg",), FAILED, "HEIC"),
    Kind("PNG bomb claiming 30000x30000", ("bad/bomb.png",), FAILED, "900 Mpx"),
    Kind("GIF bomb claiming 30000x30000", ("bad/bomb.gif",), FAILED, "900 Mpx"),
    Kind("file deleted before it is decoded", ("bad/vanishing.jpg",), FAILED, "file not found"),
    Kind(
        "file name that is not UTF-8",
        ("odd/" + NOT_UTF8_NAME.decode("utf-8", "backslashreplace"),),
        FAILED,
        "UTF-8",
    ),
    # unreadable: 'permission denied', except for root, who reads it (see the test)
    Kind(
        "unreadable file (mode 000)",
        ("odd/locked.png",),
        FAILED,
        "permission denied",
        size=(90, 60),
    ),
    # odd but fine: indexed upright and in RGB
    Kind("1x1 image", ("odd/dot.png",), INDEXED, size=(1, 1)),
    Kind("1x20000 strip", ("odd/tall.png",), INDEXED, size=(1, 20000)),
    Kind("20000x1 strip", ("odd/wide.png",), INDEXED, size=(20000, 1)),
    Kind("CMYK JPEG", ("odd/cmyk.jpg",), INDEXED, size=(160, 120)),
    Kind("16-bit greyscale PNG", ("odd/sixteen.png",), INDEXED, size=(160, 120)),
    Kind("greyscale + alpha (LA) PNG", ("odd/la.png",), INDEXED, size=(160, 120)),
    Kind("palette PNG with transparency", ("odd/palette.png",), INDEXED, size=(160, 120)),
    Kind("animated GIF", ("odd/animated.gif",), INDEXED, size=(160, 120)),
    Kind("multi-page TIFF", ("odd/pages.tif",), INDEXED, size=(160, 120)),
    Kind(
        "EXIF orientations 1-8 (JPEG stored sideways)",
        tuple(f"odd/orientation-{k}.jpg" for k in range(1, 9)),
        INDEXED,
        size=ORIENTATION_SIZE,
    ),
    Kind("EXIF orientation 6 in a TIFF", ("odd/rotated.tif",), INDEXED, size=ORIENTATION_SIZE),
    Kind("broken EXIF", ("odd/broken-exif.jpg",), INDEXED, size=(160, 120)),
    Kind("name with spaces", ("names/with some spaces .jpg",), INDEXED, size=(90, 60)),
    Kind("unicode name", ("names/ünïcødé 猫 ☃.png",), INDEXED, size=(90, 60)),
    Kind("newline in the name", ("names/new\nline.jpg",), INDEXED, size=(90, 60)),
    Kind(
        "very long path (24 folders, 254-byte name)",
        (f"{DEEP}/{LONG_NAME}",),
        INDEXED,
        size=(90, 60),
    ),
    Kind("253-byte UTF-8 name", (f"names/{LONG_UTF8_NAME}",), INDEXED, size=(90, 60)),
    Kind("JPEG named .png", ("odd/really-a-jpeg.png",), INDEXED, size=(90, 60)),
    Kind("upper-case extension", ("odd/SHOUTING.JPEG",), INDEXED, size=(90, 60)),
    Kind(
        "symlink to an image",
        ("links/astronaut.jpg",),
        INDEXED,
        size=(256, 256),
        twin="good/astronaut.jpg",
    ),
    Kind("directory named x.jpg", ("x.jpg",), IGNORED, inside=("x.jpg/inner.png",)),
    # not image files: neither indexed nor failed, and the scan does not hang on them
    Kind(
        "symlink loop (folder link to its parent)", ("loops/up",), IGNORED, inside=("loops/in.png",)
    ),
    Kind("symlink loop (file link to itself)", ("links/self.jpg",), IGNORED),
    Kind("dangling symlink", ("links/dangling.jpg",), IGNORED),
    Kind("named pipe (FIFO) named .jpg", ("odd/pipe.jpg",), IGNORED),
)
"""Every kind of hostile input tried; the good photographs are in GOOD."""


# --------------------------------------------------------------------------- making the files


@functools.cache
def _source(name: str) -> np.ndarray:
    picture = getattr(skimage.data, name)()
    return np.repeat(picture[:, :, None], 3, axis=2) if picture.ndim == 2 else picture[:, :, :3]


def _photo(name: str, width: int, height: int, x: int = 0, y: int = 0) -> np.ndarray:
    """(height, width, 3) uint8: a crop of a scikit-image photograph."""
    return np.ascontiguousarray(_source(name)[y : y + height, x : x + width])


def _encoded(picture: np.ndarray | Image.Image, fmt: str, **kwargs: Any) -> bytes:
    img = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _over_white(rgba: np.ndarray) -> np.ndarray:
    rgb, alpha = rgba[:, :, :3].astype(np.uint16), rgba[:, :, 3:].astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (with a valid IHDR CRC)."""
    png = bytearray(_encoded(Image.new("RGB", (4, 4), "white"), "PNG"))
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def _gif_claiming(width: int, height: int) -> bytes:
    """A 50-byte GIF whose screen and one frame claim width x height."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return b"GIF89a" + screen + frame + b"\x3b"


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("photo.jpg", b"not really a photo")
    return buf.getvalue()


_ORIENTATION_SOURCES = [
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
    "rocket",
    "colorwheel",
    "brick",
    "clock",
    "cell",
]


def _sideways(upright: np.ndarray, orientation: int) -> tuple[Image.Image, Image.Exif]:
    stored = Image.fromarray(upright)
    if (method := _STORE_FOR_ORIENTATION[orientation]) is not None:
        stored = stored.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, exif


def _write(root: Path, relative: str, data: bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _make_corpus(root: Path) -> dict[str, tuple[np.ndarray, float]]:
    """Write every GOOD and KINDS entry under `root`.

    Returns the decoded pixels expected of some odd-but-fine files: relative path ->
    ((H, W, 3) uint8 upright RGB, largest mean absolute difference allowed).
    """
    expected: dict[str, tuple[np.ndarray, float]] = {}
    small = [_photo("astronaut", 90, 60, 40 * i, 300) for i in range(10)]

    astronaut = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((256, 256)))
    _write(root, "good/astronaut.jpg", _encoded(astronaut, "JPEG", quality=92))
    _write(root, "good/chelsea.png", _encoded(skimage.data.chelsea(), "PNG"))
    coffee = np.asarray(Image.fromarray(skimage.data.coffee()).resize((300, 200)))
    _write(root, "good/coffee.webp", _encoded(coffee, "WEBP", quality=90))

    # broken files
    jpeg = _encoded(skimage.data.chelsea(), "JPEG", quality=90)
    _write(root, "bad/truncated.jpg", jpeg[: len(jpeg) // 2])
    _write(root, "bad/header-only.jpg", jpeg[:10])
    png = _encoded(skimage.data.chelsea(), "PNG")
    _write(root, "bad/truncated.png", png[: len(png) // 2])
    bad_crc = bytearray(png)
    idat = bad_crc.index(b"IDAT")
    length = struct.unpack(">I", bad_crc[idat - 4 : idat])[0]
    bad_crc[idat + 4 + length] ^= 0xFF  # the checksum only: the data still inflates
    _write(root, "bad/bad-crc.png", bytes(bad_crc))
    _write(root, "bad/empty.jpg", b"")
    _write(root, "bad/notes.jpg", b"Holiday photos: remember to copy them\n" * 30)
    _write(root, "bad/page.jpg", b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>")
    _write(root, "bad/archive.jpg", _zip_bytes())
    _write(root, "bad/document.jpg", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    _write(
        root, "bad/vector.png", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'
    )
    _write(root, "bad/compressed.png", gzip.compress(png[:1000]))
    _write(root, "bad/video.jpg", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(200))
    _write(root, "bad/noise.bmp", np.random.default_rng(7).bytes(4096))
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    _write(root, "bad/phone.jpg", heic + np.random.default_rng(8).bytes(500))
    _write(root, "bad/bomb.png", _png_claiming(30000, 30000))
    _write(root, "bad/bomb.gif", _gif_claiming(30000, 30000))
    _write(root, "bad/vanishing.jpg", _encoded(small[0], "JPEG"))
    not_utf8 = os.fsencode(root / "odd") + b"/" + NOT_UTF8_NAME
    _write(root, "odd/locked.png", _encoded(small[1], "PNG")).chmod(0)
    Path(os.fsdecode(not_utf8)).write_bytes(_encoded(small[2], "JPEG"))

    # odd but fine
    _write(root, "odd/dot.png", _encoded(np.array([[[200, 30, 90]]], np.uint8), "PNG"))
    ramp = np.linspace(0, 255, 20000)
    channels = np.stack([ramp, 127.5 + 127.5 * np.sin(ramp / 9), ramp[::-1]], axis=-1)
    strip = channels.round().astype(np.uint8)[:, None]  # (20000, 1, 3)
    _write(root, "odd/tall.png", _encoded(strip, "PNG"))
    _write(root, "odd/wide.png", _encoded(np.ascontiguousarray(strip.transpose(1, 0, 2)), "PNG"))

    rocket = _photo("rocket", 160, 120, 240, 150)
    cmyk = Image.fromarray(rocket).convert("CMYK")
    _write(root, "odd/cmyk.jpg", _encoded(cmyk, "JPEG", quality=95))
    expected["odd/cmyk.jpg"] = (rocket, 4.0)

    camera = _photo("camera", 160, 120, 150, 60)[:, :, 0]
    _write(
        root, "odd/sixteen.png", _encoded(Image.fromarray(camera.astype(np.uint16) * 257), "PNG")
    )
    expected["odd/sixteen.png"] = (np.repeat(camera[:, :, None], 3, axis=2), 0.0)

    moon = _photo("moon", 160, 120, 200, 200)[:, :, 0]
    alpha = np.linspace(0, 255, 160).round().astype(np.uint8)[None].repeat(120, axis=0)
    la = Image.merge("LA", [Image.fromarray(moon), Image.fromarray(alpha)])
    _write(root, "odd/la.png", _encoded(la, "PNG"))
    expected["odd/la.png"] = (_over_white(np.asarray(la.convert("RGBA"))), 0.0)

    palette = Image.fromarray(_photo("colorwheel", 160, 120, 100, 120)).quantize(32)
    _write(root, "odd/palette.png", _encoded(palette, "PNG", transparency=0))
    with Image.open(root / "odd/palette.png") as opened:
        expected["odd/palette.png"] = (_over_white(np.asarray(opened.convert("RGBA"))), 0.0)

    frames = [_photo("hubble_deep_field", 160, 120, 300, 300), _photo("coins", 160, 120)]
    frames.append(_photo("grass", 160, 120))
    first, *rest = (Image.fromarray(f) for f in frames)
    first.save(root / "odd/animated.gif", save_all=True, append_images=rest, duration=80, loop=0)
    expected["odd/animated.gif"] = (frames[0], 12.0)  # palette quantisation
    pages = [_photo("immunohistochemistry", 160, 120, 60 * i, 250) for i in range(3)]
    first, *rest = (Image.fromarray(p) for p in pages)
    first.save(root / "odd/pages.tif", save_all=True, append_images=rest)
    expected["odd/pages.tif"] = (pages[0], 0.0)

    width, height = ORIENTATION_SIZE
    for k, name in enumerate(_ORIENTATION_SOURCES, start=1):
        upright = _photo(name, width, height, 150, 100)
        stored, exif = _sideways(upright, k)
        _write(root, f"odd/orientation-{k}.jpg", _encoded(stored, "JPEG", exif=exif, quality=95))
        expected[f"odd/orientation-{k}.jpg"] = (upright, 4.0)
    upright = _photo("gravel", width, height, 50, 50)
    stored, exif = _sideways(upright, 6)
    _write(root, "odd/rotated.tif", _encoded(stored, "TIFF", exif=exif))
    expected["odd/rotated.tif"] = (upright, 0.0)

    coins = _photo("coins", 160, 120, 200, 150)
    broken = b"Exif\x00\x00MM\x00*\x00\x00\xff\xff"  # IFD offset past the end
    _write(root, "odd/broken-exif.jpg", _encoded(coins, "JPEG", exif=broken, quality=95))
    expected["odd/broken-exif.jpg"] = (coins, 4.0)

    _write(root, "names/with some spaces .jpg", _encoded(small[3], "JPEG"))
    _write(root, "names/ünïcødé 猫 ☃.png", _encoded(small[4], "PNG"))
    _write(root, "names/new\nline.jpg", _encoded(small[5], "JPEG"))
    _write(root, f"{DEEP}/{LONG_NAME}", _encoded(small[6], "PNG"))
    _write(root, f"names/{LONG_UTF8_NAME}", _encoded(small[7], "JPEG"))
    _write(root, "odd/really-a-jpeg.png", _encoded(small[8], "JPEG"))
    _write(root, "odd/SHOUTING.JPEG", _encoded(small[9], "JPEG"))

    # links, loops, pipes and folders named like images
    (root / "links").mkdir()
    (root / "links/astronaut.jpg").symlink_to("../good/astronaut.jpg")
    (root / "links/self.jpg").symlink_to("self.jpg")
    (root / "links/dangling.jpg").symlink_to("nowhere.jpg")
    _write(root, "x.jpg/inner.png", _encoded(_photo("rocket", 90, 60, 40, 40), "PNG"))
    _write(root, "loops/in.png", _encoded(_photo("chelsea", 90, 60, 200, 100), "PNG"))
    (root / "loops/up").symlink_to(".", target_is_directory=True)
    os.mkfifo(root / "odd/pipe.jpg")
    return expected


# --------------------------------------------------------------------------- the index run


@dataclass
class Run:
    root: Path
    collection: Collection
    report: IndexReport
    rss_increase: int
    """Bytes the index run added to this process's peak resident memory."""
    root_reads_everything: bool
    expected: dict[str, tuple[np.ndarray, float]]


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("hostile") / "corpus"
    root.mkdir()
    expected = _make_corpus(root)
    locked = root / "odd/locked.png"
    try:
        locked.open("rb").close()
        root_reads_everything = True  # root (or CAP_DAC_OVERRIDE): mode 000 does not stop it
    except PermissionError:
        root_reads_everything = False

    real_load_image = batch.load_image

    def load_after_removing_vanishing(path: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        if Path(path).name == "vanishing.jpg":
            Path(path).unlink()  # listed and read for its size a moment ago, gone now
        return real_load_image(path, *args, **kwargs)

    collection = Collection.create(root)
    before = _peak_rss()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch, "load_image", load_after_removing_vanishing)
        report = collection.index(workers=1)
    rss_increase = _peak_rss() - before
    yield Run(root, collection, report, rss_increase, root_reads_everything, expected)
    locked.chmod(0o644)
    shutil.rmtree(root, ignore_errors=True)


def _expected(kind: Kind, run: Run) -> str:
    if kind.name.startswith("unreadable") and run.root_reads_everything:
        return INDEXED
    return kind.expect


def _indexed(run: Run) -> set[str]:
    return {path for _, path in run.collection.images()}


def _assert_found_first(run: Run, path: str, same: set[str] | None = None) -> None:
    hits = run.collection.search(run.root / path, k=3)
    assert hits, path
    assert hits[0].path in (same or {path}), (path, [h.path for h in hits])


# --------------------------------------------------------------------------- tests


def test_enough_kinds_are_tried() -> None:
    assert len(KINDS) >= 25
    assert len({k.name for k in KINDS}) == len(KINDS)
    paths = [p for k in GOOD + KINDS for p in k.paths + k.inside]
    assert len(set(paths)) == len(paths)


def test_the_run_finishes_and_accounts_for_every_file(run: Run) -> None:
    report, collection = run.report, run.collection
    want_indexed = {p for k in GOOD + KINDS if _expected(k, run) == INDEXED for p in k.paths} | {
        p for k in KINDS for p in k.inside
    }
    want_failed = {p for k in KINDS if _expected(k, run) == FAILED for p in k.paths}

    failed = dict(report.failed)
    assert sorted(failed) == sorted(want_failed)
    assert not [r for r in failed.values() if "unexpected" in r], failed  # no crash caught late
    assert _indexed(run) == want_indexed
    assert sorted(report.added) == sorted(want_indexed)
    assert report.images == len(want_indexed)
    info = collection.info()
    assert info["images"] == len(want_indexed)
    # the catalog holds every failure but the name it cannot store
    unstorable = next(k for k in KINDS if "not UTF-8" in k.name).paths[0]
    assert {f["path"] for f in info["failed"]} == want_failed - {unstorable}


def test_memory_stays_bounded(run: Run) -> None:
    """The bombs are refused from their headers: no 2.7 GB decode."""
    assert run.rss_increase < PEAK_RSS_LIMIT, f"{run.rss_increase / 2**30:.2f} GiB"


@pytest.mark.parametrize("kind", GOOD, ids=lambda k: k.name)
def test_good_images_stay_searchable(run: Run, kind: Kind) -> None:
    (path,) = kind.paths
    image_id = run.collection.id_of(path)
    assert image_id is not None
    _assert_found_first(run, path)
    hits = run.collection.search(image_id, k=2)
    assert hits[0].id == image_id


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_each_kind(run: Run, kind: Kind) -> None:
    failed = dict(run.report.failed)
    indexed = _indexed(run)
    expect = _expected(kind, run)
    for path in kind.paths:
        if expect == FAILED:
            assert path in failed, (path, sorted(failed))
            assert kind.reason.lower() in failed[path].lower(), failed[path]
            assert path not in indexed
        elif expect == IGNORED:
            assert path not in failed and path not in indexed
            below = [p for p in [*failed, *indexed] if p.startswith(f"{path}/")]
            # what lies inside a folder named like an image is indexed; a folder link is not
            # followed
            assert sorted(below) == sorted(p for p in kind.inside if p.startswith(f"{path}/"))
        else:
            assert path not in failed, failed.get(path)
            image_id = run.collection.id_of(path)
            assert image_id is not None, path
            record = run.collection.record(image_id)
            assert record is not None
            assert (record.width, record.height) == kind.size, path
            _assert_found_first(run, path, {path, kind.twin or path})
    for path in kind.inside:
        assert path in indexed
        _assert_found_first(run, path)


def test_odd_images_decode_upright_in_rgb(run: Run) -> None:
    """What the index saw: EXIF orientation applied, CMYK, 16-bit, alpha, palette, first frame
    and first page all turned into the expected RGB pixels."""
    assert len(run.expected) == 16
    for path, (pixels, tolerance) in run.expected.items():
        result = load_image(run.root / path)
        assert result.shape == pixels.shape and result.dtype == np.uint8, path
        difference = np.abs(result.astype(np.int16) - pixels.astype(np.int16)).mean()
        assert difference <= tolerance, (path, difference)
