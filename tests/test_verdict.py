"""Verdicts and similarities: exact values of the rule, then on real images (the demo
collection, and photographs that are not in it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.search.verdict import at_least, matches_first, similarity, verdict
from lookalike.settings import SearchOptions, VerdictSettings

RULE = VerdictSettings(
    match_inliers=20, match_global=0.4, sure_inliers=60, similar_inliers=12, similar_global=0.5
)


def test_similarity_follows_the_stated_rule() -> None:
    assert similarity(20, 0.4, RULE) == pytest.approx(0.5)
    assert similarity(40, 0.8, RULE) == pytest.approx(0.75)  # both twice the thresholds
    assert similarity(40, 0.4, RULE) == pytest.approx(0.5)  # the weaker of the two counts
    assert similarity(120, 0.0, RULE) == pytest.approx(0.75)  # sure by geometry alone
    assert similarity(120, None, RULE) == pytest.approx(0.75)
    e = max(0.39 / 0.5, 59 / 12)
    assert similarity(59, 0.39, RULE) == pytest.approx(min(e / (2 * (1 + e)), 0.5))
    assert similarity(None, 0.5, RULE) == pytest.approx(0.25)
    assert similarity(None, 0.25, RULE) == pytest.approx(0.5 / 3)
    assert similarity(0, -0.4, RULE) == 0.0
    assert similarity(None, None, RULE) is None


def test_similarity_grows_with_either_evidence_and_stays_below_one() -> None:
    inliers = [similarity(n, 0.45, RULE) for n in range(0, 400)]
    cosines = [similarity(25, c, RULE) for c in np.linspace(-1, 1, 201)]
    for values in (inliers, cosines):
        assert all(v is not None and 0 <= v < 1 for v in values)
        assert np.all(np.diff(np.asarray(values, float)) >= 0)
    # the global descriptor alone never makes a match, nor a few inliers with it
    assert similarity(None, 1.0, RULE) < 0.5  # type: ignore[operator]
    assert similarity(19, 1.0, RULE) < 0.5  # type: ignore[operator]
    assert similarity(59, 0.39, RULE) < 0.5  # type: ignore[operator]
    assert verdict(similarity(19, 1.0, RULE)) == "similar"


def test_verdicts_read_off_the_similarity() -> None:
    assert [verdict(v) for v in (0.0, 0.2499, 0.25, 0.4999, 0.5, 0.99)] == [
        "none",
        "none",
        "similar",
        "similar",
        "match",
        "match",
    ]
    assert verdict(None) == "similar"
    assert at_least("match", "similar") and at_least("similar", "none")
    assert not at_least("none", "similar")
    with pytest.raises(ValueError, match="allowed: none, similar, match"):
        at_least("match", "sure")
    with pytest.raises(ValueError, match="allowed"):
        SearchOptions(min_verdict="sure")
    with pytest.raises(ValueError):
        VerdictSettings(match_inliers=10, similar_inliers=12)
    with pytest.raises(ValueError):
        VerdictSettings(match_global=0.0)


def test_matches_first_keeps_each_side_in_order() -> None:
    final = np.array([0.9, 0.2, 0.5, 0.7, 0.1], np.float32)
    lifted = matches_first(final, np.array([1, 4]))
    assert list(np.argsort(-lifted, kind="stable")) == [1, 4, 0, 3, 2]
    assert matches_first(final, np.zeros(0, np.int64)) is final


# --- on real images --------------------------------------------------------------------------


def _photo(path: str) -> str:
    return Path(path).stem.split("-")[0]


@pytest.mark.slow
def test_matches_are_the_right_photograph_and_come_first(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """Each copy of the demo searched from its file: every 'match' shows its own photograph,
    matches come before every other hit, and nearly every copy has one."""
    found = 0
    for copy in demo.originals:
        hits = demo_collection.search(demo.root / copy, k=10)
        verdicts = [h.verdict for h in hits]
        matches = [h for h in hits if h.verdict == "match"]
        assert verdicts == sorted(verdicts, key=lambda v: v != "match"), (copy, verdicts)
        assert all(_photo(h.path) == _photo(copy) for h in matches), (copy, matches)
        assert all(h.similarity is not None and h.similarity >= 0.5 for h in matches)
        found += any(h.path != copy for h in matches)
    assert found >= 0.9 * len(demo.originals), found


@pytest.mark.slow
@pytest.mark.parametrize("name", ["brick", "page", "gravel", "text"])
def test_a_photograph_not_in_the_collection_matches_nothing(
    demo_collection: Collection, name: str, tmp_path: Path
) -> None:
    from skimage import data

    pixels = np.asarray(getattr(data, name)())
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    path = tmp_path / f"{name}.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    hits = demo_collection.search(path, k=10)
    assert len(hits) == 10
    assert [h.verdict for h in hits if h.verdict == "match"] == []
    assert all(h.similarity is not None and h.similarity < 0.5 for h in hits)
    assert len(demo_collection.search(path, k=10, min_verdict="match")) == 0


@pytest.mark.slow
def test_similarity_does_not_depend_on_how_the_query_is_given(
    demo: DemoCollection, demo_collection: Collection
) -> None:
    """A file, its bytes and the indexed image's id give each hit the same verdict and nearly
    the same similarity, although the ranking scores are scaled by each search's best."""
    path = demo.root / demo.query
    image_id = demo_collection.id_of(demo.query)
    assert image_id is not None
    by_file = {h.id: h for h in demo_collection.search(path, k=8) if h.id != image_id}
    by_bytes = {h.id: h for h in demo_collection.search(path.read_bytes(), k=8)}
    by_id = {h.id: h for h in demo_collection.search(image_id, k=7, exclude_self=True)}
    shared = [i for i in by_id if i in by_file and i in by_bytes][:4]
    assert len(shared) >= 3
    for i in shared:
        a, b, c = by_file[i], by_bytes[i], by_id[i]
        assert a.verdict == b.verdict == c.verdict, (a, c)
        assert a.similarity == pytest.approx(b.similarity, abs=1e-6)
        assert a.similarity == pytest.approx(c.similarity, abs=0.05)


@pytest.mark.slow
def test_cli_lists_matches_only_and_says_when_there_is_none(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    runner = CliRunner()
    index = str(demo_collection.index_dir)
    query = str(demo.root / demo.query)
    done = runner.invoke(app, ["search", query, "--index", index, "--matches-only", "--json"])
    assert done.exit_code == 0, done.output
    hits = json.loads(done.stdout)["hits"]
    assert hits and all(h["verdict"] == "match" and h["similarity"] >= 0.5 for h in hits)
    from skimage import data

    lost = tmp_path / "brick.png"
    Image.fromarray(np.stack([data.brick()] * 3, axis=-1)).save(lost)
    shown = runner.invoke(app, ["search", str(lost), "--index", index, "-k", "3"])
    assert shown.exit_code == 0, shown.output
    assert "no match in the collection" in shown.stdout
    assert "verdict" in shown.stdout
    bad = runner.invoke(app, ["search", query, "--index", index, "--min-verdict", "sure"])
    assert bad.exit_code != 0
    assert "allowed: none, similar, match" in bad.output
