"""The catalog's tables, its schema version and their upgrades, and the setup of a newly
opened connection (pragmas; create, check or upgrade the schema)."""

from __future__ import annotations

import logging

from lookalike.catalog.database import BUSY_TIMEOUT_MS, Database
from lookalike.catalog.records import CatalogError

logger = logging.getLogger("lookalike")

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "set_up_catalog"]

SCHEMA_VERSION = 1
"""Version of the catalog's tables that this lookalike reads and writes."""

APPLICATION_ID = 0x6C6B6C6B
"""``PRAGMA application_id`` of a lookalike catalog (ASCII ``lklk``)."""

SCHEMA: tuple[str, ...] = (
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

MIGRATIONS: dict[int, tuple[str, ...]] = {}
"""SQL statements that take a catalog from schema version ``n`` to ``n + 1``, by ``n``."""


def set_up_catalog(db: Database) -> None:
    """Prepare a just-opened connection: busy timeout and foreign keys; then, read-only,
    check the schema; writable, switch to WAL with ``synchronous=NORMAL`` and create the
    schema of a new catalog or check and upgrade an existing one.

    Raises:
        CatalogError: the file is not a lookalike catalog or is damaged; read-only, it is
            still empty or has an older schema; its schema is newer than this lookalike,
            or older with no upgrade path.
    """
    conn = db._connection()
    with db._sql_errors("opening the catalog"):
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if db.readonly:
            if not _user_tables(db):  # a writer's first moments, or one killed in them
                raise CatalogError(
                    f"the catalog at {db.path} is still empty: an index run is "
                    "creating it (or was stopped before it could); run `lookalike index`"
                )
            _check_schema(db, _schema_version(db))
            return
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning(
                "%s: SQLite could not switch to WAL journaling (got %r); readers will "
                "wait for the writer. Is the index folder on a network file system?",
                db.path,
                mode,
            )
        conn.execute("PRAGMA synchronous = NORMAL")
    with db.transaction():
        if not _user_tables(db):
            for statement in SCHEMA:
                db._execute(statement)
            db._execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db._execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            logger.debug("%s: new catalog, schema version %d", db.path, SCHEMA_VERSION)
            return
        version = _schema_version(db)
        _check_schema(db, version)
        _migrate(db, version)


def _user_tables(db: Database) -> set[str]:
    rows = db._fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    )
    return {row[0] for row in rows}


def _not_ours(db: Database, reason: str) -> CatalogError:
    return CatalogError(
        f"{db.path} is not a lookalike catalog ({reason}); point --index at a "
        "lookalike index folder, or move this file away to start a new index"
    )


def _schema_version(db: Database) -> int:
    app_id = db._fetchone("PRAGMA application_id")
    if app_id is not None and app_id[0] not in (0, APPLICATION_ID):
        raise _not_ours(db, f"SQLite application id {app_id[0]:#x}")
    if "meta" not in _user_tables(db):
        raise _not_ours(db, "it has no meta table")
    row = db._fetchone("SELECT value FROM meta WHERE key = ?", ("schema_version",))
    if row is None:
        raise _not_ours(db, "its meta table has no schema_version")
    raw = str(row[0])
    try:
        return int(raw)
    except ValueError:
        raise _not_ours(db, f"schema_version is {raw!r}") from None


def _check_schema(db: Database, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise CatalogError(
            f"{db.path} has catalog schema version {version}, but this lookalike "
            f"reads version {SCHEMA_VERSION} at most; upgrade lookalike "
            "(pip install --upgrade lookalike) to use this index"
        )
    if version < SCHEMA_VERSION and db.readonly:
        raise CatalogError(
            f"{db.path} has the old catalog schema version {version} "
            f"(this lookalike uses {SCHEMA_VERSION}); open it once for writing "
            "(e.g. `lookalike index`) to upgrade it"
        )
    if version < SCHEMA_VERSION and any(
        v not in MIGRATIONS for v in range(version, SCHEMA_VERSION)
    ):
        raise CatalogError(
            f"{db.path} has catalog schema version {version}, which this lookalike "
            "cannot upgrade; move the index folder away and run `lookalike index` to rebuild"
        )


def _migrate(db: Database, version: int) -> None:
    for v in range(version, SCHEMA_VERSION):
        for statement in MIGRATIONS[v]:
            db._execute(statement)
        db._execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(v + 1),))
        logger.info("%s: catalog schema upgraded to version %d", db.path, v + 1)
