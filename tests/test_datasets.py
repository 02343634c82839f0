"""Benchmark sets: the generic group layout on a synthetic tree, and the real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lookalike.evaluate import datasets
from lookalike.evaluate.datasets import (
    DataMissing,
    RetrievalSet,
    corel,
    data_root,
    fingerprints,
    groups,
    holidays,
    leave_out,
    load_dataset,
    require_data,
)
from lookalike.evaluate.metrics import summarize
from lookalike.images import IMAGE_EXTENSIONS, find_images


def require_dataset(path: Path) -> Path:
    """Skip when a benchmark folder is absent, but fail on CI (``CI=true``)."""
    if path.is_dir():
        return path
    message = (
        f"benchmark data not found at {path}; set LOOKALIKE_DATA to the folder holding "
        "holidays/, corel/ and fingerprints/"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _touch(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # groups() only looks at names


# --- the helper itself ---------------------------------------------------------------


def test_require_dataset_skips_locally_and_fails_on_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert require_dataset(tmp_path) == tmp_path
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="LOOKALIKE_DATA"):
        require_dataset(tmp_path / "absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="LOOKALIKE_DATA"):
        require_dataset(tmp_path / "absent")


# --- data_root / require_data --------------------------------------------------------


def test_data_root_prefers_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKALIKE_DATA", str(tmp_path))
    assert data_root() == tmp_path


def test_data_root_defaults_beside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKALIKE_DATA", raising=False)
    repo_root = Path(__file__).resolve().parents[1]
    assert (repo_root / "pyproject.toml").is_file()
    assert data_root() == repo_root.parent / "shared" / "data"


def test_require_data_names_the_folder(tmp_path: Path) -> None:
    assert require_data(tmp_path) == tmp_path
    with pytest.raises(DataMissing, match="LOOKALIKE_DATA") as info:
        require_data(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


# --- groups() on a synthetic tree ----------------------------------------------------

AWKWARD = [
    "café au lait/one, two.jpg",
    "café au lait/Ünïcode ü.PNG",
    "café au lait/x y.jpeg",
    "dogs/nested level/a.webp",
    "dogs/nested level/b b.tif",
    "lonely/only.bmp",
    "loose, at root.gif",
]
IGNORED = [
    "café au lait/notes.txt",
    "café au lait/.hidden.jpg",
    ".cache/c.jpg",
    "dogs/nested level/README",
]


def test_groups_on_awkward_names(tmp_path: Path) -> None:
    _touch(tmp_path, *AWKWARD, *IGNORED)
    rs = groups(tmp_path)
    assert rs.name == tmp_path.name
    assert rs.root == tmp_path
    assert rs.images == tuple(sorted(AWKWARD))
    cafe = ["café au lait/one, two.jpg", "café au lait/Ünïcode ü.PNG", "café au lait/x y.jpeg"]
    dogs = ["dogs/nested level/a.webp", "dogs/nested level/b b.tif"]
    assert rs.queries == {
        cafe[0]: frozenset({cafe[1], cafe[2]}),
        cafe[1]: frozenset({cafe[0], cafe[2]}),
        cafe[2]: frozenset({cafe[0], cafe[1]}),
        dogs[0]: frozenset({dogs[1]}),
        dogs[1]: frozenset({dogs[0]}),
    }
    assert rs.junk == {q: frozenset({q}) for q in rs.queries}
    assert rs.groups == {
        **{p: "café au lait" for p in cafe},
        **{p: "dogs/nested level" for p in dogs},
        "lonely/only.bmp": "lonely",
    }
    assert "loose, at root.gif" not in rs.groups  # indexed as a distractor only
    assert rs.rotations == {}
    assert rs.n_relevant == 3 * 2 + 2 * 1
    assert all(rs.path(p).is_file() for p in rs.images)


def test_sets_list_what_find_images_lists_less_hidden_names(tmp_path: Path) -> None:
    """One list of image extensions (`images/files.py`); a set's protocol also leaves out hidden
    files and folders ("._x.jpg" beside a copied photograph), which an index would take."""
    assert datasets.IMAGE_EXTENSIONS is IMAGE_EXTENSIONS
    _touch(tmp_path, *AWKWARD, *IGNORED)
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert groups(tmp_path).images == tuple(sorted(AWKWARD))
    assert sorted(found) == sorted([*AWKWARD, "café au lait/.hidden.jpg", ".cache/c.jpg"])


def test_groups_min_group_size(tmp_path: Path) -> None:
    _touch(tmp_path, *AWKWARD)
    rs = groups(tmp_path, min_group_size=3, name="tiny")
    assert rs.name == "tiny"
    assert set(rs.queries) == {p for p in AWKWARD if p.startswith("café")}
    assert len(rs.images) == len(AWKWARD)  # small groups stay as distractors
    with pytest.raises(ValueError, match="at least 2"):
        groups(tmp_path, min_group_size=1)
    with pytest.raises(ValueError, match="4 or more"):
        groups(tmp_path, min_group_size=4)


def test_groups_errors(tmp_path: Path) -> None:
    with pytest.raises(DataMissing):
        groups(tmp_path / "absent")
    _touch(tmp_path, "a/readme.txt")
    with pytest.raises(ValueError, match="no image files"):
        groups(tmp_path)


def test_groups_protocol_scores_perfect_ranking(tmp_path: Path) -> None:
    """A ranking that lists the query, then its group, then the rest, has mAP 1."""
    _touch(tmp_path, *AWKWARD)
    rs = groups(tmp_path)
    rankings = {
        q: [q, *sorted(rel), *(p for p in rs.images if p != q and p not in rel)]
        for q, rel in rs.queries.items()
    }
    report = summarize(rankings, rs.queries, rs.junk)
    assert report.map == 1.0
    assert report.n_queries == 5


def test_retrieval_set_checks_consistency(tmp_path: Path) -> None:
    def make(**changes: object) -> RetrievalSet:
        fields: dict[str, object] = {
            "name": "t",
            "root": tmp_path,
            "images": ("a", "b"),
            "queries": {"a": frozenset({"b"})},
            "junk": {"a": frozenset({"a"})},
            "rotations": {},
            "groups": {},
        }
        fields.update(changes)
        return RetrievalSet(**fields)

    make()
    with pytest.raises(ValueError, match="sorted"):
        make(images=("b", "a"))
    with pytest.raises(ValueError, match="not among the images"):
        make(queries={"a": frozenset({"c"})})
    with pytest.raises(ValueError, match="own relevant"):
        make(queries={"a": frozenset({"a", "b"})}, junk={})
    with pytest.raises(ValueError, match="both relevant and junk"):
        make(junk={"a": frozenset({"b"})})
    with pytest.raises(ValueError, match="0/90/180/270"):
        make(rotations={"a": 45})


def test_holidays_from_a_tiny_copy(tmp_path: Path) -> None:
    _touch(tmp_path, "images/100000.jpg", "images/100001.jpg", "images/100100.jpg")
    (tmp_path / "ground_truth.json").write_text('{"queries": {"100000": ["100001"]}}')
    (tmp_path / "upright.json").write_text('{"rotate_clockwise_degrees": {"100100": 270}}')
    rs = holidays(tmp_path)
    assert rs.images == ("images/100000.jpg", "images/100001.jpg", "images/100100.jpg")
    assert rs.queries == {"images/100000.jpg": frozenset({"images/100001.jpg"})}
    assert rs.junk == {"images/100000.jpg": frozenset({"images/100000.jpg"})}
    assert rs.rotations == {"images/100100.jpg": 270}
    (tmp_path / "upright.json").unlink()
    with pytest.raises(DataMissing, match=r"upright\.json"):
        holidays(tmp_path)


def test_holidays_splits_and_leave_out(tmp_path: Path) -> None:
    names = ["100000", "100001", "100100", "100101", "100102", "100200", "100201"]
    _touch(tmp_path, *(f"images/{n}.jpg" for n in names))
    (tmp_path / "ground_truth.json").write_text(
        '{"queries": {"100000": ["100001"], "100100": ["100101", "100102"], "100200": ["100201"]}}'
    )
    (tmp_path / "upright.json").write_text('{"rotate_clockwise_degrees": {}}')
    rs = holidays(tmp_path)
    # group 1000 and 1002 validate, group 1001 tests
    assert rs.split("validation") == ["images/100000.jpg", "images/100200.jpg"]
    assert rs.split("test") == ["images/100100.jpg"]
    out = leave_out(rs)
    assert out.indexed == ("images/100001.jpg", "images/100101.jpg", "images/100102.jpg",
                           "images/100201.jpg")  # fmt: skip
    assert out.left_out == frozenset(rs.queries) and out.queries == rs.queries
    assert out.splits == rs.splits


def test_groups_leave_out_first_files_of_each_group(tmp_path: Path) -> None:
    _touch(tmp_path, "a/1.jpg", "a/2.jpg", "a/3.jpg", "b/1.jpg", "b/2.jpg", "c/1.jpg", "x.jpg")
    rs = groups(tmp_path)
    assert rs.splits == {"a/1.jpg": "validation", "a/2.jpg": "validation",
                         "a/3.jpg": "validation", "b/1.jpg": "test", "b/2.jpg": "test"}  # fmt: skip
    one = leave_out(rs, 1)
    assert one.left_out == {"a/1.jpg", "b/1.jpg"}
    assert one.queries == {"a/1.jpg": {"a/2.jpg", "a/3.jpg"}, "b/1.jpg": {"b/2.jpg"}}
    assert one.indexed == ("a/2.jpg", "a/3.jpg", "b/2.jpg", "c/1.jpg", "x.jpg")
    two = leave_out(rs, 2)  # b has no image left to find: it is indexed whole, asks nothing
    assert two.queries == {"a/1.jpg": {"a/3.jpg"}, "a/2.jpg": {"a/3.jpg"}}
    assert two.left_out == {"a/1.jpg", "a/2.jpg"}
    with pytest.raises(ValueError, match="no query"):
        leave_out(rs, 3)
    with pytest.raises(ValueError, match="at least one"):
        leave_out(rs, 0)
    with pytest.raises(ValueError, match="left out of the index"):
        RetrievalSet("bad", tmp_path, rs.images, rs.queries, rs.junk, {}, rs.groups,
                     left_out=frozenset({"a/2.jpg"}))  # fmt: skip


def test_unknown_names_list_the_choices(tmp_path: Path) -> None:
    (tmp_path / "fvc2002_db1").mkdir()
    with pytest.raises(ValueError, match="fvc2002_db1"):
        fingerprints("fvc1999_db9", tmp_path)
    with pytest.raises(ValueError, match="holidays"):
        load_dataset("oxford5k")


# --- the real benchmark data ---------------------------------------------------------


@pytest.mark.data
def test_real_holidays() -> None:
    rs = holidays(require_dataset(data_root() / "holidays"))
    assert len(rs.images) == 811
    assert len(rs.queries) == 300
    assert rs.n_relevant == 511
    assert len(rs.rotations) == 94
    assert all(rs.junk[q] == {q} for q in rs.queries)
    assert rs.path(rs.images[0]).is_file()


@pytest.mark.data
def test_real_fingerprints() -> None:
    require_dataset(data_root() / "fingerprints" / "fvc2002_db1")
    rs = fingerprints("fvc2002_db1")
    assert len(rs.images) == 80
    assert len(rs.queries) == 80
    assert all(len(rel) == 7 for rel in rs.queries.values())
    assert len(set(rs.groups.values())) == 10
    assert set(datasets.FINGERPRINT_SETS) <= set(datasets.DATASETS)


@pytest.mark.data
def test_real_corel() -> None:
    rs = corel(require_dataset(data_root() / "corel"))
    assert len(set(rs.groups.values())) == 80
    assert len(rs.images) == 10_800
