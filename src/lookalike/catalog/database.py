"""One SQLite connection of a catalog: its lifetime, transactions and snapshots, and
SQLite's run-time failures turned into :class:`CatalogError`.

:class:`Database` is the base of :class:`lookalike.catalog.Catalog`, which adds the
queries. Its underscored helpers (``_execute``, ``_fetchone``, ``_fetchall``,
``_connection``, ``_sql_errors``) are for this package only (the catalog's queries and
its schema setup), not for callers of the catalog.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from lookalike.catalog.records import CatalogError

__all__ = ["BUSY_TIMEOUT_MS", "Database"]

BUSY_TIMEOUT_MS = 10_000


class Database:
    """An open SQLite connection to ``db_path``; use it from the thread that opened it."""

    def __init__(self, conn: sqlite3.Connection, db_path: Path, readonly: bool) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._db_path = db_path
        self._readonly = readonly
        self._savepoints = 0

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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
