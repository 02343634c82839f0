"""Why a file is not a usable image, in words.

Pure functions from a file's first bytes, a PIL exception or an OS error to the short
human sentence that becomes an :class:`~lookalike.images.errors.ImageError`'s ``reason``.
"""

from __future__ import annotations

import codecs
import errno

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_DAMAGED = "corrupt or truncated HEIC/HEIF file"
"""The reason for a HEIC/HEIF file that the HEIF plugin cannot identify or decode."""
_VIDEO_BRANDS = frozenset(
    {b"isom", b"iso2", b"mp41", b"mp42", b"avc1", b"qt  ", b"M4V ", b"3gp4", b"3gp5", b"dash"}
)


def os_reason(e: OSError) -> str:
    """A reason for an OS error met while opening or reading a file."""
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


def failure_reason(e: Exception, fmt: str, part: str = "data") -> str:
    """A reason for a PIL exception raised while reading a file's ``part`` ("data"/"header")."""
    message = str(e)
    lowered = message.lower()
    if isinstance(e, MemoryError):
        return f"out of memory decoding the {fmt} data"
    if fmt == "HEIF":  # libheif's messages name boxes (iloc, ipma...), not what went wrong
        return HEIF_DAMAGED
    if isinstance(e, EOFError) or "truncated" in lowered or "premature end" in lowered:
        return f"truncated {fmt} {part}"
    if "crc" in lowered or "checksum" in lowered:
        return f"corrupt {fmt} {part} (checksum mismatch)"
    if any(word in lowered for word in ("broken", "corrupt", "unrecognized", "decoder error")):
        return f"corrupt {fmt} {part} ({message})"
    return f"cannot decode {fmt} {part} ({type(e).__name__}: {message})"


def magic_format(head: bytes) -> str | None:
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


def unidentified_reason(head: bytes, *, heif: bool = True) -> str:
    """Why Pillow could not identify a file, judged from its first bytes; `heif`: whether the
    HEIF plugin (pillow-heif) is registered."""
    fmt = magic_format(head)
    if fmt is not None:
        return f"corrupt or truncated {fmt} header"
    if head[4:8] == b"ftyp":
        return _iso_media_reason(head, heif)
    reason = _other_format_reason(head)
    if reason is not None:
        return reason
    text = _as_text(head)
    if text is not None:
        return _text_reason(text)
    return f"not an image file (unrecognised format, starts with {head[:8].hex(' ')})"


def _iso_media_reason(head: bytes, heif: bool) -> str:
    """Why an ISO media file (``ftyp`` box: HEIF, AVIF, CR3, MP4...) cannot be read."""
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    if brands & _HEIF_BRANDS:
        return HEIF_DAMAGED if heif else "HEIC/HEIF is not supported (install pillow-heif)"
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
