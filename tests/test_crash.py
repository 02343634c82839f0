"""Nothing lost when `lookalike index` dies: SIGKILL at seeded random moments of every stage
(decoding and extracting, writing feature shards, fitting the codebook, writing the index
generation), then a run that finishes the job and an index that is consistent; a write that
hits a full disk (RLIMIT_FSIZE) fails clearly, leaving the previous index as it was; and
searches running beside a writer, and a second writer, never see a half-written index."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog import Catalog, IndexBusy
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.images import find_images
from lookalike.index import build
from lookalike.index.generation import Manifest, current_model
from lookalike.index.layout import IndexLayout
from lookalike.index.store import existing_shards
from lookalike.settings import FeatureSettings, LearnSettings, Settings

pytestmark = pytest.mark.slow

SMALL = Settings(
    # small and quick, but every stage runs: the collection fits its own codebook
    features=FeatureSettings(image_size=192, scales=(1.0,), max_features=150),
    learn=LearnSettings(
        local_dim=64, global_dim=64, codebook_size=64, min_images=8, sample_features=4000
    ),
)
TRIALS = 20
"""SIGKILLs that must land while the run is still going (a kill that comes too late, after
the run has finished, is tried again with another seed)."""
STAGES = ("extract", "learn", "build")

CHILD = """
import json, sys
from lookalike.collection import Collection
from lookalike.settings import Settings

root, settings = sys.argv[1], Settings.from_dict(json.loads(sys.argv[2]))
workers = int(sys.argv[3])
def progress(stage, done, total):
    print(stage, done, total, flush=True)
Collection.create(root, settings=settings).index(
    workers=workers, shard_size=8, progress=progress
)
print("finished", 0, 0, flush=True)
"""


KEPT_COPIES = ("crop", "rotate")
"""The demo's originals and these copies of each: 36 images, enough for every stage."""


def tell(what: str, figures: dict[str, object]) -> None:
    """Append what a test tried to $LOOKALIKE_SAFETY_LOG, for `benchmarks/safety.py`."""
    log = os.environ.get("LOOKALIKE_SAFETY_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"what": what, **figures}) + "\n")


def fresh_collection(demo: DemoCollection, folder: Path) -> Path:
    root = folder / "photos"
    for path in demo.images:
        if path.startswith("originals/") or path.endswith(tuple(f"-{k}.jpg" for k in KEPT_COPIES)):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(demo.root / path, root / path)
    return root


def indexed_originals(demo: DemoCollection, folder: Path) -> Path:
    """`fresh_collection` indexed without its copies, which wait in `folder / 'later'`."""
    root = fresh_collection(demo, folder)
    shutil.move(root / "copies", folder / "later")
    Collection.create(root, settings=SMALL).index(workers=1)
    return root


def image_count(root: Path) -> int:
    return len(find_images(root, exclude_dirs=(".lookalike",)))


def kill_during(root: Path, stage: str, rng: np.random.Generator, workers: int) -> tuple[str, bool]:
    """Start an index run (`workers` as `Collection.index` takes them) and SIGKILL it at a
    random moment of `stage` (for 'extract', after a random number of images). Returns the
    stage it was in, and whether it was still running."""
    settings = json.dumps(SMALL.as_dict())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), settings, str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    after = int(rng.integers(1, image_count(root)))  # for 'extract': images done before it
    last = "start"
    for line in child.stdout:
        last, done, _ = line.split()
        if last == stage and (stage != "extract" or int(done) >= after):
            break
    time.sleep(float(rng.uniform(0.0, 0.25)))
    alive = child.poll() is None
    workers = descendants(child.pid)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # its extraction workers end with it, not live on holding a network each
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, f"workers {workers} outlived the killed run"
        time.sleep(0.1)
    return last, alive


def descendants(pid: int) -> list[int]:
    """The processes under `pid` (Linux /proc; empty elsewhere)."""
    found, stack = [], [pid]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            stack += children
    return found


def assert_consistent(root: Path, *, complete: bool = True) -> Collection:
    """Every ok image found exactly once (in the top 10) by a search for itself, no orphan
    shard or partial file, and the catalog agreeing with the files on disk (all of them, when
    `complete`: the last run finished)."""
    index_dir = root / ".lookalike"
    with Catalog.open(index_dir, readonly=True) as catalog:
        ok, failed = catalog.records("ok"), catalog.records("failed")
        in_use = catalog.shards_in_use()
        generation = catalog.generation
    on_disk = {
        p.relative_to(root).as_posix() for p in find_images(root, exclude_dirs=(".lookalike",))
    }
    catalogued = {r.path for r in ok} | {r.path for r in failed}
    assert catalogued == on_disk if complete else catalogued <= on_disk
    assert in_use == set(existing_shards(IndexLayout(index_dir).features))  # no orphan shard
    assert not [p for p in index_dir.rglob("*") if ".tmp-" in p.name]
    generations = IndexLayout(index_dir).generations()
    assert generations[-1] == (generation, IndexLayout(index_dir).generation(generation))
    collection = Collection.open(root)
    for record in ok:
        ids = [hit.id for hit in collection.search(record.id, k=10, verify=0)]
        assert ids.count(record.id) == 1, record.path  # found, and once only
    return collection


def test_index_runs_killed_at_random_moments_lose_nothing(
    demo: DemoCollection, tmp_path: Path
) -> None:
    kills: Counter[str] = Counter()
    seed = 0
    while sum(kills.values()) < TRIALS:
        assert seed < 3 * TRIALS, f"only {sum(kills.values())} kills landed in {seed} tries"
        rng = np.random.default_rng(seed)
        stage = STAGES[seed % len(STAGES)]
        root = fresh_collection(demo, tmp_path / f"trial-{seed}")
        if seed % 2:  # half the trials kill an update of an index that exists already
            shutil.rmtree(root)
            root = indexed_originals(demo, tmp_path / f"trial-{seed}")
            shutil.move(root.parent / "later", root / "copies")
            (root / "originals" / "coffee.jpg").unlink()
        # a third of the runs extract in a pool of worker processes (the CLI's default)
        was_in, alive = kill_during(root, stage, rng, workers=0 if seed % 3 == 2 else 1)
        seed += 1
        if not alive:
            continue  # the run had finished: not a kill mid-way
        kills[was_in] += 1
        report = Collection.create(root).index(workers=1)
        assert not report.failed
        collection = assert_consistent(root)
        assert report.images == len(collection.images()) == image_count(root)
        shutil.rmtree(root)
    # every stage was hit more than once
    assert all(kills[stage] >= 3 for stage in STAGES), kills
    tell("crash-trials", {"kills": dict(kills), "tries": seed})


def test_a_full_disk_fails_clearly_and_keeps_the_previous_index(
    demo: DemoCollection, tmp_path: Path
) -> None:
    root = indexed_originals(demo, tmp_path)
    before = assert_consistent(root)
    searchable = before.images()
    shutil.move(tmp_path / "later", root / "copies")

    # no file may grow beyond 64 kB: the next feature shard cannot be written
    limit = (
        "import resource, signal, sys;"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536));"
        "from lookalike.cli import app; sys.argv[0] = 'lookalike'; app()"
    )
    full = subprocess.run(
        [sys.executable, "-c", limit, "index", str(root), "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert full.returncode != 0
    assert "disk is full" in full.stderr and "previous index is intact" in full.stderr
    assert "Traceback" not in full.stderr
    after = assert_consistent(root, complete=False)
    assert after.images() == searchable  # the previous generation, as it was

    report = Collection.create(root).index(workers=1)  # space again: the job gets done
    assert report.images == image_count(root)
    assert_consistent(root)


READERS = 4
"""Threads searching the collection while another process writes a new generation."""


def test_searches_during_an_index_run_never_fail_and_a_second_writer_is_refused(
    demo: DemoCollection, tmp_path: Path
) -> None:
    root = indexed_originals(demo, tmp_path)
    shutil.move(tmp_path / "later", root / "copies")
    queries = [(root / p).read_bytes() for p in sorted(find_images(root / "copies"))[:8]]
    reader = Collection.open(root)
    first = reader.generation

    writer = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), json.dumps(SMALL.as_dict()), "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    assert writer.stdout.readline().split()[0] == "extract"  # it holds the writer lock now
    with pytest.raises(IndexBusy, match=r"another lookalike process \(pid \d+\) is writing"):
        Collection.create(root).index(workers=1)

    seen: list[tuple[int, list[int]]] = []
    errors: list[BaseException] = []

    def search_until_done(n: int) -> None:
        while True:
            finished = writer.poll() is not None  # then this search must see the new one
            try:
                hits = reader.search(queries[n % len(queries)], k=5, verify=0)
                seen.append((reader.generation, [h.id for h in hits]))
                assert len({h.id for h in hits}) == len(hits)
                assert all(not h.path.startswith("<removed") for h in hits)
                assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            except BaseException as e:  # every failure is reported below
                errors.append(e)
                return
            if finished and len(seen) >= 4 * READERS:
                return
            n += 1

    threads = [threading.Thread(target=search_until_done, args=(i,)) for i in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    _, err = writer.communicate(timeout=600)
    assert writer.returncode == 0, err
    assert not errors, errors[0]
    generations = {g for g, _ in seen}
    assert max(generations) > first  # the new generation was picked up without reopening
    assert_consistent(root)
    tell("concurrent-readers", {"readers": READERS, "searches": len(seen)})


class Stopped(Exception):
    """Stands for a SIGKILL at one chosen moment of an index run, in this process."""


def test_a_run_stopped_after_learning_leaves_the_published_generation_searchable(
    demo: DemoCollection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that learned a new model and stopped before publishing its generation (killed
    in the build stage): readers, new ones too, still search the published generation with
    the model it was built with; the model it replaced is kept until no generation needs it."""
    root = indexed_originals(demo, tmp_path)
    index_dir = root / ".lookalike"
    kept_reader = Collection.open(root)
    published = kept_reader.generation
    built_with = Manifest.read(IndexLayout(index_dir).generation(published))
    assert built_with is not None
    shutil.move(tmp_path / "later", root / "copies")  # more images: another model is learned

    def stop(*args: object, **kwargs: object) -> None:
        raise Stopped

    with monkeypatch.context() as patch:
        patch.setattr(build, "build_generation", stop)
        with pytest.raises(Stopped):
            Collection.create(root).index(workers=1, refit=True)
    model = current_model(index_dir)
    assert model is not None and model.id != built_with.model_id  # learned, not published

    for reader in (kept_reader, Collection.open(root)):  # one open before, one opened now
        assert reader.generation == published
        for image_id, path in reader.images():
            assert reader.search(image_id, k=1, verify=0)[0].id == image_id, path
        assert reader.search(root / "originals" / "coffee.jpg", k=1)[0].path.endswith("coffee.jpg")

    Collection.create(root).index(workers=1)
    assert_consistent(root)
    kept = IndexLayout(index_dir).kept_model(built_with.model_id)
    assert kept.is_dir()  # the previous generation, still on disk, was built with it
    (root / "originals" / "coffee.jpg").unlink()
    Collection.create(root).index(workers=1)
    assert not kept.exists()
    assert_consistent(root)
