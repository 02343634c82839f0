"""The catalog of an index folder: one SQLite database, ``catalog.sqlite``.

It lists every image of the collection by its POSIX path relative to the
collection root, with the size and modification time it had when it was
indexed, its content hash, whether it was indexed (``ok``) or refused
(``failed``, with the reason), and where its features live (feature shard and
row). A ``meta`` table holds text settings, the schema version and the
generation counter.

Concurrency follows the design: one writer at a time, guarded by
:func:`writer_lock` (an ``flock`` on ``index_dir/lock``), and any number of
readers. The database runs in WAL mode, so readers never wait for the writer
and see only committed transactions; :meth:`Catalog.snapshot` pins one
consistent state for a series of reads.

A :class:`Catalog` object wraps one SQLite connection; use it from the thread
that opened it (open one per thread).

The modules, each importing only those above it:

- ``records``: :class:`ImageRecord`, :class:`ScanPlan`, the errors, the checks on
  paths and statuses, :func:`relative_path`;
- ``lock``: :func:`writer_lock`, the single-writer ``flock``;
- ``database``: one SQLite connection: lifetime, transactions, snapshots, SQLite
  errors turned into :class:`CatalogError`;
- ``schema``: the tables, the schema version and its upgrades, the connection's setup;
- ``store``: :class:`Catalog`, the images and meta queries.
"""

from lookalike.catalog.lock import LOCK_FILE, writer_lock
from lookalike.catalog.records import (
    STATUSES,
    CatalogError,
    ImageRecord,
    IndexBusy,
    ScanPlan,
    relative_path,
)
from lookalike.catalog.schema import SCHEMA_VERSION
from lookalike.catalog.store import CATALOG_FILE, Catalog

__all__ = [
    "CATALOG_FILE",
    "LOCK_FILE",
    "SCHEMA_VERSION",
    "STATUSES",
    "Catalog",
    "CatalogError",
    "ImageRecord",
    "IndexBusy",
    "ScanPlan",
    "relative_path",
    "writer_lock",
]
