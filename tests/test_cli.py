"""The `lookalike` command line on real images: index, search, info and eval, through the
typer app as a user runs it (exit codes, tables, --json and error messages)."""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from lookalike import JSON_SCHEMA, __version__
from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.demo import DemoCollection, apply_transform
from lookalike.settings import SEARCH_MODES

pytestmark = pytest.mark.slow

runner = CliRunner()


def _run(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _json(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def _flat(text: str) -> str:
    """Text without whitespace (where only the words matter, not the layout)."""
    return "".join(text.split())


def _failed_cleanly(result: Result) -> str:
    """Assert a non-zero exit through typer.Exit (a message, no traceback); return stderr."""
    assert result.exit_code != 0, result.stdout
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stderr.lstrip().startswith("error:"), result.stderr
    return result.stderr


def _photo(path: str) -> str:
    """'copies/chelsea-crop.jpg', 'chelsea.jpg' -> 'chelsea'."""
    return Path(path).stem.split("-")[0]


def _copy(demo: DemoCollection, folder: Path, names: dict[str, str]) -> Path:
    """Copy demo images (`target name -> path relative to demo.root`) into `folder`."""
    for target, source in names.items():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(demo.root / source, folder / target)
    return folder


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table, as cell strings."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    ]


# --- index ----------------------------------------------------------------------------------


def test_index_json_then_incremental_and_plain_output(demo: DemoCollection, tmp_path: Path) -> None:
    folder = _copy(
        demo,
        tmp_path / "photos, ünï",
        {
            "chelsea.jpg": "originals/chelsea.jpg",
            "coffee café.jpg": "originals/coffee.jpg",
            "sub dir/astronaut, 1.jpg": "originals/astronaut.jpg",
        },
    )
    (folder / "bad.jpg").write_text("these are notes, not a photograph\n", encoding="utf-8")

    first = _json(_run("index", folder, "--json", "--workers", 1))
    assert first["schema"] == JSON_SCHEMA
    assert first["index"] == str((folder / ".lookalike").resolve())
    assert (first["added"], first["updated"], first["removed"], first["unchanged"]) == (3, 0, 0, 0)
    assert first["images"] == 3
    assert [f["path"] for f in first["failed"]] == ["bad.jpg"]
    assert "not an image" in first["failed"][0]["reason"]
    assert first["model"]["origin"] == "generic" and not first["model"]["learned_now"]
    assert first["model"]["id"] == Collection.open(folder).status()["model"]["id"]
    assert first["generation"] == 1

    # nothing changed: the 3 images are unchanged; the bad one is not retried but stays failed
    second = _json(_run("index", folder, "--json", "--workers", 1))
    assert (second["added"], second["updated"], second["removed"]) == (0, 0, 0)
    assert second["unchanged"] == 3
    assert second["failed"] == first["failed"]
    assert second["images"] == 3 and second["generation"] == 1

    # plain output: the summary table and the failure with its reason
    _copy(demo, folder, {"rocket.jpg": "originals/rocket.jpg"})
    plain = _run("index", folder, "--workers", 1)
    assert plain.exit_code == 0, (plain.stdout, plain.stderr)
    assert "extract" in plain.stderr  # the progress bar goes to stderr
    header = next(line for line in plain.stdout.splitlines() if line.startswith("┃"))
    assert header.split("┃")[1:-1] == [
        f" {name} " for name in ("added", "updated", "removed", "unchanged", "failed", "indexed")
    ]
    rows = _table_rows(plain.stdout)
    assert rows == [["1", "0", "0", "3", "1", "4"]], plain.stdout
    # one line each, however long the path and reason: stdout is not a terminal
    assert f"failed bad.jpg: {first['failed'][0]['reason']}" in plain.stdout.splitlines()
    assert "model: generic; generation 2, 1 images in" in plain.stdout
    assert "learned" not in plain.stdout  # the generic model: nothing learned in this run

    # info reports the same images and the failure, in the same JSON form
    info = _json(_run("info", folder, "--json"))
    assert info["schema"] == JSON_SCHEMA
    assert info["images"] == 4 and info["failed"] == first["failed"]
    assert "failures" not in info
    info_plain = _run("info", folder)
    assert info_plain.exit_code == 0
    assert ["images", "4"] in _table_rows(info_plain.stdout)
    assert ["failed", "1"] in _table_rows(info_plain.stdout)
    assert f"failed bad.jpg: {first['failed'][0]['reason']}" in info_plain.stdout.splitlines()


def test_index_of_a_missing_folder_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder"
    message = _failed_cleanly(_run("index", missing, "--workers", 1))
    assert message.splitlines() == [f"error: {missing}: not a folder of images"]
    assert not missing.exists()  # nothing was created for it


def test_index_of_a_folder_without_images_says_so_and_makes_no_index(
    demo: DemoCollection, tmp_path: Path
) -> None:
    folder = tmp_path / ("a folder of notes, ünï " + "with a long name " * 8)
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("not a photograph\n", encoding="utf-8")
    (folder / "sub" / "image.jpg.bak").write_bytes(b"\xff\xd8")
    elsewhere = tmp_path / "index elsewhere"
    for args in ([], ["--index", elsewhere]):
        message = _failed_cleanly(_run("index", folder, *args, "--workers", 1))
        (line,) = message.splitlines()  # one line: no wrapping, however long the path
        assert line.startswith(f"error: no images found in {folder} (files ending ")
        assert all(f"{ending}," in line for ending in (".jpg", ".png", ".heic", ".tiff"))
        assert not (folder / ".lookalike").exists() and not elsewhere.exists()

    # once there is an image, the same folder indexes
    _copy(demo, folder, {"sub/coffee.jpg": "originals/coffee.jpg"})
    assert _json(_run("index", folder, "--json", "--workers", 1))["added"] == 1


# --- search ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def new_copy(demo: DemoCollection, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transformed copy of chelsea that is not in the demo collection (other crop, other
    name), so that finding chelsea first means finding the photograph, not the file."""
    with Image.open(demo.root / "originals/chelsea.jpg") as im:
        original = np.asarray(im.convert("RGB"))
    image = apply_transform("crop", original, np.random.default_rng(123))
    image = apply_transform("light", image, np.random.default_rng(7))
    path = tmp_path_factory.mktemp("query") / "a query, ünï.jpg"
    Image.fromarray(image).save(path, quality=90)
    return path


@pytest.mark.parametrize("mode", [None, *(m for m in SEARCH_MODES if m != "rootsift")])
def test_search_json_finds_the_photograph_of_a_copy(
    demo: DemoCollection, demo_collection: Collection, new_copy: Path, mode: str | None
) -> None:
    args = ["search", new_copy, "--index", demo.root, "--json", "-k", 3]
    data = _json(_run(*args, *(["--mode", mode] if mode else [])))
    assert data["mode"] == mode  # null: the index's setting
    assert data["query"] == str(new_copy)
    assert Path(data["root"]) == demo.root.resolve()
    hits = data["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all(set(h) >= {"rank", "id", "path", "score"} for h in hits)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h["path"] in demo.images for h in hits)
    assert all(demo_collection.id_of(h["path"]) == h["id"] for h in hits)
    assert _photo(hits[0]["path"]) == "chelsea", hits
    if mode in (None, "fused"):
        assert hits[0]["asmk_score"] is not None and hits[0]["global_score"] is not None


def test_search_without_a_mode_keeps_the_index_setting(
    demo: DemoCollection, demo_collection: Collection, new_copy: Path, tmp_path: Path
) -> None:
    root = tmp_path / "global by default"
    shutil.copytree(demo.root, root, symlinks=True)
    collection = Collection.open(root)
    stored = collection.settings
    collection.configure(replace(stored, search=replace(stored.search, mode="global")))
    args = ["search", new_copy, "--index", root, "--json", "-k", 3, "--verify", 0]
    default = _json(_run(*args))
    assert default["mode"] is None
    hits = default["hits"]
    assert all(h["asmk_score"] is None and h["global_score"] is not None for h in hits), hits
    assert hits == _json(_run(*args, "--mode", "global"))["hits"]
    assert hits != _json(_run(*args, "--mode", "fused"))["hits"]
    plain = _run("search", new_copy, "--index", root, "-k", 3)
    assert plain.exit_code == 0, plain.stderr
    assert "3 hits for" in plain.stdout and "fused" not in plain.stdout


def test_rootsift_mode_asks_for_an_index_made_with_sift(
    demo: DemoCollection, demo_collection: Collection, new_copy: Path
) -> None:
    # the demo index has no RootSIFT features (tests/test_rootsift_index.py makes one that has)
    message = _failed_cleanly(_run("search", new_copy, "--index", demo.root, "--mode", "rootsift"))
    assert _flat("lookalike index FOLDER --sift") in _flat(message)


def test_search_plain_output_lists_the_hits(
    demo: DemoCollection, demo_collection: Collection, monkeypatch: Any
) -> None:
    monkeypatch.chdir(demo.root.parent)  # paths are shown as opened from here
    result = _run("search", demo.root / demo.query, "--index", demo.root, "-k", 2)
    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "rank",
        "id",
        "verdict",
        "similarity",
        "inliers",
        "path",
    ]
    rows = _table_rows(result.stdout)
    assert [r[0] for r in rows] == ["1", "2"]
    # the query file itself is indexed: it comes first, with its id, and a path from here
    assert rows[0][1] == str(demo_collection.id_of(demo.query))
    assert rows[0][-1] == str(Path(demo.root.name) / demo.query)
    assert all((demo.root.parent / r[-1]).is_file() for r in rows)
    assert rows[0][2] == "match" and float(rows[0][3]) >= 0.5
    assert int(rows[0][4]) >= 100  # verified: with itself, every feature is an inlier
    assert "2 hits for" in result.stdout

    # --absolute: paths that open from anywhere
    absolute = _run("search", demo.root / demo.query, "--index", demo.root, "-k", 2, "--absolute")
    assert absolute.exit_code == 0, absolute.stderr
    assert [r[-1] for r in _table_rows(absolute.stdout)] == [
        str(demo.root / r[-1].split("/", 1)[1]) for r in rows
    ]

    # the id column is what `lookalike search ID` takes: the second hit's id finds it first
    by_id = _json(_run("search", rows[1][1], "--index", demo.root, "--json", "-k", 1))
    assert by_id["hits"][0]["id"] == int(rows[1][1])
    assert str(Path(demo.root.name) / by_id["hits"][0]["path"]) == rows[1][-1]


def test_search_by_indexed_id(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # no file named like the id here
    image_id = demo_collection.id_of(demo.query)
    assert image_id is not None
    data = _json(_run("search", image_id, "--index", demo.root, "--json", "-k", 3))
    assert data["query"] == str(image_id)
    hits = data["hits"]
    assert (hits[0]["id"], hits[0]["path"]) == (image_id, demo.query)  # itself first
    assert _photo(hits[1]["path"]) == _photo(demo.query)

    unknown = max(demo_collection.id_of(p) or 0 for p in demo.images) + 1000
    message = _failed_cleanly(_run("search", unknown, "--index", demo.root))
    assert f"no indexed image with id {unknown}" in message


def test_search_rejects_an_unknown_mode(demo: DemoCollection, demo_collection: Collection) -> None:
    result = _run("search", demo.root / demo.query, "--index", demo.root, "--mode", "nearest")
    message = _failed_cleanly(result)
    assert "'nearest'" in message
    assert _flat(f"allowed: {', '.join(SEARCH_MODES)}") in _flat(message)


def test_search_with_a_query_that_is_not_an_image(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    notes = tmp_path / "notes, ünï.jpg"
    notes.write_text("just some text\n", encoding="utf-8")
    message = _failed_cleanly(_run("search", notes, "--index", demo.root, "--json"))
    assert _flat(f"{notes}: not an image file") in _flat(message)

    missing = tmp_path / "missing.jpg"
    message = _failed_cleanly(_run("search", missing, "--index", demo.root))
    assert _flat(str(missing)) in _flat(message)


def test_search_and_info_without_an_index_say_to_run_index(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["search", "query.jpg"], ["info"]):
        message = _failed_cleanly(_run(*args))
        assert "no index here" in message
        assert _flat("`lookalike index FOLDER`") in _flat(message)
    message = _failed_cleanly(_run("info", tmp_path))
    assert _flat(f"no lookalike index at {tmp_path}") in _flat(message)
    assert "lookalike index" in message


# --- info -----------------------------------------------------------------------------------


def test_info_json_and_plain(demo: DemoCollection, demo_collection: Collection) -> None:
    data = _json(_run("info", demo.root, "--json"))
    assert data["schema"] == JSON_SCHEMA
    assert data["index"] == str(demo_collection.index_dir)
    assert data["images"] == len(demo.images)
    assert data["failed"] == []
    assert data["model"]["origin"] == "generic"  # far under the images needed to learn one
    assert data["generation"] >= 1
    assert data["bytes"]["features"] > 0 and data["bytes"]["indexes"] > 0
    for part, total in data["bytes"].items():
        assert data["bytes_per_image"][part] == pytest.approx(total / len(demo.images))

    plain = _run("info", demo.root)
    assert plain.exit_code == 0, plain.stderr
    rows = _table_rows(plain.stdout)
    assert ["images", str(len(demo.images))] in rows
    assert ["failed", "0"] in rows
    model_row = next(r for r in rows if r[0] == "model")
    assert model_row[1].startswith(f"generic · {data['model']['features']}")
    assert "kB/image" in plain.stdout


# --- eval groups ----------------------------------------------------------------------------


@pytest.fixture
def groups_tree(demo: DemoCollection, tmp_path: Path) -> Path:
    """Three groups, each an original and two of its copies: `groups/<name>/...`."""
    names: dict[str, str] = {}
    for photo in ("chelsea", "coffee", "astronaut"):
        names[f"{photo}/{photo}.jpg"] = f"originals/{photo}.jpg"
        for transform in ("crop", "rotate"):
            names[f"{photo}/{photo} {transform}.jpg"] = f"copies/{photo}-{transform}.jpg"
    return _copy(demo, tmp_path / "groups", names)


def test_eval_groups_scores_a_tiny_set(
    demo: DemoCollection, groups_tree: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LOOKALIKE_CACHE", str(cache))
    args = ["eval", "groups", groups_tree, "--json", "--modes", "fused", "--workers", 1]
    methods = ["fused", "fused+classic", "colour", "phash", "gem"]

    data = _json(_run(*args[:-3], ",".join(methods), *args[-2:]))
    assert (data["dataset"], data["images"], data["protocol"]) == ("groups", 9, "official")
    assert Path(data["index"]).is_relative_to(cache)  # written in the cache, not in the set
    assert not (groups_tree / ".lookalike").exists()
    assert list(data["modes"]) == methods
    every = {m: data["modes"][m]["all"] for m in methods}
    assert all(every[m]["n_queries"] == 9 for m in methods)
    # the groups alternate between the halves: astronaut and coffee validate, chelsea tests
    assert data["modes"]["fused"]["validation"]["n_queries"] == 6
    assert data["modes"]["fused"]["test"]["n_queries"] == 3
    fused = every["fused"]
    assert fused["map"] >= 0.8
    assert fused["map_inria"] <= fused["map"]
    assert fused["p_at_1"] >= 0.8
    assert 1.5 <= fused["ns_score"] <= 2.0  # 2 other images per group: 2 is perfect
    assert every["fused+classic"]["map"] >= 0.8
    # a perceptual hash does not survive crops and turns; the CNN's raw descriptor partly does
    assert every["phash"]["map"] < every["gem"]["map"] <= fused["map"]

    distractors = _copy(
        demo,
        tmp_path / "distractors",
        {"rocket.jpg": "originals/rocket.jpg", "clock.jpg": "originals/clock.jpg"},
    )
    data = _json(_run(*args, "--distractors", distractors))
    assert data["images"] == 11
    assert Path(data["index"]).is_relative_to(cache)
    assert (cache / "views").is_dir()
    fused = data["modes"]["fused"]["all"]
    assert fused["n_queries"] == 9  # distractors are never queries
    assert fused["map"] >= 0.8


def test_eval_groups_leave_out_indexes_only_the_other_files(
    groups_tree: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results" / "leave-out.json"
    args = ["eval", "groups", groups_tree, "--leave-out", 1, "--modes", "fused,gem"]
    data = _json(_run(*args, "--workers", 1, "--out", out, "--json"))
    assert (data["protocol"], data["images"]) == ("leave-out", 6)
    indexed = {p for _, p in Collection.open(Path(data["index"])).images()}
    # the first file of each group by name is the query: "chelsea crop.jpg" < "chelsea.jpg"
    queries = {f"{g}/{g} crop.jpg" for g in ("chelsea", "coffee", "astronaut")}
    assert (
        indexed
        == {p.relative_to(groups_tree).as_posix() for p in groups_tree.rglob("*.jpg")} - queries
    )
    assert data["modes"]["fused"]["all"]["n_queries"] == 3
    assert data["modes"]["fused"]["all"]["map"] >= 0.8
    detail = json.loads(out.read_text())  # the full results: each query's APs and ranking
    assert set(detail["modes"]["fused"]["queries"]) == queries
    for q, row in detail["modes"]["gem"]["queries"].items():
        assert len(row["ranking"]) == 6 and q not in row["ranking"]
        assert 0 <= row["ap_inria"] <= row["ap"] <= 1

    by_id = _run(*args, "--by-id")
    assert "does not go with --leave-out" in _failed_cleanly(by_id)


def test_eval_fails_before_indexing_and_keeps_finished_methods(
    groups_tree: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    index = tmp_path / "index"
    args = ["eval", "groups", groups_tree, "--index", index, "--workers", 1]
    message = _failed_cleanly(_run(*args, "--modes", "fused,global,rootsift"))
    assert _flat("--sift") in _flat(message)
    status = Collection.open(index).status()  # refused before indexing anything:
    assert (status["images"], status["generation"]) == (0, 0)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("the hashing library broke")

    monkeypatch.setattr("lookalike.evaluate.methods.phash_collection", broken)
    out = tmp_path / "partial.json"
    result = _run(*args, "--modes", "fused,phash", "--out", out)
    message = _failed_cleanly(result)
    assert "stopped after 1 method(s)" in message and "hashing library broke" in message
    assert "fused" in result.stdout  # the finished method's table is printed
    assert list(json.loads(out.read_text())["modes"]) == ["fused"]  # and kept


def test_eval_groups_errors_are_messages(
    demo: DemoCollection, groups_tree: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    message = _failed_cleanly(_run("eval", "groups", groups_tree, "--modes", "fused,nearest"))
    assert "nearest" in message and _flat(f"allowed: {', '.join(SEARCH_MODES)}") in _flat(message)
    message = _failed_cleanly(_run("eval", "groups", groups_tree, "--modes", "fused+sift"))
    assert _flat("cannot fuse 'sift'") in _flat(message)

    missing = tmp_path / "no distractors here"
    message = _failed_cleanly(_run("eval", "groups", groups_tree, "--distractors", missing))
    assert _flat(str(missing)) in _flat(message)

    flat = _copy(demo, tmp_path / "flat", {"rocket.jpg": "originals/rocket.jpg"})
    message = _failed_cleanly(_run("eval", "groups", flat))
    assert "no group folder" in message

    # a long path: the message stays on one line (rich wrapped it at 80 columns, across
    # "not a folder" when the temporary path was long)
    nowhere = tmp_path / ("nowhere, " + "a long folder name " * 6)
    message = _failed_cleanly(_run("eval", "groups", nowhere))
    (line,) = message.splitlines()
    assert str(nowhere) in line and "not a folder" in line


# --- help -----------------------------------------------------------------------------------


def test_help_describes_commands_and_options(monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the same layout whatever terminal runs the tests
    top = _run("--help")
    assert top.exit_code == 0
    for command in ("index", "search", "info", "eval", "demo"):
        assert command in top.stdout
    for option in ("--version", "--install-completion", "--show-completion"):
        assert option in top.stdout

    index = _run("index", "--help")
    assert index.exit_code == 0
    for option in ("--index", "--model", "--preset", "--refit", "--workers", "--json", "--quiet"):
        assert option in index.stdout
    assert "Extraction processes" in index.stdout

    search = _run("search", "--help")
    assert search.exit_code == 0
    assert "--mode" in search.stdout and "--json" in search.stdout and "--absolute" in search.stdout
    # the extra's name is not taken for markup; the command is a line of its own, so that it
    # is not cut where the column holds it (index's at 80 columns, search's at 160)
    command = "`pip install 'lookalike[ray]'`"
    assert command in index.stdout, index.stdout
    monkeypatch.setenv("COLUMNS", "160")
    wide = _run("search", "--help").stdout
    assert command in wide and "Needs the ray extra:" in wide, wide


def _entries(help_text: str) -> dict[str, list[str]]:
    """The Commands panel of a --help: each command's description, as its wrapped lines."""
    panel = help_text[help_text.index("Commands") :].splitlines()[1:]
    entries: dict[str, list[str]] = {}
    name = ""
    for line in panel:
        if not line.startswith("│"):
            break
        cells = line[1:-1].split(maxsplit=1) if line[2] != " " else ["", line[1:-1].strip()]
        if cells[0]:
            name = cells[0]
            entries[name] = []
        entries[name].append(cells[-1].strip())
    return entries


def test_help_lists_commands_wrapped_only_where_a_line_is_full(monkeypatch: Any) -> None:
    """A description breaks only where the next word does not fit, never where the docstring
    had a line break (typer kept those in the list of commands)."""
    monkeypatch.setenv("COLUMNS", "80")
    text = _run("--help").stdout
    entries = _entries(text)
    assert {"index", "check", "train", "search", "dedup", "shard", "info", "serve"} <= set(entries)
    panel_line = next(line for line in text.splitlines() if line.startswith("│ check"))
    width = len(panel_line) - panel_line.index("Check") - 2  # the description column
    for name, lines in entries.items():
        for line, following in itertools.pairwise(lines):
            assert len(line) + 1 + len(following.split()[0]) > width, (name, lines)
    assert " ".join(entries["check"]).startswith("Check an index for damaged files (catalog,")
    assert "model, the generation searches read):" in " ".join(entries["check"])


def test_version() -> None:
    result = _run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"lookalike {__version__}\n"
    assert __version__.count(".") == 2 and all(p.isdigit() for p in __version__.split("."))


def test_demo_command_builds_indexes_and_checks_the_sample(tmp_path: Path) -> None:
    """`make demo` runs this: it must succeed on a fresh folder and say what it found."""
    result = runner.invoke(app, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "60 of 60 transformed copies find their own photograph first" in result.output
    assert (tmp_path / "demo" / ".lookalike" / "catalog.sqlite").is_file()


def test_train_in_place_then_index_uses_the_trained_network(
    demo: DemoCollection, tmp_path: Path
) -> None:
    root = tmp_path / "few photos"
    root.mkdir()
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        shutil.copyfile(demo.root / "originals" / f"{name}.jpg", root / f"{name}.jpg")
    result = runner.invoke(app, ["train", str(root), "--minutes", "0.02", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["in_place"] and summary["images"] == 4
    bundle = Path(summary["bundle"])
    assert (bundle / "weights.pt").is_file() and (bundle / "meta.json").is_file()

    indexed = runner.invoke(app, ["index", str(root), "--json", "-q", "--workers", "1"])
    assert indexed.exit_code == 0, indexed.output
    report = json.loads(indexed.output)
    assert report["model"]["origin"].startswith("bundle") and report["images"] == 4
    found = runner.invoke(
        app, ["search", str(demo.root / "copies/coffee-noise.jpg"), "--index", str(root), "--json"]
    )
    assert json.loads(found.output)["hits"][0]["path"] == "coffee.jpg"


def test_train_given_an_index_folder_learns_from_its_collection(
    demo: DemoCollection, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        shutil.copyfile(demo.root / "originals" / f"{name}.jpg", root / f"{name}.jpg")
    index_dir = tmp_path / "elsewhere"
    args = ["index", str(root), "--index", str(index_dir), "-q", "--workers", "1"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["train", str(index_dir), "--minutes", "0.01", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["images"] == 4 and summary["in_place"]
    assert Path(summary["bundle"]) == index_dir.resolve() / "trained"
    indexed = runner.invoke(app, [*args, "--json"])
    assert json.loads(indexed.output)["model"]["origin"].startswith("bundle")


def test_train_refuses_a_bad_start(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path), "--from", "nowhere"])
    assert result.exit_code != 0
    assert "imagenet" in result.output


def test_eval_robustness_reports_each_method_and_writes_plots(
    demo: DemoCollection, groups_tree: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    args = ["eval", "robustness", groups_tree, "--queries", 2, "--families", "jpeg,blur"]
    plots = tmp_path / "plots"
    data = _json(
        _run(*args, "--methods", "lookalike,phash", "--plots", plots, "--workers", 1, "--json")
    )
    assert (data["dataset"], data["images"], data["queries"]) == ("groups", 9, 2)
    assert list(data["methods"]) == ["lookalike", "phash"]
    assert sorted(data["transforms"]) == sorted(
        f"{f}-{level}" for f in ("jpeg", "blur") for level in range(1, 6)
    )
    assert data["methods"]["lookalike"]["transforms"]["jpeg-1"]["r10"] == 1.0
    assert sorted(Path(p).name for p in data["plots"]) == [
        "robustness-blur.png",
        "robustness-jpeg.png",
    ]
    message = _failed_cleanly(_run(*args, "--methods", "lookalike,clip"))
    assert "clip" in message and "phash" in message
    table = _run(*args, "--methods", "phash")
    assert table.exit_code == 0, table.output
    flat = _flat(table.stdout)
    assert "(recall@1/recall@10)" in flat and "phash" in flat and "average" in flat


def test_index_backbone_is_kept_and_a_new_one_describes_every_image_again(
    tmp_path: Path,
) -> None:
    from conftest import write_tiny_folder
    from lookalike.catalog import Catalog

    def extracted_with(collection: Collection) -> str:
        with Catalog.open(collection.index_dir, readonly=True) as catalog:
            return str(catalog.get_meta("extracted_with"))

    folder = write_tiny_folder(tmp_path / "tiny")
    lite1 = ("--backbone", "efficientnet_lite1")
    first = _json(_run("index", folder, *lite1, "--json", "--workers", 1))
    assert first["added"] == first["images"] == 6
    collection = Collection.open(folder)
    assert collection.settings.features.backbone == "efficientnet_lite1"
    assert extracted_with(collection).startswith("lite1-")
    again = _json(_run("index", folder, "--json", "--workers", 1))  # kept: nothing to do
    assert again["unchanged"] == 6 and again["added"] == again["updated"] == 0
    _json(_run("index", folder, "--backbone", "efficientnet_lite0", "--json", "--workers", 1))
    collection = Collection.open(folder)
    assert collection.settings.features.backbone == "efficientnet_lite0"
    assert extracted_with(collection).startswith("lite0-")  # every image described again
    assert collection.search(folder / "f.jpg", k=1)[0].path == "f.jpg"
    message = _failed_cleanly(_run("index", folder, "--backbone", "resnet50"))
    assert _flat("allowed: efficientnet_lite0, efficientnet_lite1, efficientnet_lite2") in _flat(
        message
    )
