"""The index folder's single-writer lock: an ``flock`` on ``index_dir/lock``."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from lookalike.catalog.records import IndexBusy

__all__ = ["LOCK_FILE", "writer_lock"]

LOCK_FILE = "lock"


@contextlib.contextmanager
def writer_lock(index_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the index folder's single-writer lock for the duration of the block.

    Takes ``flock(LOCK_EX | LOCK_NB)`` on ``index_dir/lock`` (created, with
    ``index_dir``, if needed) and writes this process's pid into it. The lock
    is released on exit, and by the OS if the process dies. Not re-entrant: a
    second acquisition, even in the same process, fails. A child forked while
    the lock is held shares it until it exits.

    Raises:
        IndexBusy: another process (or another open of the lock file) holds it.
    """
    directory = Path(index_dir)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise IndexBusy(
                f"another lookalike process (pid {_holder_pid(fd)}) is writing to "
                f"{directory}; wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
