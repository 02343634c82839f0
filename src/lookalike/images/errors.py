"""The one error type for a source that cannot be used as an image: :class:`ImageError`,
which names the file and says what is wrong with it."""

from __future__ import annotations

import os


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
