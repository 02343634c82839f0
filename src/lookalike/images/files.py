"""Image files on disk: the one list of image extensions, listing a collection
(:func:`find_images`) and fingerprinting a file's bytes (:func:`content_hash`)."""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
from collections.abc import Collection

from lookalike.images.errors import ImageError
from lookalike.images.opening import READ_CHUNK, open_file
from lookalike.images.reasons import os_reason

logger = logging.getLogger("lookalike")

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif"}
)
"""File name extensions (lower case, with the dot) that :func:`find_images` lists."""


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


def content_hash(path: str | os.PathLike[str]) -> str:
    """Hex blake2b digest (16 bytes, 32 hex characters) of a file's bytes, streamed.

    Raises:
        ImageError: the file is missing, is a directory or cannot be read.
    """
    label = os.fspath(path)
    digest = hashlib.blake2b(digest_size=16)
    with open_file(label, allow_empty=True) as f:
        try:
            while chunk := f.read(READ_CHUNK):
                digest.update(chunk)
        except OSError as e:
            raise ImageError(label, os_reason(e)) from e
    return digest.hexdigest()
