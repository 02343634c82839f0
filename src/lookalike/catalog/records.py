"""What the catalog stores and refuses: :class:`ImageRecord`, :class:`ScanPlan`, the
errors, the checks on paths and statuses, and :func:`relative_path`."""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "STATUSES",
    "CatalogError",
    "ImageRecord",
    "IndexBusy",
    "ScanPlan",
    "check_path",
    "check_status",
    "encodable",
    "non_negative",
    "relative_path",
]

STATUSES: tuple[str, ...] = ("ok", "failed")
"""The values of :attr:`ImageRecord.status`."""


class CatalogError(RuntimeError):
    """The catalog cannot be opened or used; the message says why and what to do."""


class IndexBusy(CatalogError):
    """Another process holds the index folder's writer lock."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of the catalog."""

    id: int
    """Stable: an updated file keeps its id; ids of removed images are not reused."""
    path: str
    """POSIX path relative to the collection root."""
    size: int
    mtime_ns: int
    hash: str | None
    status: str
    """``"ok"`` or ``"failed"``."""
    error: str | None
    """Why the image failed; ``None`` when ``ok``."""
    shard: int | None
    """Feature shard holding the image's features (``ok`` only)."""
    row: int | None
    """Row (image slot) inside that shard (``ok`` only)."""
    width: int | None
    height: int | None


@dataclass(frozen=True)
class ScanPlan:
    """What a scan of the collection found, compared with the catalog; each list sorted."""

    new: list[str]
    """On disk, not in the catalog."""
    changed: list[str]
    """In the catalog, but the size or mtime_ns differ."""
    unchanged: list[str]
    """In the catalog with the same size and mtime_ns (``ok`` or ``failed``)."""
    removed: list[str]
    """In the catalog, not on disk."""


# ---------------------------------------------------------------------- checks


def encodable(path: str) -> bool:
    """Whether SQLite can store ``path`` (UTF-8 without lone surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_path(path: str) -> None:
    if not isinstance(path, str) or not path:
        raise ValueError(f"catalog paths are non-empty strings, got {path!r}")
    if path.startswith("/") or "\x00" in path:
        raise ValueError(
            f"catalog paths are POSIX paths relative to the collection root, got {path!r}; "
            "use relative_path(root, path)"
        )
    if not encodable(path):
        raise ValueError(
            f"file name {path!r} is not valid UTF-8 and cannot be stored in the catalog; "
            "rename the file"
        )


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
    return status


def non_negative(name: str, value: int) -> int:
    """``value`` as a plain int (numpy integers accepted), refusing negatives."""
    number = operator.index(value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def relative_path(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> str:
    """POSIX path of ``path`` relative to ``root``, for the catalog.

    Both are made absolute and normalised lexically; symlinks inside the tree
    are not resolved, so a linked file keeps the name it has in the collection.

    Raises:
        ValueError: ``path`` is not inside ``root`` (or is ``root`` itself).
    """
    root_abs = Path(os.path.abspath(root))
    path_abs = Path(os.path.abspath(path))
    try:
        rel = path_abs.relative_to(root_abs)
    except ValueError:
        raise ValueError(f"{path} is not inside the collection root {root}") from None
    if not rel.parts:
        raise ValueError(f"{path} is the collection root itself, not a file inside it")
    return rel.as_posix()
