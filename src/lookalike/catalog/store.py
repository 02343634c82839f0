"""The :class:`Catalog`: opening ``catalog.sqlite``, and the queries on its images and its
``meta`` table (settings, generation counter)."""

from __future__ import annotations

import operator
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from lookalike.catalog.database import Database
from lookalike.catalog.records import (
    CatalogError,
    ImageRecord,
    ScanPlan,
    check_path,
    check_status,
    encodable,
    non_negative,
)
from lookalike.catalog.schema import set_up_catalog

__all__ = ["CATALOG_FILE", "Catalog"]

CATALOG_FILE = "catalog.sqlite"

_RESERVED_META = frozenset({"schema_version"})

_COLUMNS = 'id, path, size, mtime_ns, hash, status, error, shard, "row", width, height'


class Catalog(Database):
    """An open catalog; create it with :meth:`Catalog.open`.

    Its lifetime (``path``, ``readonly``, ``close``, ``with``), ``transaction`` and
    ``snapshot`` come from :class:`~lookalike.catalog.database.Database`.
    """

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
                conn = _connect_readonly(db_path)
            else:
                db_path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(db_path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise CatalogError(f"cannot open catalog {db_path}: {exc}") from exc
        catalog = cls(conn, db_path, readonly)
        try:
            set_up_catalog(catalog)
        except CatalogError:
            conn.close()
            if not (readonly and _unwritable(db_path)):
                raise
            # On a read-only disk (or folder) SQLite cannot make the WAL's shared memory file
            # beside the catalog; nothing can change the file there, so it is read as it is.
            catalog = cls(_connect_readonly(db_path, immutable=True), db_path, readonly)
            set_up_catalog(catalog)
        except BaseException:
            conn.close()
            raise
        return catalog

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else ("read-only" if self._readonly else "open")
        return f"Catalog({str(self._db_path)!r}, {state})"

    # ------------------------------------------------------------------ reading

    def get(self, path: str) -> ImageRecord | None:
        """The record of ``path`` (relative POSIX path), or ``None``."""
        if not encodable(path):
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
                (check_status(status),),
            )
        return [ImageRecord(*row) for row in rows]

    def count(self, status: str | None = None) -> int:
        """How many records there are, or how many with ``status``."""
        if status is None:
            row = self._fetchone("SELECT count(*) FROM images")
        else:
            row = self._fetchone(
                "SELECT count(*) FROM images WHERE status = ?", (check_status(status),)
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
        shard, row = non_negative("shard", shard), non_negative("row", row)
        width, height = non_negative("width", width), non_negative("height", height)
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
        check_path(path)
        if hash is not None and not isinstance(hash, str):
            raise TypeError(f"hash must be a hex string or None, got {type(hash).__name__}")
        params = (
            path,
            non_negative("size", size),
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
        rows = [(m, p) for p, m in stamps.items() if encodable(p)]
        if not rows:
            return
        with self.transaction(), self._sql_errors("recording modification times"):
            self._connection().executemany("UPDATE images SET mtime_ns = ? WHERE path = ?", rows)

    def integrity(self, *, full: bool = False) -> list[str]:
        """SQLite's own check of the file (`quick_check`; `full`: `integrity_check`, which
        also reads every index): the problems it finds, at most 10 (empty: none)."""
        pragma = "integrity_check" if full else "quick_check"
        with self._sql_errors("checking the catalog"):
            rows = self._fetchall(f"PRAGMA {pragma}(10)")
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    def redescribe(self, shards: Iterable[int]) -> int:
        """Have the next index run describe again the images whose features are in `shards`
        (damaged): their stamps and content hashes are forgotten, so the scan finds them
        changed; they keep their ids. Returns how many images that is."""
        wanted = [(int(s),) for s in dict.fromkeys(shards)]
        if not wanted:
            return 0
        conn = self._connection()
        with self.transaction():
            before = conn.total_changes
            with self._sql_errors("marking images to describe again"):
                conn.executemany(
                    "UPDATE images SET mtime_ns = -1, hash = NULL WHERE shard = ?", wanted
                )
            return conn.total_changes - before

    def remove(self, paths: Iterable[str]) -> int:
        """Forget ``paths``; returns how many records were removed (unknown paths are ignored)."""
        wanted = [(p,) for p in dict.fromkeys(paths) if encodable(p)]
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


def _connect_readonly(db_path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    query = "?mode=ro&immutable=1" if immutable else "?mode=ro"
    return sqlite3.connect(db_path.absolute().as_uri() + query, uri=True, isolation_level=None)


def _unwritable(db_path: Path) -> bool:
    """Whether this process may not write beside the catalog (a read-only disk or folder)."""
    return not os.access(db_path.parent, os.W_OK) or not os.access(db_path, os.W_OK)
