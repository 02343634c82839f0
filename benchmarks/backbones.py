"""Backbones (issue 23, part 4): EfficientNet-Lite0, Lite1 and Lite2 side by side, in one run.

For each backbone, off the shelf (ImageNet weights, whitening and codebook learned from each
collection without labels), every query searched from its file:

- Holidays-300, official protocol (as stored, each query indexed and removed from its own
  ranking) and leave-out (the 300 query files against the 511 other images): the default
  search (`lookalike`) and the first stage (`asmk`, `global`), mAP by both AP rules, on all
  queries and on the test half; indexing images/s end to end; query time median and p95 of the
  default search with photographs that are not in the index (leave-out);
- Corel: `fused` and `similar`, on a seeded sample of the queries (`--corel-queries`);
- FVC2002 (the four sets, each on its own): the 'fingerprints-fast' preset with this backbone,
  the CNN alone and with NIST Bozorth3 re-ranking its best 25;
- fine-tuned: `lookalike train` on the Holidays images for `--minutes` (no labels, the
  transductive run of `train.py`), then Holidays as stored, first stage (`asmk`, `global`,
  `fused`).

Writes results/backbones.json after every measurement (an interrupted run resumes). Indexes
go to the cache folder (`$LOOKALIKE_CACHE`).

    .venv/bin/python benchmarks/backbones.py [--backbones efficientnet_lite0,...] [--minutes 30]
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from functools import partial
from typing import Any

from common import machine
from fingerprints import with_verify
from lookalike.backbones import BACKBONES
from lookalike.evaluate import corel, fingerprints, holidays
from lookalike.evaluate.cache import cache_root, fresh_cache_dir
from lookalike.evaluate.datasets import RetrievalSet, leave_out
from lookalike.evaluate.run import EvalResult, ModeResult, evaluate
from lookalike.settings import PRESETS, FeatureSettings, Settings
from train import Results, bundle_for, run_training, score, snapshot

HOLIDAYS_MODES = ("lookalike", "asmk", "global")
FVC2002 = tuple(f"fvc2002_db{i}" for i in range(1, 5))


def figures(mode: ModeResult, timed: bool = False) -> dict[str, Any]:
    """mAP by both rules and P@1 on all queries (and on the test half, when the set has
    halves), with the query time's median and p95 when `timed`."""
    every = mode.reports["all"]
    out: dict[str, Any] = {
        "map": round(every.map, 4),
        "map_inria": round(every.map_inria, 4),
        "p_at_1": round(every.p_at_1, 4),
        "p_at_10": round(every.p_at_10, 4),
    }
    if "test" in mode.reports:
        out["test_map_inria"] = round(mode.reports["test"].map_inria, 4)
    if timed:
        out["median_query_ms"] = round(1000 * mode.median_seconds, 1)
        out["p95_query_ms"] = round(1000 * mode.p95_seconds, 1)
    return out


def measured(result: EvalResult, timed: str | None = None) -> dict[str, Any]:
    """Each mode's figures (`timed`: the mode whose query times are reported) and indexing."""
    out: dict[str, Any] = {m: figures(r, m == timed) for m, r in result.modes.items()}
    if result.index_seconds > 1:  # an index built by this call, not found in the cache
        out["index_images_per_second"] = round(result.images / result.index_seconds, 2)
    return out


def run(backbone: str, args: argparse.Namespace, res: Results) -> None:
    features = FeatureSettings(backbone=backbone)
    settings = Settings(features=features)
    work = fresh_cache_dir(cache_root() / "bench-backbones")
    short = backbone.removeprefix("efficientnet_")

    def holidays_set(rset: RetrievalSet, tag: str) -> dict[str, Any]:
        return measured(
            evaluate(
                rset, modes=HOLIDAYS_MODES, index_dir=work / f"{short}-{tag}", settings=settings
            ),
            timed="lookalike",
        )

    res.measure(f"{short}/holidays", partial(holidays_set, holidays(), "holidays"))
    res.measure(
        f"{short}/holidays_leave_out", partial(holidays_set, leave_out(holidays()), "leave-out")
    )

    def corel_set() -> dict[str, Any]:
        result = evaluate(
            corel(),
            modes=("fused", "similar"),
            index_dir=work / f"{short}-corel",
            settings=settings,
            max_queries=args.corel_queries,
        )
        return measured(result)

    res.measure(f"{short}/corel", corel_set)

    def prints() -> dict[str, Any]:
        preset = PRESETS["fingerprints-fast"]
        fast = replace(preset, features=replace(preset.features, backbone=backbone))
        out = {}
        for name in FVC2002:
            rset = fingerprints(name)
            index = work / f"{short}-{name}"
            # the learned features alone (no minutiae matcher), then Bozorth3 on their best 25
            alone = with_verify(fast, 0)
            cnn = evaluate(rset, modes=("fused",), index_dir=index, settings=alone)
            verified = evaluate(rset, modes=("fused",), index_dir=index, settings=fast)
            out[name] = {
                "cnn": figures(cnn.modes["fused"]),
                "cnn+bozorth3": figures(verified.modes["fused"], timed=True),
            }
        return out

    res.measure(f"{short}/fvc2002", prints)

    root = holidays().root
    run_name = f"backbone-{short}"
    run_dir, summary = run_training(
        run_name, root, "imagenet", args.minutes, [args.minutes], features
    )
    res.data["runs"][run_name] = summary
    res.save()
    tag = f"{run_name}-{args.minutes:g}min"
    bundle = bundle_for(snapshot(run_dir, args.minutes), root, tag, features)
    res.measure(
        f"{short}/holidays_trained",
        partial(score, holidays(), bundle, tag, ("asmk", "global", "fused"), settings),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--minutes", type=float, default=30.0, help="fine-tuning budget")
    parser.add_argument("--corel-queries", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    names = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BACKBONES))
    if unknown:
        parser.error(f"unknown backbone(s) {unknown}; allowed: {', '.join(BACKBONES)}")
    command = (
        f"python benchmarks/backbones.py --backbones {','.join(names)} "
        f"--minutes {args.minutes:g} --corel-queries {args.corel_queries}"
    )
    res = Results("backbones", command)
    for backbone in names:
        run(backbone, args, res)
    res.data["machine"] = machine()
    res.save(partial=False)


if __name__ == "__main__":
    main()
