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
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import operator
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger("lookalike")

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

SCHEMA_VERSION = 1
"""Version of the catalog's tables that this lookalike reads and writes."""

CATALOG_FILE = "catalog.sqlite"
LOCK_FILE = "lock"
STATUSES: tuple[str, ...] = ("ok", "failed")
"""The values of :attr:`ImageRecord.status`."""

APPLICATION_ID = 0x6C6B6C6B
"""``PRAGMA application_id`` of a lookalike catalog (ASCII ``lklk``)."""

BUSY_TIMEOUT_MS = 10_000

_RESERVED_META = frozenset({"schema_version"})

_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT UNIQUE NOT NULL,
        size INTEGER,
        mtime_ns INTEGER,
        hash TEXT,
        status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        error TEXT,
        shard INTEGER,
        "row" INTEGER,
        width INTEGER,
        height INTEGER,
        updated_at REAL
    )""",
    "CREATE INDEX images_shard ON images (shard)",
)

_MIGRATIONS: dict[int, tuple[str, ...]] = {}
"""SQL statements that take a catalog from schema version ``n`` to ``n + 1``, by ``n``."""

_COLUMNS = 'id, path, size, mtime_ns, hash, status, error, shard, "row", width, height'


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


class Catalog:
    """An open catalog; create it with :meth:`Catalog.open`."""

    def __init__(self, conn: sqlite3.Connection, db_path: Path, readonly: bool) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._db_path = db_path
        self._readonly = readonly
        self._savepoints = 0

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, index_dir: str | os.PathLike[str], *, readonly: bool = False) -> Catalog:
        """Open ``index_dir/catalog.sqlite``, creating it (and ``index_dir``) unless ``readonly``.

        The connection uses WAL journaling, ``synchronous=NORMAL``, a 10 s busy
        timeout and foreign keys. A new catalog gets the current schema; an
        older one is upgraded (unless ``readonly``).

        Raises:
            CatalogError: ``readonly`` and there is no catalog; the file is not a
                lookalike catalog or is damaged; its schema is newer than this
                lookalike (upgrade lookalike).
        """
        db_path = Path(index_dir) / CATALOG_FILE
        try:
            if readonly:
                if not db_path.is_file():
                    raise CatalogError(
                        f"no catalog at {db_path}; index the collection first "
                        "(`lookalike index`), or point --index at its index folder"
                    )
                uri = db_path.absolute().as_uri() + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None)
            else:
                db_path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(db_path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise CatalogError(f"cannot open catalog {db_path}: {exc}") from exc
        catalog = cls(conn, db_path, readonly)
        try:
            catalog._setup()
        except BaseException:
            conn.close()
            raise
        return catalog

    def _setup(self) -> None:
        conn = self._connection()
        with self._sql_errors("opening the catalog"):
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            if self._readonly:
                if not self._user_tables():  # a writer's first moments, or one killed in them
                    raise CatalogError(
                        f"the catalog at {self._db_path} is still empty: an index run is "
                        "creating it (or was stopped before it could); run `lookalike index`"
                    )
                self._check_schema(self._schema_version())
                return
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning(
                    "%s: SQLite could not switch to WAL journaling (got %r); readers will "
                    "wait for the writer. Is the index folder on a network file system?",
                    self._db_path,
                    mode,
                )
            conn.execute("PRAGMA synchronous = NORMAL")
        with self.transaction():
            if not self._user_tables():
                for statement in _SCHEMA:
                    self._execute(statement)
                self._execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self._execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                logger.debug("%s: new catalog, schema version %d", self._db_path, SCHEMA_VERSION)
                return
            version = self._schema_version()
            self._check_schema(version)
            self._migrate(version)

    def _user_tables(self) -> set[str]:
        rows = self._fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        return {row[0] for row in rows}

    def _not_ours(self, reason: str) -> CatalogError:
        return CatalogError(
            f"{self._db_path} is not a lookalike catalog ({reason}); point --index at a "
            "lookalike index folder, or move this file away to start a new index"
        )

    def _schema_version(self) -> int:
        app_id = self._fetchone("PRAGMA application_id")
        if app_id is not None and app_id[0] not in (0, APPLICATION_ID):
            raise self._not_ours(f"SQLite application id {app_id[0]:#x}")
        if "meta" not in self._user_tables():
            raise self._not_ours("it has no meta table")
        raw = self.get_meta("schema_version")
        if raw is None:
            raise self._not_ours("its meta table has no schema_version")
        try:
            return int(raw)
        except ValueError:
            raise self._not_ours(f"schema_version is {raw!r}") from None

    def _check_schema(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self._db_path} has catalog schema version {version}, but this lookalike "
                f"reads version {SCHEMA_VERSION} at most; upgrade lookalike "
                "(pip install --upgrade lookalike) to use this index"
            )
        if version < SCHEMA_VERSION and self._readonly:
            raise CatalogError(
                f"{self._db_path} has the old catalog schema version {version} "
                f"(this lookalike uses {SCHEMA_VERSION}); open it once for writing "
                "(e.g. `lookalike index`) to upgrade it"
            )
        if version < SCHEMA_VERSION and any(
            v not in _MIGRATIONS for v in range(version, SCHEMA_VERSION)
        ):
            raise CatalogError(
                f"{self._db_path} has catalog schema version {version}, which this lookalike "
                "cannot upgrade; move the index folder away and run `lookalike index` to rebuild"
            )

    def _migrate(self, version: int) -> None:
        for v in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[v]:
                self._execute(statement)
            self._execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(v + 1),))
            logger.info("%s: catalog schema upgraded to version %d", self._db_path, v + 1)

    # ------------------------------------------------------------------ lifetime

    @property
    def path(self) -> Path:
        """The ``catalog.sqlite`` file."""
        return self._db_path

    @property
    def readonly(self) -> bool:
        return self._readonly

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back); closing twice is fine."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else ("read-only" if self._readonly else "open")
        return f"Catalog({str(self._db_path)!r}, {state})"

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` if the block raises.

        Inside another transaction this is a savepoint: an exception undoes only
        the inner block. ``durable=True`` commits with ``synchronous=FULL``, so
        the commit survives a power cut, not only a crash (outermost level only).

        Raises:
            CatalogError: the catalog is read-only, or another connection kept
                the database locked for longer than the busy timeout.
        """
        self._require_writable("start a transaction")
        conn = self._connection()
        if conn.in_transaction:
            self._savepoints += 1
            name = f"lookalike_sp{self._savepoints}"
            self._execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    self._execute(f"ROLLBACK TO {name}")
                    self._execute(f"RELEASE {name}")
                raise
            else:
                self._execute(f"RELEASE {name}")
            finally:
                self._savepoints -= 1
            return

        if durable:
            self._execute("PRAGMA synchronous = FULL")
        try:
            self._execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    self._execute("ROLLBACK")
                raise
            try:
                self._execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    self._execute("ROLLBACK")
                raise
        finally:
            if durable and self._conn is not None:
                self._execute("PRAGMA synchronous = NORMAL")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read one consistent state: reads inside the block ignore later commits.

        Works on read-only catalogs; inside a transaction it does nothing extra.
        """
        conn = self._connection()
        if conn.in_transaction:
            yield
            return
        self._execute("BEGIN DEFERRED")
        try:
            self._fetchone("SELECT 1 FROM meta LIMIT 1")  # starts the read transaction
            yield
        finally:
            if self._conn is not None and self._conn.in_transaction:
                self._execute("ROLLBACK")

    # ------------------------------------------------------------------ reading

    def get(self, path: str) -> ImageRecord | None:
        """The record of ``path`` (relative POSIX path), or ``None``."""
        if not _encodable(path):
            return None
        row = self._fetchone(f"SELECT {_COLUMNS} FROM images WHERE path = ?", (path,))
        return None if row is None else ImageRecord(*row)

    def by_id(self, image_id: int) -> ImageRecord | None:
        """The record with id ``image_id``, or ``None``."""
        row = self._fetchone(
            f"SELECT {_COLUMNS} FROM images WHERE id = ?", (operator.index(image_id),)
        )
        return None if row is None else ImageRecord(*row)

    def records(self, status: str | None = None) -> list[ImageRecord]:
        """All records, or those with ``status`` (``"ok"`` or ``"failed"``), ordered by id."""
        if status is None:
            rows = self._fetchall(f"SELECT {_COLUMNS} FROM images ORDER BY id")
        else:
            rows = self._fetchall(
                f"SELECT {_COLUMNS} FROM images WHERE status = ? ORDER BY id",
                (_check_status(status),),
            )
        return [ImageRecord(*row) for row in rows]

    def count(self, status: str | None = None) -> int:
        """How many records there are, or how many with ``status``."""
        if status is None:
            row = self._fetchone("SELECT count(*) FROM images")
        else:
            row = self._fetchone(
                "SELECT count(*) FROM images WHERE status = ?", (_check_status(status),)
            )
        assert row is not None
        return int(row[0])

    def shards_in_use(self) -> set[int]:
        """Feature shard numbers that hold at least one catalogued image's features."""
        rows = self._fetchall("SELECT DISTINCT shard FROM images WHERE shard IS NOT NULL")
        return {int(row[0]) for row in rows}

    def plan(self, files: Mapping[str, tuple[int, int]]) -> ScanPlan:
        """Compare the files on disk now with the catalog.

        Args:
            files: relative POSIX path -> ``(size, mtime_ns)`` of every image found.
        """
        known: dict[str, tuple[int, int]] = {
            path: (size, mtime_ns)
            for path, size, mtime_ns in self._fetchall("SELECT path, size, mtime_ns FROM images")
        }
        new: list[str] = []
        changed: list[str] = []
        unchanged: list[str] = []
        for path, (size, mtime_ns) in files.items():
            stored = known.get(path)
            if stored is None:
                new.append(path)
            elif stored == (int(size), int(mtime_ns)):
                unchanged.append(path)
            else:
                changed.append(path)
        removed = [path for path in known if path not in files]
        return ScanPlan(
            new=sorted(new),
            changed=sorted(changed),
            unchanged=sorted(unchanged),
            removed=sorted(removed),
        )

    # ------------------------------------------------------------------ writing

    def put_ok(
        self,
        path: str,
        *,
        size: int,
        mtime_ns: int,
        hash: str | None,
        shard: int,
        row: int,
        width: int,
        height: int,
    ) -> int:
        """Record ``path`` as indexed, its features at ``(shard, row)``; returns its id.

        Inserts a new record, or updates the one with that path (keeping its id
        and clearing any error).
        """
        shard, row = _non_negative("shard", shard), _non_negative("row", row)
        width, height = _non_negative("width", width), _non_negative("height", height)
        return self._upsert(path, size, mtime_ns, hash, "ok", None, shard, row, width, height)

    def put_failed(
        self, path: str, *, size: int, mtime_ns: int, error: str, hash: str | None = None
    ) -> int:
        """Record ``path`` as failed with the reason ``error``; returns its id.

        An existing record keeps its id and loses its shard, row and size in pixels.
        """
        if not isinstance(error, str) or not error:
            raise ValueError(f"error must be a non-empty reason string, got {error!r}")
        return self._upsert(path, size, mtime_ns, hash, "failed", error, None, None, None, None)

    def _upsert(
        self,
        path: str,
        size: int,
        mtime_ns: int,
        hash: str | None,
        status: str,
        error: str | None,
        shard: int | None,
        row: int | None,
        width: int | None,
        height: int | None,
    ) -> int:
        _check_path(path)
        if hash is not None and not isinstance(hash, str):
            raise TypeError(f"hash must be a hex string or None, got {type(hash).__name__}")
        params = (
            path,
            _non_negative("size", size),
            operator.index(mtime_ns),
            hash,
            status,
            error,
            shard,
            row,
            width,
            height,
            time.time(),
        )
        with self.transaction():
            result = self._fetchone(
                f"""INSERT INTO images ({_COLUMNS.removeprefix("id, ")}, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (path) DO UPDATE SET
                    size = excluded.size, mtime_ns = excluded.mtime_ns, hash = excluded.hash,
                    status = excluded.status, error = excluded.error, shard = excluded.shard,
                    "row" = excluded."row", width = excluded.width, height = excluded.height,
                    updated_at = excluded.updated_at
                RETURNING id""",
                params,
            )
        assert result is not None
        return int(result[0])

    def touch(self, stamps: Mapping[str, int]) -> None:
        """Record new ``mtime_ns`` values (path -> mtime_ns) of files whose bytes are unchanged."""
        rows = [(m, p) for p, m in stamps.items() if _encodable(p)]
        if not rows:
            return
        with self.transaction(), self._sql_errors("recording modification times"):
            self._connection().executemany("UPDATE images SET mtime_ns = ? WHERE path = ?", rows)

    def remove(self, paths: Iterable[str]) -> int:
        """Forget ``paths``; returns how many records were removed (unknown paths are ignored)."""
        wanted = [(p,) for p in dict.fromkeys(paths) if _encodable(p)]
        if not wanted:
            return 0
        conn = self._connection()
        with self.transaction():
            before = conn.total_changes
            with self._sql_errors("removing images"):
                conn.executemany("DELETE FROM images WHERE path = ?", wanted)
            return conn.total_changes - before

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """The text value stored under ``key``, or ``default``."""
        row = self._fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store the text ``value`` under ``key`` (``schema_version`` is managed here)."""
        if key in _RESERVED_META:
            raise ValueError(f"meta key {key!r} is managed by the catalog itself")
        if not isinstance(value, str):
            raise TypeError(
                f"meta values are text, got {type(value).__name__} for {key!r}; "
                "convert it (str(), json.dumps()) first"
            )
        with self.transaction():
            self._execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @property
    def generation(self) -> int:
        """The generation counter (meta ``generation``); 0 for a new catalog."""
        return int(self.get_meta("generation") or 0)

    def bump_generation(self) -> int:
        """Add one to the generation counter and return the new value."""
        with self.transaction():
            value = self.generation + 1
            self.set_meta("generation", str(value))
        return value

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CatalogError(f"catalog {self._db_path} is closed")
        return self._conn

    def _require_writable(self, doing: str) -> None:
        if self._readonly:
            raise CatalogError(
                f"cannot {doing}: catalog {self._db_path} was opened read-only; "
                "open it with readonly=False (and hold writer_lock) to change it"
            )

    @contextlib.contextmanager
    def _sql_errors(self, doing: str) -> Iterator[None]:
        """Turn SQLite's run-time failures into CatalogError; programming errors pass."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError):
            raise
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise CatalogError(
                    f"catalog {self._db_path} stayed locked by another connection for "
                    f"{BUSY_TIMEOUT_MS // 1000} s while {doing}; retry when the other "
                    "lookalike process is done"
                ) from exc
            raise CatalogError(f"catalog {self._db_path}: {exc} (while {doing})") from exc
        except sqlite3.DatabaseError as exc:
            raise CatalogError(
                f"cannot read catalog {self._db_path}: {exc} (while {doing}); it is not a "
                "SQLite database or is damaged: move the index folder away and run "
                "`lookalike index` to rebuild it"
            ) from exc

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        conn = self._connection()
        with self._sql_errors("running " + sql.split(None, 2)[0].lower()):
            conn.execute(sql, params)

    def _fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        conn = self._connection()
        with self._sql_errors("reading the catalog"):
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row

    def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self._connection()
        with self._sql_errors("reading the catalog"):
            return conn.execute(sql, params).fetchall()


# ---------------------------------------------------------------------- helpers


def _encodable(path: str) -> bool:
    """Whether SQLite can store ``path`` (UTF-8 without lone surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_path(path: str) -> None:
    if not isinstance(path, str) or not path:
        raise ValueError(f"catalog paths are non-empty strings, got {path!r}")
    if path.startswith("/") or "\x00" in path:
        raise ValueError(
            f"catalog paths are POSIX paths relative to the collection root, got {path!r}; "
            "use relative_path(root, path)"
        )
    if not _encodable(path):
        raise ValueError(
            f"file name {path!r} is not valid UTF-8 and cannot be stored in the catalog; "
            "rename the file"
        )


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
    return status


def _non_negative(name: str, value: int) -> int:
    """``value`` as a plain int (numpy integers accepted), refusing negatives."""
    number = operator.index(value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


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
