"""Pixels of any colour mode to (H, W, 3) uint8 RGB: alpha composited over white, 16-bit,
32-bit and float data scaled to 8 bits. Pure functions on arrays, and :func:`to_rgb` for
a loaded PIL image."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.images.errors import ImageError

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def to_rgb(img: Image.Image, label: str) -> np.ndarray:
    """A loaded image of any mode to (H, W, 3) uint8 (possibly read-only)."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode in _INT_MODES:
        return gray_to_rgb(_int_to_uint8(np.asarray(img)))
    if mode == "F":
        return gray_to_rgb(_float_to_uint8(np.asarray(img)))
    try:
        if mode == "La":  # premultiplied; Pillow converts it to LA only
            img = img.convert("LA")
        if mode in _ALPHA_MODES or img.has_transparency_data:
            return over_white(np.asarray(img.convert("RGBA")))
        return np.asarray(img.convert("RGB"))
    except (ValueError, OSError) as e:
        raise ImageError(label, f"unsupported colour mode {mode} ({e})") from e


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8."""
    return np.repeat(gray[:, :, None], 3, axis=2)


def over_white(rgba: np.ndarray) -> np.ndarray:
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


def owned_rgb(rgb: np.ndarray, *, copy: bool = False) -> np.ndarray:
    """A C-contiguous, writeable array that shares memory with nobody else's."""
    if copy or not rgb.flags.c_contiguous or not rgb.flags.writeable:
        return np.array(rgb, dtype=np.uint8, order="C", copy=True)
    return rgb
