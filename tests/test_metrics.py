"""Retrieval metrics on hand-built rankings with exactly known answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lookalike.evaluate.metrics import (
    RetrievalReport,
    average_precision,
    average_precision_inria,
    mean_average_precision,
    precision_at_k,
    recall_at_k,
    summarize,
    ukbench_score,
)

EXACT = 1e-12


# --- average_precision: exact values -------------------------------------------------


@pytest.mark.parametrize(
    ("ranked", "relevant", "expected"),
    [
        (["a", "b"], {"a", "b"}, 1.0),
        (["a", "x", "b"], {"a", "b"}, (1 + 2 / 3) / 2),
        (["x", "a", "y", "b"], {"a", "b"}, (1 / 2 + 2 / 4) / 2),
        (["x", "y", "a"], {"a"}, 1 / 3),
        (["x", "a"], {"a", "b"}, (1 / 2) / 2),  # b never retrieved: adds 0
        (["x", "y"], {"a"}, 0.0),
        ([], {"a"}, 0.0),
        (("a", "x", "b", "y", "c"), ["a", "b", "c"], (1 + 2 / 3 + 3 / 5) / 3),
    ],
)
def test_average_precision_exact(ranked: list[str], relevant: set[str], expected: float) -> None:
    assert average_precision(ranked, relevant) == pytest.approx(expected, abs=EXACT)


# --- average_precision_inria: INRIA's trapezoid rule, worked by hand --------------------


@pytest.mark.parametrize(
    ("ranked", "relevant", "expected"),
    [
        (["a", "b"], {"a", "b"}, 1.0),
        (["x", "a"], {"a"}, (0 + 1 / 2) / 2),  # 0.25, against 0.5 non-interpolated
        (["a", "x", "b"], {"a", "b"}, ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2) / 2),
        (["x", "a", "y", "b"], {"a", "b"}, ((0 + 1 / 2) / 2 + (1 / 3 + 2 / 4) / 2) / 2),
        (["x", "a"], {"a", "b"}, ((0 + 1 / 2) / 2) / 2),  # b never retrieved: adds 0
        (["x", "y"], {"a"}, 0.0),
        ([], {"a"}, 0.0),
    ],
)
def test_average_precision_inria_exact(
    ranked: list[str], relevant: set[str], expected: float
) -> None:
    assert average_precision_inria(ranked, relevant) == pytest.approx(expected, abs=EXACT)


def _holidays_map_ap(ranks: list[int], nres: int) -> float:
    """INRIA's `score_ap_from_ranks_1` (holidays_map.py), transcribed: `ranks` are the 0-based
    ranks of the relevant images found, in order; `nres` the number of relevant images."""
    ap = 0.0
    recall_step = 1.0 / nres
    for ntp, rank in enumerate(ranks):
        precision_0 = 1.0 if rank == 0 else ntp / float(rank)
        precision_1 = (ntp + 1) / float(rank + 1)
        ap += (precision_1 + precision_0) * recall_step / 2.0
    return ap


@given(
    st.lists(st.booleans(), max_size=30),
    st.integers(min_value=0, max_value=5),
)
def test_average_precision_inria_matches_holidays_map(hits: list[bool], missed: int) -> None:
    ranked = [f"{'r' if hit else 'n'}{i}" for i, hit in enumerate(hits)]
    relevant = {r for r, hit in zip(ranked, hits, strict=True) if hit} | {
        f"missing{i}" for i in range(missed)
    }
    if not relevant:
        return
    ranks = [i for i, hit in enumerate(hits) if hit]
    expected = _holidays_map_ap(ranks, len(relevant))
    got = average_precision_inria(["q", *ranked], relevant, junk={"q"})
    assert got == pytest.approx(expected, abs=EXACT)
    assert got <= average_precision(ranked, relevant) + EXACT


def test_junk_is_removed_before_ranking() -> None:
    ranked = ["q", "a", "x", "b"]
    assert average_precision(ranked, {"a", "b"}) == pytest.approx(0.5, abs=EXACT)
    # Holidays protocol: the query is junk in its own ranking.
    assert average_precision(ranked, {"a", "b"}, junk={"q"}) == pytest.approx(
        (1 + 2 / 3) / 2, abs=EXACT
    )
    # Junk that is not in the ranking changes nothing.
    assert average_precision(ranked, {"a", "b"}, junk={"zzz"}) == pytest.approx(0.5, abs=EXACT)


def test_average_precision_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no relevant"):
        average_precision(["a"], set())
    with pytest.raises(ValueError, match="more than once"):
        average_precision(["a", "b", "a"], {"a"})
    with pytest.raises(ValueError, match="both relevant and junk"):
        average_precision(["a", "b"], {"a"}, junk={"a"})
    with pytest.raises(TypeError, match="string"):
        average_precision("abc", {"a"})
    with pytest.raises(TypeError, match="string"):
        average_precision(["abc"], "abc")


# --- precision, recall, N-S score ----------------------------------------------------


def test_precision_at_k_divides_by_k() -> None:
    ranked = ["a", "x", "b", "y"]
    assert precision_at_k(ranked, {"a", "b"}, 1) == 1.0
    assert precision_at_k(ranked, {"a", "b"}, 2) == 0.5
    assert precision_at_k(ranked, {"a", "b"}, 4) == 0.5
    # Shorter ranking and fewer relevant than k: still divided by k.
    assert precision_at_k(ranked, {"a", "b"}, 10) == pytest.approx(0.2, abs=EXACT)
    assert precision_at_k(["q", "a"], {"a"}, 1, junk={"q"}) == 1.0


def test_recall_at_k() -> None:
    ranked = ["a", "x", "b", "y"]
    assert recall_at_k(ranked, {"a", "b", "c"}, 1) == pytest.approx(1 / 3, abs=EXACT)
    assert recall_at_k(ranked, {"a", "b", "c"}, 3) == pytest.approx(2 / 3, abs=EXACT)
    assert recall_at_k(ranked, {"a", "b"}, 100) == 1.0
    with pytest.raises(ValueError, match="no relevant"):
        recall_at_k(ranked, set(), 3)


def test_ukbench_score_counts_hits_in_top_k() -> None:
    # UKBench style: the query is one of its own 4 relevant images.
    ranked = ["q", "a", "x", "b", "c"]
    assert ukbench_score(ranked, {"q", "a", "b", "c"}) == 3.0
    assert ukbench_score(ranked, {"q", "a", "b", "c"}, k=5) == 4.0
    assert ukbench_score(ranked, {"a", "b", "c"}, junk={"q"}) == 3.0
    assert ukbench_score([], {"a"}) == 0.0


@pytest.mark.parametrize("k", [0, -1, True, 1.5])
def test_k_must_be_a_positive_integer(k: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        precision_at_k(["a"], {"a"}, k)
    with pytest.raises(ValueError, match="positive integer"):
        recall_at_k(["a"], {"a"}, k)
    with pytest.raises(ValueError, match="positive integer"):
        ukbench_score(["a"], {"a"}, k)


# --- mAP and summary -----------------------------------------------------------------

RANKINGS = {
    "q1": ["q1", "a", "x", "b"],  # AP (1 + 2/3)/2 = 5/6 once q1 is junk
    "q2": ["y", "c", "q2"],  # AP 1/2
    "unused": ["a"],  # not in the ground truth: ignored
}
RELEVANT = {"q1": {"a", "b"}, "q2": ["c"]}
JUNK = {"q1": {"q1"}, "q2": {"q2"}}


def test_mean_average_precision() -> None:
    expected = (5 / 6 + 1 / 2) / 2
    assert mean_average_precision(RANKINGS, RELEVANT, junk=JUNK) == pytest.approx(
        expected, abs=EXACT
    )
    # Without junk q1 is ranked first in its own list and costs precision.
    assert mean_average_precision(RANKINGS, RELEVANT) == pytest.approx((0.5 + 0.5) / 2, abs=EXACT)
    q1_inria = ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2) / 2
    assert mean_average_precision(RANKINGS, RELEVANT, junk=JUNK, inria=True) == pytest.approx(
        (q1_inria + 0.25) / 2, abs=EXACT
    )


def test_mean_average_precision_needs_every_query() -> None:
    with pytest.raises(ValueError, match="no ranking"):
        mean_average_precision({"q1": ["a"]}, RELEVANT)
    with pytest.raises(ValueError, match="no queries"):
        mean_average_precision(RANKINGS, {})


def test_summarize() -> None:
    report = summarize(RANKINGS, RELEVANT, JUNK)
    assert isinstance(report, RetrievalReport)
    assert report.n_queries == 2
    assert report.map == pytest.approx((5 / 6 + 1 / 2) / 2, abs=EXACT)
    assert report.per_query_ap == pytest.approx({"q1": 5 / 6, "q2": 0.5}, abs=EXACT)
    q1_inria = ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2) / 2
    assert report.per_query_ap_inria == pytest.approx({"q1": q1_inria, "q2": 0.25}, abs=EXACT)
    assert report.map_inria == pytest.approx((q1_inria + 0.25) / 2, abs=EXACT)
    assert report.p_at_1 == pytest.approx((1 + 0) / 2, abs=EXACT)
    assert report.p_at_5 == pytest.approx((2 / 5 + 1 / 5) / 2, abs=EXACT)
    assert report.p_at_10 == pytest.approx((2 / 10 + 1 / 10) / 2, abs=EXACT)
    assert report.ns_score == pytest.approx((2 + 1) / 2, abs=EXACT)
    as_dict = report.as_dict()
    assert set(as_dict) == {
        "n_queries", "map", "map_inria", "p_at_1", "p_at_5", "p_at_10", "ns_score",
        "per_query_ap", "per_query_ap_inria",
    }  # fmt: skip
    assert as_dict["map"] == report.map
    assert as_dict["per_query_ap"] == report.per_query_ap
    assert as_dict["per_query_ap"] is not report.per_query_ap
    hash(report)  # frozen and hashable despite the dict field


# --- properties ----------------------------------------------------------------------

ranking_and_relevant = st.lists(st.integers(0, 30), min_size=1, max_size=30, unique=True).flatmap(
    lambda items: st.tuples(
        st.permutations([str(i) for i in items]),
        st.sets(st.sampled_from([str(i) for i in [*items, 99, 100]]), min_size=1),
    )
)


@given(ranking_and_relevant)
def test_ap_is_between_zero_and_one(case: tuple[list[str], set[str]]) -> None:
    ranked, relevant = case
    assert 0.0 <= average_precision(ranked, relevant) <= 1.0


@given(ranking_and_relevant)
def test_relevant_first_is_best_and_perfect(case: tuple[list[str], set[str]]) -> None:
    ranked, relevant = case
    best = [r for r in ranked if r in relevant] + [r for r in ranked if r not in relevant]
    ap_best = average_precision(best, relevant)
    assert ap_best >= average_precision(ranked, relevant) - EXACT
    # Perfect ranking: every relevant item, first.
    perfect = sorted(relevant) + [r for r in ranked if r not in relevant]
    assert average_precision(perfect, relevant) == pytest.approx(1.0, abs=EXACT)


@given(ranking_and_relevant)
def test_ap_equals_sum_of_precisions_at_hits(case: tuple[list[str], set[str]]) -> None:
    """Cross-check AP against its definition spelt out with precision_at_k."""
    ranked, relevant = case
    by_definition = sum(
        precision_at_k(ranked, relevant, k)
        for k, item in enumerate(ranked, start=1)
        if item in relevant
    ) / len(relevant)
    assert average_precision(ranked, relevant) == pytest.approx(by_definition, abs=1e-9)


@given(ranking_and_relevant, st.data())
def test_junk_equals_filtering_the_ranking(
    case: tuple[list[str], set[str]], data: st.DataObject
) -> None:
    ranked, relevant = case
    junk = data.draw(st.sets(st.sampled_from(ranked)).map(lambda s: s - relevant))
    filtered = [r for r in ranked if r not in junk]
    assert average_precision(ranked, relevant, junk=junk) == pytest.approx(
        average_precision(filtered, relevant), abs=EXACT
    )
