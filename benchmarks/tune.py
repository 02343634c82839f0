"""Parameters chosen on the validation half only: each parameter that was once set by looking
at results is swept, one at a time from the current defaults, on data that no reported figure
uses. Writes results/tune.json; the defaults in `lookalike.settings` (and the blurred-query
thresholds in `lookalike.features.detail`) are then set from it by hand, and the test half
reports them (benchmarks/holidays.py, benchmarks/robustness.py).

    .venv/bin/python benchmarks/tune.py [--params global_weight,bonus] [--copies 40]

Objectives, both on the validation half (even Holidays groups) only:
- *holidays*: INRIA mAP of the default search over the 150 validation queries of Holidays-300,
  official protocol, each searched from its file around its indexed copy;
- *robustness*: recall@1 of the default search for transformed copies (the families that the
  parameter is for, five strengths each) of a seeded sample of `--copies` validation images,
  among Holidays-300 and the 10,800 Corel photographs.
A parameter's score is the mean of its objectives. The default is kept unless another value
scores more than `MARGIN` above it: noise is not a reason to move. A cost knob (when second looks
are taken and how many images each verifies) goes the other way: its cheapest value that loses
no more than `MARGIN` on either objective (Holidays, or the robustness mean) is chosen, and its
time is measured by the latency benchmarks, not here.

Each query is described once and searched again under every setting (its second looks are
kept with it), so a sweep costs searches, not descriptions.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from common import load_current, machine, save_result
from lookalike.collection import Collection
from lookalike.evaluate import holidays
from lookalike.evaluate.metrics import average_precision_inria
from lookalike.evaluate.robustness import apply, suite
from lookalike.evaluate.robustness_run import QUERY_SIDE, sample_queries
from lookalike.evaluate.run import cached_index_dir
from lookalike.features import detail
from lookalike.images import load_image
from lookalike.search.pipeline import QueryDescription
from lookalike.settings import Settings

MARGIN = 0.003
"""How much better than the default a value must score on validation to replace it."""


@dataclass(frozen=True)
class Param:
    """One parameter: its `grid` of values (the default among them), how to `apply` a value to
    the settings (or to module state, through a context manager), and the robustness
    `families` it is for (none: Holidays alone)."""

    name: str
    grid: tuple[Any, ...]
    apply: Callable[[Settings, Any], Settings]
    families: tuple[str, ...] = ()
    patch: Callable[[Any], Any] | None = None
    cheaper: bool = False
    """A cost, not an accuracy, knob (its grid from cheapest to dearest): the cheapest value
    that scores no more than `MARGIN` below the default is chosen."""


def _search(field: str) -> Callable[[Settings, Any], Settings]:
    def apply_(s: Settings, value: Any) -> Settings:
        return dataclasses.replace(s, search=dataclasses.replace(s.search, **{field: value}))

    return apply_


def _rerank(field: str) -> Callable[[Settings, Any], Settings]:
    def apply_(s: Settings, value: Any) -> Settings:
        changes = (
            dict(zip(field.split("+"), value, strict=True)) if "+" in field else {field: value}
        )
        return dataclasses.replace(s, rerank=dataclasses.replace(s.rerank, **changes))

    return apply_


def _same(s: Settings, _: Any) -> Settings:
    return s


@contextmanager
def _thresholds(value: tuple[float, float]) -> Iterator[None]:
    """`features.detail`'s SHARP and BLURRED set to `value` inside."""
    before = detail.SHARP, detail.BLURRED
    detail.SHARP, detail.BLURRED = value
    try:
        yield
    finally:
        detail.SHARP, detail.BLURRED = before


LOOK_FAMILIES = ("rotation", "crop", "blur")
"""The robustness families second looks are for (and the verification thresholds they use)."""

PARAMS = {
    p.name: p
    for p in (
        Param("global_weight", (0.25, 0.5, 0.75, 1.0), _search("global_weight")),
        Param("bonus", (0.5, 1.0, 2.0), _rerank("weight")),
        Param("match_dims", (32, 64, 0), _rerank("match_dims")),
        Param(
            "inliers",
            ((15, 40), (20, 50), (25, 60)),
            _rerank("min_inliers+saturation"),
            LOOK_FAMILIES,
        ),
        Param("second_looks", (True, False), _rerank("retry"), LOOK_FAMILIES),
        *(
            Param(name, grid, _rerank(name), LOOK_FAMILIES, cheaper=True)
            for name, grid in (
                ("retry_below", (20, 35, 50)),
                ("retry_verify", (20, 40, 100)),
                ("turn_margin", (0.05, 0.0, -0.05, -0.1, None)),  # None: every turn looked at
            )
        ),
        Param("blurred_weight", (0.0, 1.0, 2.0, 4.0), _search("blurred_weight"), ("blur",)),
        Param(
            "blurred_thresholds",
            ((0.08, 0.02), (0.06, 0.015), (0.1, 0.03)),
            _same,
            ("blur",),
            patch=_thresholds,
        ),
    )
}
DEFAULTS = {
    "global_weight": Settings().search.global_weight,
    "bonus": Settings().rerank.weight,
    "match_dims": Settings().rerank.match_dims,
    "inliers": (Settings().rerank.min_inliers, Settings().rerank.saturation),
    "second_looks": Settings().rerank.retry,
    "retry_below": Settings().rerank.retry_below,
    "retry_verify": Settings().rerank.retry_verify,
    "turn_margin": Settings().rerank.turn_margin,
    "blurred_weight": Settings().search.blurred_weight,
    "blurred_thresholds": (detail.SHARP, detail.BLURRED),
}


@dataclass
class Described:
    """Queries described once: `(description, ids to search around, relevant ids)`."""

    queries: list[tuple[QueryDescription, list[int], set[int]]]


def holidays_queries(limit: int | None, split: str = "validation") -> tuple[Collection, Described]:
    """The queries of one half of Holidays-300, described, over its cached index."""
    rset = holidays()
    collection = Collection.create(rset.root, index=cached_index_dir(rset))
    collection.index()
    chosen = rset.split(split)[:limit]
    described = []
    for q in chosen:
        path = rset.path(q)
        relevant = {collection.id_of(r) for r in rset.queries[q]}
        described.append((collection.describe(path), collection.copies(path), relevant))
    return collection, Described(described)


def robustness_queries(
    families: tuple[str, ...], copies: int, seed: int = 0, split: str = "validation"
) -> tuple[Collection, dict[str, Described]]:
    """Transformed copies of a seeded sample of the images of one half, per family,
    described, over the Holidays + Corel index of benchmarks/robustness.py."""
    from robustness import collection_and_view

    collection, view = collection_and_view()
    collection.index()
    chosen = sample_queries(view, copies, seed, split=split)
    out: dict[str, Described] = {f: Described([]) for f in families}
    for query in chosen:
        original = load_image(view.path(query), max_side=QUERY_SIDE)
        image_id = collection.id_of(query)
        for transform in suite(families):
            rng = np.random.default_rng([seed, zlib.crc32(f"{query}|{transform.name}".encode())])
            description = collection.describe(apply(original, transform, rng))
            out[transform.family].queries.append((description, [], {image_id}))
    return collection, out


def holidays_map(collection: Collection, described: Described) -> float:
    """INRIA mAP of the default search over the described queries (whole rankings)."""
    n = len(collection.images())
    aps = []
    for description, around, relevant in described.queries:
        hits = collection.search(description, k=n, exclude=around)
        aps.append(average_precision_inria([str(h.id) for h in hits], {str(r) for r in relevant}))
    return float(np.mean(aps))


def recall_at_1(collection: Collection, described: Described) -> float:
    found = [collection.search(d, k=1)[0].id in rel for d, _, rel in described.queries]
    return float(np.mean(found))


def sweep(
    param: Param,
    hol: tuple[Collection, Described],
    rob: tuple[Collection, dict[str, Described]] | None,
) -> dict[str, Any]:
    """Every value of `param`'s grid scored on validation; the chosen one."""
    rows = []
    default = DEFAULTS[param.name]
    for value in param.grid:
        t = time.perf_counter()
        scores: dict[str, float] = {}
        with param.patch(value) if param.patch else _nothing():
            for collection in (hol[0], *([rob[0]] if rob else [])):
                collection.settings = param.apply(BASE[collection.index_dir], value)
            scores["holidays"] = holidays_map(*hol)
            if rob and param.families:
                for family in param.families:
                    scores[f"robustness {family}"] = recall_at_1(rob[0], rob[1][family])
        halves = _halves(scores)
        score = float(np.mean(list(halves.values())))
        rows.append({"value": value, "scores": scores, "score": score})
        # (no timing here: each query's descriptions and verifications are kept between values;
        # what a cheaper value saves is measured by benchmarks/holidays.py and speed.py)
        print(f"{param.name}={value}: {score:.4f} {scores} ({time.perf_counter() - t:.0f} s)")
    base = next(r for r in rows if r["value"] == default)
    if param.cheaper:
        chosen = next(r for r in rows if _costs_nothing(r["scores"], base["scores"]))
    else:
        best = max(rows, key=lambda r: r["score"])
        chosen = best if best["score"] > base["score"] + MARGIN else base
    rule = (
        "cheapest losing at most the margin on each objective"
        if param.cheaper
        else "best by more than the margin"
    )
    return {"default": default, "chosen": chosen["value"], "rule": rule, "grid": rows}


def _halves(scores: dict[str, float]) -> dict[str, float]:
    """The two halves a score averages: Holidays mAP, and the mean robustness R@1 (if any)."""
    robust = [v for k, v in scores.items() if k.startswith("robustness")]
    return {
        "holidays": scores["holidays"],
        **({"robustness": float(np.mean(robust))} if robust else {}),
    }


def _costs_nothing(scores: dict[str, float], default: dict[str, float]) -> bool:
    """A cheaper value may replace the default only if neither half of its score falls more than
    `MARGIN`: the mean alone would let a knob that touches one objective lose twice the margin
    there (what `retry_below` 20 did to Holidays, -0.43 points, at a mean of -0.30)."""
    mine, theirs = _halves(scores), _halves(default)
    return all(mine[k] >= theirs[k] - MARGIN for k in theirs)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


BASE: dict[Any, Settings] = {}
"""Each collection's stored settings, by index folder: every value is applied to these."""


RULES = {
    "second looks": Param("second_looks", (True, False), _rerank("retry")),
    "colour for blurred queries": Param("blurred_weight", (None, 0.0), _search("blurred_weight")),
}
"""The rules that must earn their place on the test half: each on (as chosen) and off."""
ABLATION_FAMILIES = LOOK_FAMILIES


def ablation(copies: int) -> dict[str, Any]:
    """Each of `RULES` on and off over the *test* half, after the parameters were chosen:
    Holidays test queries and copies of test images (`ABLATION_FAMILIES`)."""
    hol = holidays_queries(None, split="test")
    rob = robustness_queries(ABLATION_FAMILIES, copies, split="test")
    stored = {c.index_dir: c.settings for c in (hol[0], rob[0])}
    out: dict[str, Any] = {}
    for name, rule in RULES.items():
        rows = {}
        for value in rule.grid:
            label = "on" if value in (True, None) else "off"
            for c in (hol[0], rob[0]):
                own = stored[c.index_dir]
                c.settings = own if value is None else rule.apply(own, value)
            scores = {"holidays": holidays_map(*hol)}
            for family in ABLATION_FAMILIES:
                scores[f"robustness {family}"] = recall_at_1(rob[0], rob[1][family])
            rows[label] = scores
            print(f"test, {name} {label}: {scores}", flush=True)
        out[name] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=",".join(PARAMS), help="comma-separated")
    parser.add_argument("--copies", type=int, default=40, help="validation images transformed")
    parser.add_argument("--holidays-queries", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="instead: each rule on and off over the test half (after choosing), added to "
        "results/tune.json",
    )
    args = parser.parse_args()
    if args.ablation:
        _add_ablation(args.copies)
        return
    chosen = [PARAMS[p] for p in args.params.split(",") if p]
    t = time.perf_counter()
    hol = holidays_queries(args.holidays_queries)
    families = tuple(sorted({f for p in chosen for f in p.families}))
    rob = robustness_queries(families, args.copies) if families else None
    for collection in (hol[0], *([rob[0]] if rob else [])):
        BASE[collection.index_dir] = collection.settings
    print(f"described in {time.perf_counter() - t:.0f} s", flush=True)
    results = {p.name: sweep(p, hol, rob) for p in chosen}
    save_result(
        "tune",
        {
            "machine": machine(),
            "command": f"python benchmarks/tune.py --params {args.params} --copies {args.copies}",
            "holidays_queries": len(hol[1].queries),
            "copies": args.copies,
            "margin": MARGIN,
            "params": results,
        },
    )
    for name, r in results.items():
        print(f"{name}: default {r['default']} -> chosen {r['chosen']}")


def _add_ablation(copies: int) -> None:
    """The ablation over the test half, added to the sweeps' results."""
    previous = load_current("tune")
    if previous is None:
        raise SystemExit(
            "results/tune.json comes from other code (or is missing): run benchmarks/tune.py "
            "first, then the ablation over what it chose"
        )
    result = ablation(copies)
    save_result("tune", {**previous, "ablation": result, "ablation_copies": copies})


if __name__ == "__main__":
    main()
