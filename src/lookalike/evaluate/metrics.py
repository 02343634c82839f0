"""Retrieval metrics: average precision, precision/recall at k, UKBench N-S score.

Every function is pure. A *ranking* is a sequence of image ids, best match first;
*relevant* is the set of ids that count as hits for the query; *junk* ids are
removed from the ranking before scoring, as if they had never been retrieved
(the Holidays protocol passes ``junk={q: {q}}`` to drop each query from its own
ranking).

Ids are plain strings. A ranking may not list an id twice, and no id may be both
relevant and junk: both are almost always bugs upstream and raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "RetrievalReport",
    "average_precision",
    "average_precision_inria",
    "mean_average_precision",
    "precision_at_k",
    "recall_at_k",
    "summarize",
    "ukbench_score",
]


def _as_id_set(ids: Collection[str], what: str) -> frozenset[str]:
    """Turn a collection of ids into a set, refusing a bare string (a common slip)."""
    if isinstance(ids, str):
        raise TypeError(f"{what} must be a collection of ids, not the string {ids!r}")
    return ids if isinstance(ids, frozenset) else frozenset(ids)


def _clean_ranking(ranked: Sequence[str], junk: frozenset[str]) -> list[str]:
    """Return ``ranked`` with junk ids removed, checking it names each id once."""
    if isinstance(ranked, str):
        raise TypeError(f"ranked must be a sequence of ids, not the string {ranked!r}")
    seen: set[str] = set()
    cleaned: list[str] = []
    for item in ranked:
        if item in seen:
            raise ValueError(f"the ranking lists {item!r} more than once; deduplicate it first")
        seen.add(item)
        if item not in junk:
            cleaned.append(item)
    return cleaned


def _prepare(
    ranked: Sequence[str], relevant: Collection[str], junk: Collection[str]
) -> tuple[list[str], frozenset[str]]:
    rel = _as_id_set(relevant, "relevant")
    junk_set = _as_id_set(junk, "junk")
    both = rel & junk_set
    if both:
        raise ValueError(
            f"ids {sorted(both)[:5]} are both relevant and junk; a junk id cannot be a hit"
        )
    return _clean_ranking(ranked, junk_set), rel


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def average_precision(
    ranked: Sequence[str], relevant: Collection[str], *, junk: Collection[str] = ()
) -> float:
    """Non-interpolated average precision of one ranked list.

    AP = (1 / |relevant|) * sum over relevant items r found in the ranking of
    precision@rank(r), with ranks counted after removing junk ids. Relevant items
    absent from the ranking count as retrieved at infinity and add 0.

    This is the standard definition (TREC, Oxford/Paris ``compute_ap`` without
    its trapezoid). INRIA's own ``holidays_map.py`` integrates the same curve with
    the trapezoid rule, which gives slightly lower numbers than this one.

    Args:
        ranked: ids, best first; each id at most once.
        relevant: ids that are hits; must not be empty.
        junk: ids dropped from the ranking before scoring.

    Returns:
        AP in [0, 1].

    Raises:
        ValueError: empty ``relevant``, a repeated id in ``ranked``, or an id that is
            both relevant and junk.
    """
    cleaned, rel = _prepare(ranked, relevant, junk)
    if not rel:
        raise ValueError("average precision is undefined for a query with no relevant items")
    hits = 0
    total = 0.0
    for rank, item in enumerate(cleaned, start=1):
        if item in rel:
            hits += 1
            total += hits / rank
    return total / len(rel)


def average_precision_inria(
    ranked: Sequence[str], relevant: Collection[str], *, junk: Collection[str] = ()
) -> float:
    """Average precision as INRIA's ``holidays_map.py`` computes it (``score_ap_from_ranks_1``):
    the precision-recall curve integrated with trapezoids, each relevant item found adding
    ``(P_before + P_after) / 2 / |relevant|``, where ``P_before`` is the precision just before
    its rank (1 at rank 1) and ``P_after`` the precision at its rank.

    Published Holidays figures use this rule. It is lower than :func:`average_precision`
    whenever a relevant item follows a non-relevant one: a query whose one relevant image comes
    second scores 0.25 here, 0.5 there. Arguments, ranks and errors as
    :func:`average_precision`.
    """
    cleaned, rel = _prepare(ranked, relevant, junk)
    if not rel:
        raise ValueError("average precision is undefined for a query with no relevant items")
    total = 0.0
    found = 0
    for rank, item in enumerate(cleaned):  # rank: items retrieved before this one
        if item in rel:
            before = 1.0 if rank == 0 else found / rank
            after = (found + 1) / (rank + 1)
            total += (before + after) / 2
            found += 1
    return total / len(rel)


def precision_at_k(
    ranked: Sequence[str], relevant: Collection[str], k: int, *, junk: Collection[str] = ()
) -> float:
    """Fraction of the top ``k`` (after junk removal) that is relevant.

    Always divides by ``k``, even when the ranking is shorter than ``k`` or there are
    fewer than ``k`` relevant items (so a perfect score may be unreachable).
    """
    _check_k(k)
    cleaned, rel = _prepare(ranked, relevant, junk)
    return sum(1 for item in cleaned[:k] if item in rel) / k


def recall_at_k(
    ranked: Sequence[str], relevant: Collection[str], k: int, *, junk: Collection[str] = ()
) -> float:
    """Fraction of the relevant items found in the top ``k`` (after junk removal).

    Raises:
        ValueError: empty ``relevant`` or ``k < 1``.
    """
    _check_k(k)
    cleaned, rel = _prepare(ranked, relevant, junk)
    if not rel:
        raise ValueError("recall is undefined for a query with no relevant items")
    return sum(1 for item in cleaned[:k] if item in rel) / len(rel)


def ukbench_score(
    ranked: Sequence[str], relevant: Collection[str], k: int = 4, *, junk: Collection[str] = ()
) -> float:
    """Number of relevant items in the top ``k`` (UKBench N-S score, 0..k).

    On UKBench itself the query is *kept* in its ranking and counts as one of its
    4 relevant images; pass it in ``relevant`` (not ``junk``) to reproduce that.
    """
    _check_k(k)
    cleaned, rel = _prepare(ranked, relevant, junk)
    return float(sum(1 for item in cleaned[:k] if item in rel))


def _query_set(
    rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, Collection[str]]
) -> list[str]:
    """The queries to score: those of the ground truth, all of which need a ranking."""
    if not relevant:
        raise ValueError("no queries: the relevant mapping is empty")
    missing = [q for q in relevant if q not in rankings]
    if missing:
        raise ValueError(
            f"{len(missing)} queries of the ground truth have no ranking, e.g. {missing[:5]}"
        )
    return list(relevant)


def mean_average_precision(
    rankings: Mapping[str, Sequence[str]],
    relevant: Mapping[str, Collection[str]],
    *,
    junk: Mapping[str, Collection[str]] | None = None,
    inria: bool = False,
) -> float:
    """Mean of :func:`average_precision` (with ``inria``, of :func:`average_precision_inria`)
    over the queries of ``relevant``.

    Args:
        rankings: query id -> ranked ids; extra queries not in ``relevant`` are ignored.
        relevant: query id -> relevant ids (the ground truth defines the queries).
        junk: query id -> ids removed from that query's ranking; missing queries
            have no junk.

    Raises:
        ValueError: no queries, or a query of the ground truth without a ranking.
    """
    queries = _query_set(rankings, relevant)
    junk = junk or {}
    ap = average_precision_inria if inria else average_precision
    aps = [ap(rankings[q], relevant[q], junk=junk.get(q, ())) for q in queries]
    return sum(aps) / len(aps)


@dataclass(frozen=True)
class RetrievalReport:
    """Summary of a retrieval run; every figure is a mean over ``n_queries`` queries.

    ``map`` is the mean non-interpolated AP (:func:`average_precision`), ``map_inria`` the
    mean of INRIA's trapezoid AP (:func:`average_precision_inria`); ``ns_score`` is the mean
    UKBench-style count of relevant items in the top 4.
    """

    n_queries: int
    map: float
    map_inria: float
    p_at_1: float
    p_at_5: float
    p_at_10: float
    ns_score: float
    per_query_ap: dict[str, float] = field(hash=False, repr=False)
    per_query_ap_inria: dict[str, float] = field(hash=False, repr=False)

    def as_dict(self) -> dict[str, int | float | dict[str, float]]:
        """Plain dict (JSON-ready), including copies of the per-query APs."""
        return {
            "n_queries": self.n_queries,
            "map": self.map,
            "map_inria": self.map_inria,
            "p_at_1": self.p_at_1,
            "p_at_5": self.p_at_5,
            "p_at_10": self.p_at_10,
            "ns_score": self.ns_score,
            "per_query_ap": dict(self.per_query_ap),
            "per_query_ap_inria": dict(self.per_query_ap_inria),
        }


def summarize(
    rankings: Mapping[str, Sequence[str]],
    relevant: Mapping[str, Collection[str]],
    junk: Mapping[str, Collection[str]] | None = None,
) -> RetrievalReport:
    """Score every query of ``relevant``: mAP (both rules), P@1, P@5, P@10 and the N-S score.

    Junk is removed before every metric. Arguments are as for
    :func:`mean_average_precision`.
    """
    queries = _query_set(rankings, relevant)
    junk = junk or {}
    per_query: dict[str, float] = {}
    per_query_inria: dict[str, float] = {}
    p1 = p5 = p10 = ns = 0.0
    for q in queries:
        ranked, rel, jq = rankings[q], relevant[q], junk.get(q, ())
        per_query[q] = average_precision(ranked, rel, junk=jq)
        per_query_inria[q] = average_precision_inria(ranked, rel, junk=jq)
        p1 += precision_at_k(ranked, rel, 1, junk=jq)
        p5 += precision_at_k(ranked, rel, 5, junk=jq)
        p10 += precision_at_k(ranked, rel, 10, junk=jq)
        ns += ukbench_score(ranked, rel, 4, junk=jq)
    n = len(queries)
    return RetrievalReport(
        n_queries=n,
        map=sum(per_query.values()) / n,
        map_inria=sum(per_query_inria.values()) / n,
        p_at_1=p1 / n,
        p_at_5=p5 / n,
        p_at_10=p10 / n,
        ns_score=ns / n,
        per_query_ap=per_query,
        per_query_ap_inria=per_query_inria,
    )
