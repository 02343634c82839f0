"""The small demo collection that ships with lookalike.

:func:`build_demo_collection` writes a dozen photographs from ``skimage.data``
(bundled inside the scikit-image wheel, so nothing is downloaded) and, for each,
transformed copies — cropped, rotated, rescaled, relit, noisy — into a folder.
A copy's matches are its original and the other copies of that original, which
makes the folder a tiny retrieval set: index it, query with a copy, and those
should rank first.

Transforms live in the plain :data:`TRANSFORMS` registry; each takes an
``(H, W, 3) uint8`` RGB array and a :class:`numpy.random.Generator` and returns
an ``(H', W', 3) uint8`` RGB array. The output is deterministic for a seed: every
copy draws from its own generator, seeded by the seed, the photograph's name and
the transform's name, so adding or dropping a transform leaves the other copies'
bytes unchanged.
"""

from __future__ import annotations

import io
import logging
import math
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from lookalike.collection import Collection

__all__ = [
    "CROP_AREA",
    "DEFAULT_TRANSFORMS",
    "JPEG_QUALITY",
    "MAX_SIDE",
    "PHOTOGRAPHS",
    "RESCALE_FACTOR",
    "TRANSFORMS",
    "DemoCollection",
    "DemoScore",
    "apply_transform",
    "build_demo_collection",
    "score_demo",
]

logger = logging.getLogger("lookalike")

JPEG_QUALITY: int = 92
"""JPEG quality of every file the demo writes."""

MAX_SIDE: int = 512
"""Originals are shrunk (never enlarged) so that their longer side is at most this."""

CROP_AREA: float = 0.6
"""Fraction of the image area that ``crop`` keeps (both sides scaled by its square root)."""

RESCALE_FACTOR: float = 0.5
"""Scale of both sides that ``rescale`` applies."""

ROTATE_DEGREES: tuple[float, float] = (15.0, 30.0)
"""Range of ``rotate``'s angle magnitude; the sign is drawn too."""

GAMMA_RANGE: tuple[float, float] = (1.4, 1.8)
"""Range of ``light``'s gamma; it is inverted (brightening) half of the time."""

BRIGHTNESS_RANGE: tuple[float, float] = (0.8, 1.15)
"""Range of ``light``'s multiplicative brightness change, applied after the gamma."""

NOISE_SIGMA: float = 10.0
"""Standard deviation of ``noise``'s Gaussian noise, in 0–255 grey levels."""

JPEG_DEGRADE_QUALITY: int = 30
"""Quality at which ``jpeg`` re-encodes the image (before it is saved at :data:`JPEG_QUALITY`)."""

DEFAULT_TRANSFORMS: tuple[str, ...] = ("crop", "rotate", "rescale", "light", "noise")
"""Transforms applied by :func:`build_demo_collection` unless told otherwise."""

QUERY_PREFERENCE: tuple[str, ...] = ("chelsea", "astronaut", "coffee")
"""Originals whose first copy becomes the demo query, first available wins."""

_README = """\
lookalike demo collection
=========================

This folder was written by lookalike.demo.build_demo_collection (seed {seed}).
It is a tiny image-retrieval set built from photographs that ship with
scikit-image (skimage.data), so nothing was downloaded.

originals/<name>.jpg
    {n_originals} photographs of distinct scenes, RGB, longer side at most {max_side} px:
    {names}.
copies/<name>-<transform>.jpg
    Each original altered by each transform: {transforms}.
    The images that show the same scene are originals/<name>.jpg and its copies.

The demo query is {query}.

Transforms:
{transform_help}

All files are JPEG, quality {quality}. Running the builder again with the same
seed rewrites the same bytes; delete the folder to start afresh.
"""

_TRANSFORM_HELP: dict[str, str] = {
    "crop": f"keep {CROP_AREA:.0%} of the area at a random offset",
    "rotate": (
        f"rotate by {ROTATE_DEGREES[0]:g}-{ROTATE_DEGREES[1]:g} degrees either way on the same "
        "canvas, corners filled with the mean colour"
    ),
    "rotate90": "rotate by 90 degrees, clockwise or anticlockwise",
    "rescale": f"resize to {RESCALE_FACTOR:g}x both sides",
    "light": "gamma and brightness change (darker or brighter)",
    "noise": f"add Gaussian noise, sigma {NOISE_SIGMA:g}/255",
    "jpeg": f"re-encode as JPEG at quality {JPEG_DEGRADE_QUALITY}",
    "flip": "mirror left to right",
}


@dataclass(frozen=True)
class DemoCollection:
    """A demo collection on disk.

    ``originals`` maps each transformed copy's posix path relative to ``root``
    (``copies/chelsea-crop.jpg``) to its original's (``originals/chelsea.jpg``);
    ``query`` is the relative path of the image the demo searches with.
    """

    root: Path
    originals: dict[str, str]
    query: str

    @property
    def images(self) -> list[str]:
        """Every image of the collection, originals and copies, as sorted relative paths."""
        return sorted(set(self.originals) | set(self.originals.values()))


# --- photographs ------------------------------------------------------------


def _stereo_left() -> np.ndarray:
    from skimage import data

    left, _right, _disparity = data.stereo_motorcycle()
    return np.asarray(left)


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return np.asarray(getattr(data, name)())

    load.__name__ = f"skimage.data.{name}"
    return load


PHOTOGRAPHS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "camera": _skimage("camera"),
    "coins": _skimage("coins"),
    "clock": _skimage("clock"),
    "moon": _skimage("moon"),
    "hubble": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "motorcycle": _stereo_left,
}
"""Photographs of distinct scenes bundled with scikit-image (``skimage.data.cat`` is
``chelsea``, and textures such as ``brick`` or ``grass`` are left out). Each loader
returns an ``(H, W)`` or ``(H, W, 3)`` uint8 array."""

_MIN_PHOTOGRAPHS = 8


def _to_rgb(image: np.ndarray, name: str) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3|4)`` uint8 -> ``(H, W, 3)`` uint8, longer side <= MAX_SIDE."""
    if image.dtype != np.uint8:
        raise ValueError(f"photograph {name!r}: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"photograph {name!r}: unexpected shape {image.shape}")
    h, w = image.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def _load_photographs() -> dict[str, np.ndarray]:
    """The :data:`PHOTOGRAPHS` that load offline, as ``(H, W, 3) uint8`` arrays."""
    photos: dict[str, np.ndarray] = {}
    for name, load in PHOTOGRAPHS.items():
        try:
            photos[name] = _to_rgb(load(), name)
        except Exception as e:  # a missing optional download (pooch), a changed dataset
            logger.warning("demo photograph %r skipped: %s", name, e)
    if len(photos) < _MIN_PHOTOGRAPHS:
        raise RuntimeError(
            f"only {len(photos)} of the demo photographs loaded ({sorted(photos)}); "
            f"at least {_MIN_PHOTOGRAPHS} are needed. Check the scikit-image install "
            "(pip install 'scikit-image>=0.22')."
        )
    return photos


# --- transforms --------------------------------------------------------------


def _crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    side = math.sqrt(CROP_AREA)
    ch, cw = max(1, round(h * side)), max(1, round(w * side))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[y : y + ch, x : x + cw].copy()


def _rotate(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    angle = float(rng.uniform(*ROTATE_DEGREES)) * (1.0 if rng.random() < 0.5 else -1.0)
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    fill = tuple(float(c) for c in image.reshape(-1, 3).mean(axis=0))
    return cv2.warpAffine(
        image,
        matrix,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )


def _rotate90(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = 1 if rng.random() < 0.5 else 3
    return np.ascontiguousarray(np.rot90(image, k=k))


def _rescale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * RESCALE_FACTOR)), max(1, round(h * RESCALE_FACTOR)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gamma = float(rng.uniform(*GAMMA_RANGE))
    if rng.random() < 0.5:
        gamma = 1.0 / gamma
    gain = float(rng.uniform(*BRIGHTNESS_RANGE))
    levels = np.arange(256, dtype=np.float64) / 255.0
    lut = np.clip(np.round(255.0 * gain * levels**gamma), 0, 255).astype(np.uint8)
    return lut[image]


def _noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float32) + rng.normal(0.0, NOISE_SIGMA, image.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_DEGRADE_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "crop": _crop,
    "rotate": _rotate,
    "rotate90": _rotate90,
    "rescale": _rescale,
    "light": _light,
    "noise": _noise,
    "jpeg": _jpeg,
    "flip": _flip,
}
"""Image alterations by name: ``(H, W, 3) uint8`` RGB and a generator in,
``(H', W', 3) uint8`` RGB out. ``crop`` keeps :data:`CROP_AREA` of the area,
``rescale`` scales both sides by :data:`RESCALE_FACTOR`, ``rotate90`` swaps height
and width; the others keep the shape."""


def _check_rgb(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(
            f"{what}: expected a uint8 numpy array, got {getattr(image, 'dtype', type(image))}"
        )
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what}: expected shape (H, W, 3), got {image.shape}")


def _check_transforms(transforms: Sequence[str]) -> tuple[str, ...]:
    if isinstance(transforms, str):
        transforms = (transforms,)
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown demo transform(s) {unknown}; allowed: {', '.join(TRANSFORMS)}")
    return tuple(dict.fromkeys(transforms))  # drop repeats, keep the order


def apply_transform(name: str, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply the registered transform ``name``, checking shapes on the way in and out.

    ``image``: ``(H, W, 3) uint8`` RGB. Returns ``(H', W', 3) uint8`` RGB.
    """
    (name,) = _check_transforms((name,))
    _check_rgb(image, f"input of transform {name!r}")
    out = TRANSFORMS[name](image, rng)
    _check_rgb(out, f"output of transform {name!r}")
    return out


# --- building -----------------------------------------------------------------


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator determined by the seed and the names, independent of any other draw."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode("utf-8")) for n in names)])


def _write_jpeg(image: np.ndarray, path: Path) -> None:
    """Write ``(H, W, 3) uint8`` RGB as a JPEG, replacing the file in one step."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def build_demo_collection(
    root: str | os.PathLike[str],
    *,
    seed: int = 0,
    transforms: Sequence[str] = DEFAULT_TRANSFORMS,
) -> DemoCollection:
    """Write the demo collection under ``root`` and return its ground truth.

    Writes ``originals/<name>.jpg`` for each of the :data:`PHOTOGRAPHS` that load
    offline (RGB, greyscale ones converted, longer side at most :data:`MAX_SIDE`),
    ``copies/<name>-<transform>.jpg`` for each original and each of ``transforms``
    (names from :data:`TRANSFORMS`; repeats ignored), and ``README.txt``. All images
    are JPEG at quality :data:`JPEG_QUALITY`.

    Deterministic for a seed, and idempotent: building again into the same folder
    rewrites the same files with the same bytes (other files there are left alone).
    The query is the first copy of the first available of :data:`QUERY_PREFERENCE`
    (the original itself when ``transforms`` is empty).

    Raises ``ValueError`` naming the allowed transforms for an unknown one, and
    ``RuntimeError`` when fewer than 8 photographs load.
    """
    names = _check_transforms(transforms)
    root = Path(root)
    photos = _load_photographs()

    (root / "originals").mkdir(parents=True, exist_ok=True)
    (root / "copies").mkdir(parents=True, exist_ok=True)

    originals: dict[str, str] = {}
    for photo_name, image in photos.items():
        original = f"originals/{photo_name}.jpg"
        _write_jpeg(image, root / original)
        for transform in names:
            copy = apply_transform(transform, image, _rng(seed, photo_name, transform))
            relative = f"copies/{photo_name}-{transform}.jpg"
            _write_jpeg(copy, root / relative)
            originals[relative] = original
        logger.debug("demo: wrote %s and %d copies", original, len(names))

    query_name = next((n for n in QUERY_PREFERENCE if n in photos), next(iter(photos)))
    query = f"copies/{query_name}-{names[0]}.jpg" if names else f"originals/{query_name}.jpg"

    readme = _README.format(
        seed=seed,
        n_originals=len(photos),
        max_side=MAX_SIDE,
        names=", ".join(photos),
        transforms=", ".join(names) if names else "(none)",
        query=query,
        transform_help="\n".join(f"    {t}: {_TRANSFORM_HELP[t]}" for t in names) or "    (none)",
        quality=JPEG_QUALITY,
    )
    (root / "README.txt").write_text(readme, encoding="utf-8")
    logger.info("demo collection: %d originals, %d copies in %s", len(photos), len(originals), root)
    return DemoCollection(root=root, originals=originals, query=query)


# --- scoring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoScore:
    """How many of a demo collection's transformed copies find their own photograph first."""

    found: int
    copies: int

    @property
    def passed(self) -> bool:
        """Every copy found its own photograph first."""
        return self.found == self.copies


def _photograph(path: str) -> str:
    """The photograph an image of the demo shows: 'copies/chelsea-crop.jpg' -> 'chelsea'."""
    return Path(path).stem.split("-")[0]


def score_demo(collection: Collection, built: DemoCollection, *, k: int = 8) -> DemoScore:
    """Search `collection` (`built`, indexed) with each transformed copy and count the copies
    whose `k` hits, the copy itself left out, show their own photograph first: the best hit
    is the original or another copy of it, and the original comes before any hit of another
    photograph."""
    found = 0
    for copy, original in sorted(built.originals.items()):
        hits = collection.search(built.root / copy, k=k)
        paths = [h.path for h in hits if h.path != copy]
        own = [p for p in paths if _photograph(p) == _photograph(copy)]
        first_other = next(
            (i for i, p in enumerate(paths) if _photograph(p) != _photograph(copy)), len(paths)
        )
        found += bool(own) and paths[0] in own and original in paths[:first_other]
    return DemoScore(found=found, copies=len(built.originals))
