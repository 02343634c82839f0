"""The SQLite catalog and the writer lock, on real files in tmp_path."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lookalike.catalog as catalog_module
from lookalike.catalog import (
    CATALOG_FILE,
    SCHEMA_VERSION,
    Catalog,
    CatalogError,
    ImageRecord,
    IndexBusy,
    ScanPlan,
    relative_path,
    writer_lock,
)

AWKWARD = [
    "plain.jpg",
    "with space/photo 1.jpg",
    "comma,separated,name.png",
    "unicodé/日本語の写真.jpeg",
    "new\nline.jpg",
    "quote'and\"double.webp",
    "emoji 📷/x.tif",
]

SRC = str(Path(catalog_module.__file__).resolve().parents[2])  # src/lookalike/catalog/__init__.py


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "collection, with spaces é" / ".lookalike"


def put(cat: Catalog, path: str, *, size: int = 100, mtime_ns: int = 5, shard: int = 0) -> int:
    return cat.put_ok(
        path, size=size, mtime_ns=mtime_ns, hash="ab" * 16, shard=shard, row=0, width=4, height=3
    )


# --- open / reopen ---------------------------------------------------------------------


def test_create_and_reopen_round_trip(index_dir: Path) -> None:
    ids = {}
    with Catalog.open(index_dir) as cat:
        assert (index_dir / CATALOG_FILE).is_file()
        assert cat.count() == 0 and cat.records() == [] and cat.generation == 0
        for i, path in enumerate(AWKWARD):
            ids[path] = cat.put_ok(
                path,
                size=1000 + i,
                mtime_ns=10**18 + i,
                hash=f"{i:032x}",
                shard=i // 3,
                row=i % 3,
                width=640,
                height=480,
            )
        cat.put_failed("broken, file.jpg", size=7, mtime_ns=9, error="truncated JPEG")
        cat.set_meta("backbone", "efficientnet_lite0 ✓")

    with Catalog.open(index_dir, readonly=True) as cat:
        assert cat.count() == len(AWKWARD) + 1
        assert cat.count("ok") == len(AWKWARD) and cat.count("failed") == 1
        assert [r.path for r in cat.records("ok")] == AWKWARD  # ordered by id
        for i, path in enumerate(AWKWARD):
            rec = cat.get(path)
            assert rec == ImageRecord(
                id=ids[path],
                path=path,
                size=1000 + i,
                mtime_ns=10**18 + i,
                hash=f"{i:032x}",
                status="ok",
                error=None,
                shard=i // 3,
                row=i % 3,
                width=640,
                height=480,
            )
            assert cat.by_id(ids[path]) == rec
        failed = cat.get("broken, file.jpg")
        assert failed is not None
        assert (failed.status, failed.error, failed.shard, failed.row) == (
            "failed",
            "truncated JPEG",
            None,
            None,
        )
        assert cat.get("missing.jpg") is None and cat.by_id(10_000) is None
        assert cat.shards_in_use() == {0, 1, 2}
        assert cat.get_meta("backbone") == "efficientnet_lite0 ✓"
        assert cat.get_meta("nothing", "dflt") == "dflt"
        assert cat.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_put_ok_update_keeps_id(index_dir: Path) -> None:
    with Catalog.open(index_dir) as cat:
        first = put(cat, "a b/ü,1.jpg", size=10, mtime_ns=1, shard=0)
        other = put(cat, "other.jpg")
        again = put(cat, "a b/ü,1.jpg", size=20, mtime_ns=2, shard=3)
        assert again == first != other
        rec = cat.get("a b/ü,1.jpg")
        assert rec is not None and (rec.id, rec.size, rec.mtime_ns, rec.shard) == (first, 20, 2, 3)
        assert cat.count() == 2


def test_failed_to_ok_clears_error_and_back(index_dir: Path) -> None:
    with Catalog.open(index_dir) as cat:
        image_id = cat.put_failed("x\ny.jpg", size=1, mtime_ns=1, error="cannot identify image")
        assert cat.records("ok") == []
        assert put(cat, "x\ny.jpg", shard=2) == image_id
        rec = cat.get("x\ny.jpg")
        assert rec is not None
        assert (rec.status, rec.error, rec.shard, rec.width) == ("ok", None, 2, 4)
        assert cat.put_failed("x\ny.jpg", size=1, mtime_ns=2, error="gone bad") == image_id
        rec = cat.get("x\ny.jpg")
        assert rec is not None
        assert (rec.status, rec.error, rec.shard, rec.row, rec.width) == (
            "failed",
            "gone bad",
            None,
            None,
            None,
        )
        assert cat.shards_in_use() == set()


def test_remove_counts_and_ids_are_not_reused(index_dir: Path) -> None:
    with Catalog.open(index_dir) as cat:
        ids = [put(cat, p, shard=i) for i, p in enumerate(AWKWARD)]
        removed = cat.remove([AWKWARD[0], AWKWARD[4], AWKWARD[4], "not there.jpg"])
        assert removed == 2
        assert cat.remove([]) == 0
        assert [r.path for r in cat.records()] == [p for p in AWKWARD if p not in AWKWARD[0:5:4]]
        assert cat.get(AWKWARD[4]) is None and cat.by_id(ids[4]) is None
        assert 0 not in cat.shards_in_use() and 4 not in cat.shards_in_use()
        assert put(cat, AWKWARD[0]) > max(ids)  # AUTOINCREMENT: a new id


def test_bad_arguments_are_refused(index_dir: Path) -> None:
    with Catalog.open(index_dir) as cat:
        with pytest.raises(ValueError, match="allowed: ok, failed"):
            cat.records("broken")
        with pytest.raises(ValueError, match="relative"):
            put(cat, "/abs/path.jpg")
        with pytest.raises(ValueError, match="UTF-8"):
            put(cat, os.fsdecode(b"bad\xffname.jpg"))
        with pytest.raises(ValueError, match="shard"):
            put(cat, "a.jpg", shard=-1)
        with pytest.raises(ValueError, match="managed"):
            cat.set_meta("schema_version", "2")
        assert cat.count() == 0
        assert cat.get(os.fsdecode(b"bad\xffname.jpg")) is None


# --- plan ------------------------------------------------------------------------------


def test_plan_classifies_exactly(index_dir: Path) -> None:
    with Catalog.open(index_dir) as cat:
        put(cat, "same ok.jpg", size=1, mtime_ns=1)
        cat.put_failed("same, failed.jpg", size=2, mtime_ns=2, error="bad")
        put(cat, "size changed.jpg", size=3, mtime_ns=3)
        put(cat, "mtime\nchanged.jpg", size=4, mtime_ns=4)
        cat.put_failed("failed changed é.jpg", size=5, mtime_ns=5, error="bad")
        put(cat, "gone/a.jpg")
        put(cat, "gone/b.jpg")
        plan = cat.plan(
            {
                "same ok.jpg": (1, 1),
                "same, failed.jpg": (2, 2),
                "size changed.jpg": (30, 3),
                "mtime\nchanged.jpg": (4, 40),
                "failed changed é.jpg": (5, 6),
                "z new.jpg": (1, 1),
                "a new, 日本.jpg": (1, 1),
            }
        )
    assert plan == ScanPlan(
        new=["a new, 日本.jpg", "z new.jpg"],
        changed=["failed changed é.jpg", "mtime\nchanged.jpg", "size changed.jpg"],
        unchanged=["same ok.jpg", "same, failed.jpg"],
        removed=["gone/a.jpg", "gone/b.jpg"],
    )


_names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=8
)
_stat = st.tuples(st.integers(0, 3), st.integers(0, 3))


@settings(max_examples=25, deadline=None)
@given(
    stored=st.dictionaries(_names, _stat, max_size=8),
    disk=st.dictionaries(_names, _stat, max_size=8),
)
def test_plan_matches_set_arithmetic(
    stored: dict[str, tuple[int, int]], disk: dict[str, tuple[int, int]]
) -> None:
    stored = {p: v for p, v in stored.items() if not p.startswith("/")}
    with tempfile.TemporaryDirectory() as tmp, Catalog.open(tmp) as cat:
        with cat.transaction():
            for path, (size, mtime_ns) in stored.items():
                put(cat, path, size=size, mtime_ns=mtime_ns)
        plan = cat.plan(disk)
    assert plan.new == sorted(disk.keys() - stored.keys())
    assert plan.removed == sorted(stored.keys() - disk.keys())
    both = disk.keys() & stored.keys()
    assert plan.unchanged == sorted(p for p in both if disk[p] == stored[p])
    assert plan.changed == sorted(p for p in both if disk[p] != stored[p])


# --- transactions ----------------------------------------------------------------------


def test_transaction_rollback_leaves_nothing(index_dir: Path) -> None:
    with Catalog.open(index_dir) as cat:
        put(cat, "kept.jpg", size=1)
        with pytest.raises(RuntimeError, match="boom"), cat.transaction():
            put(cat, "a, b.jpg")
            put(cat, "kept.jpg", size=999)
            cat.remove(["kept.jpg"])
            cat.set_meta("k", "v")
            cat.bump_generation()
            raise RuntimeError("boom")
        assert [r.path for r in cat.records()] == ["kept.jpg"]
        kept = cat.get("kept.jpg")
        assert kept is not None and kept.size == 1
        assert cat.get_meta("k") is None and cat.generation == 0
        with cat.transaction(durable=True):
            put(cat, "a, b.jpg")
    with Catalog.open(index_dir, readonly=True) as cat:
        assert [r.path for r in cat.records()] == ["kept.jpg", "a, b.jpg"]


def test_nested_transaction_rolls_back_inner_only(index_dir: Path) -> None:
    with Catalog.open(index_dir) as cat:
        with cat.transaction():
            put(cat, "outer.jpg")
            with pytest.raises(KeyError), cat.transaction():
                put(cat, "inner.jpg")
                raise KeyError("inner")
        assert [r.path for r in cat.records()] == ["outer.jpg"]


def test_generation_bump_persists(index_dir: Path) -> None:
    with Catalog.open(index_dir) as cat:
        assert cat.generation == 0
        assert cat.bump_generation() == 1
        assert cat.bump_generation() == 2
    with Catalog.open(index_dir) as cat:
        assert cat.generation == 2
        assert cat.bump_generation() == 3
    with Catalog.open(index_dir, readonly=True) as cat:
        assert cat.generation == 3


# --- errors on open --------------------------------------------------------------------


def test_readonly_open_of_missing_catalog_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no such index"
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog.open(missing, readonly=True)
    assert not missing.exists()


def test_readonly_catalog_refuses_writes(index_dir: Path) -> None:
    Catalog.open(index_dir).close()
    with (
        Catalog.open(index_dir, readonly=True) as cat,
        pytest.raises(CatalogError, match="read-only"),
    ):
        put(cat, "a.jpg")


def _raw_set_meta(index_dir: Path, key: str, value: str) -> None:
    conn = sqlite3.connect(index_dir / CATALOG_FILE)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_newer_schema_asks_to_upgrade(index_dir: Path, readonly: bool) -> None:
    Catalog.open(index_dir).close()
    _raw_set_meta(index_dir, "schema_version", "999")
    with pytest.raises(CatalogError, match="upgrade lookalike") as info:
        Catalog.open(index_dir, readonly=readonly)
    assert "999" in str(info.value)


def test_garbage_file_is_refused(index_dir: Path) -> None:
    index_dir.mkdir(parents=True)
    (index_dir / CATALOG_FILE).write_bytes(b"this is not sqlite at all\n" * 200)
    for readonly in (False, True):
        with pytest.raises(CatalogError, match="damaged"):
            Catalog.open(index_dir, readonly=readonly)


def test_other_sqlite_database_is_refused(index_dir: Path) -> None:
    index_dir.mkdir(parents=True)
    conn = sqlite3.connect(index_dir / CATALOG_FILE)
    conn.execute("CREATE TABLE photos (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(CatalogError, match="not a lookalike catalog"):
        Catalog.open(index_dir)


def test_an_empty_catalog_is_one_being_created_not_a_foreign_file(index_dir: Path) -> None:
    """A reader that opens the file between a writer creating it and writing its schema is
    told to index, not to move the file away; the writer then makes it a catalog."""
    index_dir.mkdir(parents=True)
    sqlite3.connect(index_dir / CATALOG_FILE).close()
    with pytest.raises(CatalogError, match="still empty") as info:
        Catalog.open(index_dir, readonly=True)
    assert "move this file" not in str(info.value)
    Catalog.open(index_dir).close()
    with Catalog.open(index_dir, readonly=True) as catalog:
        assert catalog.count() == 0


def test_closed_catalog_raises(index_dir: Path) -> None:
    cat = Catalog.open(index_dir)
    cat.close()
    cat.close()
    with pytest.raises(CatalogError, match="closed"):
        cat.count()


# --- concurrency -----------------------------------------------------------------------

_HOLD_LOCK = """
import sys
from lookalike.catalog import writer_lock
with writer_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""

_TRY_LOCK = """
import sys
from lookalike.catalog import IndexBusy, writer_lock
try:
    with writer_lock(sys.argv[1]):
        print("acquired")
except IndexBusy as exc:
    print("busy:", exc)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    """Run ``code`` in a fresh interpreter (another process), stdin and stdout piped."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def test_writer_lock_held_by_other_process(index_dir: Path) -> None:
    holder = _python(_HOLD_LOCK, str(index_dir))
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        busy = f"pid {holder.pid}\\b.*wait for it to finish"
        with pytest.raises(IndexBusy, match=busy), writer_lock(index_dir):
            pass
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with writer_lock(index_dir):  # free again
        assert (index_dir / "lock").read_text().strip() == str(os.getpid())
        other = _python(_TRY_LOCK, str(index_dir))
        out, _ = other.communicate(timeout=30)
        assert out.startswith("busy:") and f"pid {os.getpid()}" in out
    other = _python(_TRY_LOCK, str(index_dir))
    out, _ = other.communicate(timeout=30)
    assert out.strip() == "acquired"


def test_writer_lock_released_when_holder_dies(index_dir: Path) -> None:
    holder = _python(_HOLD_LOCK, str(index_dir))
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    with writer_lock(index_dir):
        pass


def test_reader_sees_committed_state_while_writer_holds_lock(index_dir: Path) -> None:
    with writer_lock(index_dir), Catalog.open(index_dir) as writer:
        put(writer, "committed, 1.jpg")
        writer.bump_generation()
        with Catalog.open(index_dir, readonly=True) as reader:
            with writer.transaction():
                put(writer, "pending é.jpg")
                writer.bump_generation()
                # the reader is not blocked and sees only what was committed
                assert [r.path for r in reader.records()] == ["committed, 1.jpg"]
                assert reader.generation == 1
            assert [r.path for r in reader.records()] == ["committed, 1.jpg", "pending é.jpg"]
            assert reader.generation == 2
            with reader.snapshot():
                put(writer, "later.jpg")
                writer.bump_generation()
                assert reader.count() == 2 and reader.generation == 2
            assert reader.count() == 3 and reader.generation == 3


# --- relative_path ---------------------------------------------------------------------


def test_relative_path(tmp_path: Path) -> None:
    root = tmp_path / "photos, 2024"
    assert relative_path(root, root / "a b" / "日本\n.jpg") == "a b/日本\n.jpg"
    assert relative_path(root, root / "x" / ".." / "y.png") == "y.png"
    with pytest.raises(ValueError, match="not inside"):
        relative_path(root, tmp_path / "elsewhere.jpg")
    with pytest.raises(ValueError, match="root itself"):
        relative_path(root, root)


def test_relative_path_keeps_symlinked_names(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "real.jpg").write_bytes(b"x")
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked dir").symlink_to(outside, target_is_directory=True)
    assert relative_path(root, root / "linked dir" / "real.jpg") == "linked dir/real.jpg"
