"""Beyond one machine: extraction on a Ray cluster, and search served from shard actors, each
compared with the single-process result on the demo collection.

The cluster is the one at `$LOOKALIKE_RAY_ADDRESS` (`.ci/run` starts a head and a worker on
127.0.0.1), or a local one started here when that is unset. Without Ray the tests skip, unless
CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lookalike.catalog import Catalog, CatalogError
from lookalike.cli import app
from lookalike.collection import Collection, Hit
from lookalike.demo import DemoCollection, build_demo_collection
from lookalike.features.detail import SHARP
from lookalike.images import load_image
from lookalike.index.store import open_shard
from lookalike.settings import IndexSettings

runner = CliRunner()
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """The address the library is given; this process is connected to that cluster."""
    try:
        import ray
    except ImportError:
        _unavailable("Ray is not installed: pip install -e '.[ray]' (or '.[dev]')")
    address = os.environ.get("LOOKALIKE_RAY_ADDRESS", "")
    # A new local cluster would otherwise turn token authentication on and leave a token in
    # ~/.ray, which later `ray start`s pick up; .ci/run's cluster runs without it as well.
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=2,
                    object_store_memory=100_000_000,
                    include_dashboard=False,
                    log_to_driver=False,
                )
        except Exception as exc:
            _unavailable(f"no Ray cluster at {address or 'a new local one'}: {exc}")
        try:
            yield address or "auto"
        finally:
            ray.shutdown()
    finally:
        if auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread during the test, as in each Ray actor."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# --- without Ray -------------------------------------------------------------------------


def test_without_ray_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lookalike.scale import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RuntimeError, match=r"pip install 'lookalike\[ray\]'"):
        connect("auto")
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "conftest.py", folder / "not-an-image.jpg")
    result = runner.invoke(app, ["index", str(folder), "--ray", "auto", "--quiet"])
    assert result.exit_code == 1
    assert "lookalike[ray]" in result.output


def test_shard_bounds_split_rows_evenly() -> None:
    from lookalike.scale.split import shard_bounds

    assert shard_bounds(10, 3) == (0, 3, 6, 10)
    assert shard_bounds(7, 1) == (0, 7)
    assert shard_bounds(4, 4) == (0, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="at most one shard per image"):
        shard_bounds(2, 3)
    with pytest.raises(ValueError, match="at least 1"):
        shard_bounds(5, 0)


@pytest.fixture(scope="module")
def shortlist_collection(
    demo: DemoCollection, demo_collection: Collection, tmp_path_factory: pytest.TempPathFactory
) -> Collection:
    """A copy of the demo index forced to the shortlist ASMK kind with 5 candidates of its 72
    images, so that the cap below the candidates decides most of the ranking."""
    index_dir = tmp_path_factory.mktemp("shortlist") / "index, côté"
    shutil.copytree(demo_collection.index_dir, index_dir)
    shortlist = IndexSettings(asmk="shortlist", candidates=5)
    settings = replace(demo_collection.settings, index=shortlist)
    collection = Collection.create(demo.root, index=index_dir, settings=settings)
    report = collection.index(workers=1)
    assert not report.added and not report.updated  # the stored features are reused
    return collection


def test_a_shortlist_generation_splits_into_code_blocks(
    shortlist_collection: Collection, tmp_path: Path
) -> None:
    """Each part of a shortlist generation holds its rows' codes as they are in the generation
    (no inverted file) and, served, scores candidate rows as the unsharded index does; a set
    written by an older version (no kind recorded) is written again."""
    from lookalike.index.asmk_shortlist import SHORTLIST_DIR, CodeBlock, ShortlistAsmk
    from lookalike.scale.part import ShardServer
    from lookalike.scale.split import SET_META, ShardSet, split_generation

    loaded = shortlist_collection.snapshot().loaded
    assert isinstance(loaded.asmk, ShortlistAsmk)
    out = tmp_path / "sets, ünï"
    shard_set = split_generation(shortlist_collection.index_dir, 3, out)
    assert (shard_set.asmk_kind, shard_set.candidates) == ("shortlist", 5)
    meta = json.loads((shard_set.folder / SET_META).read_text())
    assert meta["asmk_index"] == {"kind": "shortlist", "candidates": 5}
    whole = loaded.asmk.block
    code = whole.code(10)  # an indexed image's code as a query
    rng = np.random.default_rng(4)
    for i in range(shard_set.n):
        part = shard_set.part(i)
        assert not (part / "asmk").exists()
        block = CodeBlock.open(part / SHORTLIST_DIR)
        start, stop = shard_set.bounds[i], shard_set.bounds[i + 1]
        for row in (0, stop - start - 1):
            np.testing.assert_array_equal(block.code(row).words, whole.code(start + row).words)
            np.testing.assert_array_equal(
                block.code(row).residuals, whole.code(start + row).residuals
            )
        server = ShardServer(str(part))
        assert isinstance(server.loaded.asmk, ShortlistAsmk)
        rows = rng.permutation(stop - start)[:7]
        np.testing.assert_array_equal(
            server.asmk_scores(code, 3.0, 0.0, rows),
            loaded.asmk.scores(code, alpha=3.0, threshold=0.0, candidates=rows + start),
        )
        np.testing.assert_array_equal(
            server.codes([3])[0].residuals, whole.code(start + 3).residuals
        )

    meta.pop("asmk_index")  # as written by an older version: not read, written again
    (shard_set.folder / SET_META).write_text(json.dumps(meta))
    with pytest.raises(KeyError):
        ShardSet.load(shard_set.folder)
    again = split_generation(shortlist_collection.index_dir, 3, out)
    assert again.asmk_kind == "shortlist" and not (again.part(0) / "asmk").exists()


# --- extraction on the cluster -----------------------------------------------------------


def _records(index_dir: Path) -> dict[str, dict[str, Any]]:
    """Catalog rows by path, without their (shard, row) placement, which depends on when the
    writer flushed (every 64 images or 30 s)."""
    with Catalog.open(index_dir, readonly=True) as catalog:
        rows = catalog.records()
    keep = ("id", "status", "error", "size", "mtime_ns", "hash", "width", "height")
    return {r.path: {k: getattr(r, k) for k in keep} for r in rows}


def _features(index_dir: Path, path: str) -> dict[str, np.ndarray]:
    with Catalog.open(index_dir, readonly=True) as catalog:
        record = catalog.get(path)
    assert record is not None and record.shard is not None and record.row is not None
    shard = open_shard(index_dir / "features", record.shard)
    local = shard.local(record.row)
    return {
        "desc": np.asarray(local.desc),
        "xy": np.asarray(local.xy),
        "scale": np.asarray(local.scale),
        "strength": np.asarray(local.strength),
        "global": np.asarray(shard.global_[record.row]),
    }


def _query_files(demo: DemoCollection) -> list[Path]:
    """The demo's query, a copy of another photograph and an original."""
    copies, originals = sorted(demo.originals), sorted(set(demo.originals.values()))
    return [demo.root / p for p in (demo.query, copies[len(copies) // 2], originals[-1])]


def _same_hits(a: list[Hit], b: list[Hit], *, exact: bool = True) -> None:
    """The same hits in the same order, with the same scores and verification outcomes; the
    unrounded scores equal (`exact`), or equal to float32 rounding: two indexes built from
    the same features lay their rows out in other shards when the writer flushed at other
    times, and a sum over rows in another order may differ in its last bit."""
    assert [h.as_dict() for h in a] == [h.as_dict() for h in b]
    scores, others = [h.score for h in a], [h.score for h in b]  # unrounded
    if exact:
        assert scores == others
    else:
        np.testing.assert_allclose(scores, others, rtol=1e-6, atol=0)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoCollection:
    """Originals and two kinds of copies, plus a file that is not an image."""
    demo = build_demo_collection(
        tmp_path_factory.mktemp("ray") / "démo, ray", transforms=("crop", "rotate")
    )
    (demo.root / "broken, really.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return demo


def test_index_on_ray_matches_a_single_process_run(
    ray_address: str,
    small_demo: DemoCollection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    one_thread: None,
) -> None:
    # float32 on both sides (bfloat16's last bits depend on the processor), one thread per
    # network as each Ray actor has (the thread count changes float32 sums' last bits)
    monkeypatch.setenv("LOOKALIKE_PRECISION", "float32")
    local = Collection.create(small_demo.root, index=tmp_path / "local")
    local_report = local.index(workers=1)

    args = ["index", str(small_demo.root), "--index", str(tmp_path / "ray"), "--json"]
    result = runner.invoke(app, [*args, "--ray", ray_address])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == local_report.images == len(small_demo.images)
    reason = dict(local_report.failed)["broken, really.jpg"]
    assert report["failed"] == [{"path": "broken, really.jpg", "reason": reason}]

    rows = _records(tmp_path / "ray")
    assert rows == _records(tmp_path / "local")
    for path, row in rows.items():
        if row["status"] != "ok":
            continue
        ours, theirs = _features(tmp_path / "ray", path), _features(tmp_path / "local", path)
        for name, array in theirs.items():
            assert ours[name].dtype == array.dtype
            np.testing.assert_array_equal(ours[name], array, err_msg=f"{path} {name}")

    distributed = Collection.open(tmp_path / "ray")
    assert distributed.status()["model"] == local.status()["model"]
    for query in _query_files(small_demo):
        described = local.describe(query)
        _same_hits(distributed.search(described, k=10), local.search(described, k=10), exact=False)

    # incremental on the cluster: only the new file is described
    shutil.copy(small_demo.root / small_demo.query, small_demo.root / "copy of a query.jpg")
    try:
        again = Collection.open(tmp_path / "ray").index(ray=ray_address)
    finally:
        (small_demo.root / "copy of a query.jpg").unlink()
    assert again.added == ["copy of a query.jpg"]
    assert again.unchanged == sum(r["status"] == "ok" for r in rows.values())
    assert [p for p, _ in again.failed] == ["broken, really.jpg"]  # still reported, not retried


def test_a_killed_run_on_ray_resumes_and_leaves_a_consistent_index(
    ray_address: str, small_demo: DemoCollection, tmp_path: Path
) -> None:
    """SIGKILL the driver of a cluster run once some images are durable: the next run on the
    cluster keeps them, describes only the rest, and the index is whole and searchable."""
    import signal
    import subprocess
    import time

    from lookalike.index.store import existing_shards

    index_dir = tmp_path / "killed"
    script = (
        "import sys; from lookalike.collection import Collection; "
        "Collection.create(sys.argv[1], index=sys.argv[2]).index(ray=sys.argv[3], shard_size=2)"
    )
    log = tmp_path / "driver.log"
    with log.open("wb") as err:
        driver = subprocess.Popen(
            [sys.executable, "-c", script, str(small_demo.root), str(index_dir), ray_address],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline, durable = time.monotonic() + 600, 0
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            with Catalog.open(index_dir, readonly=True) as catalog:
                durable = catalog.count("ok")
        except CatalogError:  # not there yet, or being created
            pass
        if durable >= 4:
            break
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert durable >= 4, f"not killed mid-way: {log.read_text(errors='replace')[-2000:]}"

    report = Collection.open(index_dir).index(ray=ray_address)
    assert report.images == len(small_demo.images)
    assert report.unchanged >= durable  # what the killed run made durable was kept
    # every image once; the file that is not one is reported failed (by this run or the first)
    assert len(report.added) + report.unchanged == len(small_demo.images)
    assert [p for p, _ in report.failed] == ["broken, really.jpg"]
    with Catalog.open(index_dir, readonly=True) as catalog:
        assert catalog.shards_in_use() == set(existing_shards(index_dir / "features"))
        records = catalog.records("ok")
    assert len(records) == len(small_demo.images)
    assert not list(index_dir.rglob(".*.tmp-*"))
    resumed = Collection.open(index_dir)
    for record in records[:: max(1, len(records) // 6)]:
        assert resumed.search(record.id, k=1)[0].id == record.id


# --- sharded search ----------------------------------------------------------------------


def _blur(image: np.ndarray) -> np.ndarray:
    """Blurred at sigma 8 pixels per 512, so that colour weighs in (`features.detail`)."""
    sigma = 8.0 * max(image.shape[:2]) / 512.0
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


def _queries(demo: DemoCollection, collection: Collection) -> list[Any]:
    """Queries described once (a query is described identically however it is searched)."""
    files = _query_files(demo)
    described: list[Any] = [collection.describe(f) for f in files]
    described.append(collection.describe(files[0], region=(40.0, 30.0, 200.0, 160.0)))
    return described


@pytest.mark.parametrize("n", [2, 3])
def test_sharded_search_ranks_as_the_unsharded_index(
    ray_address: str, demo: DemoCollection, demo_collection: Collection, tmp_path: Path, n: int
) -> None:
    from lookalike.scale.coordinator import ShardedCollection

    queries = _queries(demo, demo_collection)
    some_id = demo_collection.images()[5][0]
    with ShardedCollection.start(
        demo_collection.index_dir, shards=n, address=ray_address, out=tmp_path, cpus=0.1
    ) as sharded:
        assert sharded.shard_set.n == n
        assert sorted(p.name for p in sharded.shard_set.folder.iterdir()) == sorted(
            [
                "checksums.json",
                "global",
                "model",
                "shards.json",
                *(f"shard-{i:03d}" for i in range(n)),
            ]
        )
        assert sharded.images() == demo_collection.images()
        for query in queries:
            hits = sharded.search(query, k=15)
            assert hits[0].inliers is not None and hits[0].inliers > 0  # verification ran
            _same_hits(hits, demo_collection.search(query, k=15))
        for mode in ("asmk", "global"):
            _same_hits(
                sharded.search(queries[1], k=15, mode=mode, verify=0),
                demo_collection.search(queries[1], k=15, mode=mode, verify=0),
            )
        _same_hits(
            sharded.search(queries[2], k=15, expand=True),
            demo_collection.search(queries[2], k=15, expand=True),
        )
        _same_hits(
            sharded.search(some_id, k=15, exclude_self=True),
            demo_collection.search(some_id, k=15, exclude_self=True),
        )
        # classic descriptors are scored by the coordinator: fused in, and for blurred queries
        _same_hits(
            sharded.search(queries[1], k=15, fuse=("colour", "shape")),
            demo_collection.search(queries[1], k=15, fuse=("colour", "shape")),
        )
        blurred = demo_collection.describe(_blur(load_image(_query_files(demo)[0])))
        assert blurred.detail is not None and blurred.detail < SHARP
        _same_hits(sharded.search(blurred, k=15), demo_collection.search(blurred, k=15))
        with pytest.raises(ValueError, match="sharded search serves"):
            sharded.search(queries[0], mode="colour")


def test_shard_and_search_from_the_command_line(
    ray_address: str,
    demo: DemoCollection,
    demo_collection: Collection,
    one_thread: None,
) -> None:
    # The command describes the query itself: an `Extractor` sets its thread count only after
    # its first interpolation, so both sides get one thread from the start (`one_thread`).
    index = str(demo_collection.index_dir)
    made = runner.invoke(app, ["shard", index, "--shards", "2", "--json"])
    assert made.exit_code == 0, made.output
    written = json.loads(made.stdout)
    half = len(demo.images) // 2
    assert [s["rows"] for s in written["shards"]] == [half, len(demo.images) - half]
    assert (written["asmk_index"], written["candidates"]) == ("inverted", None)
    query = str(demo.root / demo.query)
    args = ["search", query, "--index", index, "--json", "-k", "10"]
    result = runner.invoke(
        app, [*args, "--ray", ray_address, "--shards", "2", "--shard-cpus", "0.1"]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    expected = demo_collection.search(demo.root / demo.query, k=10)
    assert [h["path"] for h in hits] == [h.path for h in expected]
    assert [h["inliers"] for h in hits] == [h.inliers for h in expected]
    lone = runner.invoke(app, ["search", query, "--index", index, "--shards", "2"])
    assert lone.exit_code == 1
    assert "needs both --ray" in lone.output


def test_sharded_search_keeps_a_compressed_global_index(
    ray_address: str, demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    """The global index is the generation's own, of whichever kind: a compressed one scores
    only its shortlist, so that is what the sharded search must reproduce."""
    from dataclasses import replace

    from lookalike.scale.coordinator import ShardedCollection
    from lookalike.settings import IndexSettings

    shutil.copytree(demo_collection.index_dir, tmp_path / "index")
    settings = demo_collection.settings
    compressed = replace(settings, index=IndexSettings(kind="compressed", refine=20))
    collection = Collection.create(demo.root, index=tmp_path / "index", settings=compressed)
    report = collection.index()
    assert report.added == [] and report.updated == []  # the stored features are reused
    assert collection.info()["global_index"]["kind"] != "exact"
    queries = _queries(demo, collection)
    with ShardedCollection.start(
        collection.index_dir, shards=2, address=ray_address, out=tmp_path / "shards", cpus=0.1
    ) as sharded:
        for query in queries[:2]:
            for verify in (0, 100):
                _same_hits(
                    sharded.search(query, k=15, verify=verify),
                    collection.search(query, k=15, verify=verify),
                )


def test_sharded_search_over_a_shortlist_generation_ranks_as_the_unsharded_index(
    ray_address: str, demo: DemoCollection, shortlist_collection: Collection, tmp_path: Path
) -> None:
    """The coordinator takes the generation's candidates, each part scores those it holds from
    its codes, and the rest are capped below them: the unsharded shortlist ranking, expansion
    included (which scores the expanding images' codes on the same candidates)."""
    from lookalike.scale.coordinator import ShardedCollection

    collection = shortlist_collection
    queries = _queries(demo, collection)
    some_id = collection.images()[5][0]
    with ShardedCollection.start(
        collection.index_dir, shards=3, address=ray_address, out=tmp_path, cpus=0.1
    ) as sharded:
        assert sharded.shard_set.asmk_kind == "shortlist"
        for query in queries:
            hits = sharded.search(query, k=15)
            assert hits[0].inliers is not None and hits[0].inliers > 0  # verification ran
            _same_hits(hits, collection.search(query, k=15))
        for mode in ("asmk", "fused"):
            hits = sharded.search(queries[1], k=15, mode=mode, verify=0)
            _same_hits(hits, collection.search(queries[1], k=15, mode=mode, verify=0))
            assert [h.asmk_score for h in hits[5:]] == [0.0] * 10  # outside the 5 candidates
        for query in queries[:3]:
            _same_hits(
                sharded.search(query, k=15, expand=True),
                collection.search(query, k=15, expand=True),
            )
        _same_hits(
            sharded.search(some_id, k=15, exclude_self=True),
            collection.search(some_id, k=15, exclude_self=True),
        )


class _Stopped(BaseException):
    """The stand-in for a kill between updating the catalog and publishing."""


def test_sharded_search_reads_the_generation_not_a_catalog_ahead_of_it(
    ray_address: str,
    demo: DemoCollection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run stopped after the catalog took a removal and an addition, before publishing: the
    shard set and the coordinator hold the published generation's images, as a reader does."""
    from lookalike.index import build
    from lookalike.scale.coordinator import ShardedCollection

    root = tmp_path / "photos"
    root.mkdir()
    names = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "camera")
    for name in names:
        shutil.copyfile(demo.root / f"originals/{name}.jpg", root / f"{name}.jpg")
    Collection.create(root).index(workers=1)
    (root / "coffee.jpg").unlink()
    shutil.copyfile(demo.root / "originals/moon.jpg", root / "moon.jpg")

    def stop(*_: object, **__: object) -> None:
        raise _Stopped

    monkeypatch.setattr(build, "build_generation", stop)
    with pytest.raises(_Stopped):
        Collection.create(root).index(workers=1)
    monkeypatch.undo()
    reader = Collection.open(root)
    assert not reader.info()["up_to_date"]
    with ShardedCollection.start(
        root, shards=2, address=ray_address, out=tmp_path / "sets", cpus=0.1
    ) as sharded:
        assert sharded.images() == reader.images()
        assert sorted(p for _, p in sharded.images()) == sorted(f"{n}.jpg" for n in names)
        for image_id, path in sharded.images():
            hits = sharded.search(image_id, k=len(names), verify=0)
            assert hits[0].id == image_id, path
            assert all(not h.path.startswith("<removed") for h in hits), [h.path for h in hits]
