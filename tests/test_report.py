"""benchmarks/report.py writes the README's benchmark tables between its markers only."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from conftest import BENCHMARKS, load_benchmark

MACHINE = {
    "cpu": "test cpu",
    "cores": 2,
    "memory_gib": 24,
    "python": "3.12",
    "torch": "2.13.0",
    "date": "2026-12-07",
}
"""What a result's `machine` holds (`common.machine`)."""


def _report() -> ModuleType:
    return load_benchmark("report")


def test_the_block_between_the_markers_is_replaced_and_the_rest_kept() -> None:
    report = _report()
    start, end = report.README_START, report.README_END
    text = f"# Title\n\n{start}\nold table\n{end}\n\nprose after\n"
    out = report.with_block(text, ["| a | b |", "|---|---|"])
    assert out == f"# Title\n\n{start}\n| a | b |\n|---|---|\n{end}\n\nprose after\n"
    assert report.with_block(out, ["| a | b |", "|---|---|"]) == out  # idempotent


def test_a_readme_without_the_markers_is_an_error_not_a_silent_skip() -> None:
    report = _report()
    with pytest.raises(ValueError, match="needs the lines"):
        report.with_block("# Title\n\nno markers\n", ["x"])


def test_the_repository_readme_has_the_markers() -> None:
    report = _report()
    text = (BENCHMARKS.parent / "README.md").read_text()
    assert report.with_block(text, ["x"]).count(report.README_START) == 1


def test_the_side_by_side_holidays_columns_name_their_ap_rule() -> None:
    """INRIA's AP where the compare results have it (RootSIFT's row too), the plain mAP for
    older results, and the header says which."""
    report = _report()

    def sets(fused: dict[str, float]) -> dict:
        return {
            "holidays": {"first_stage": {"fused": fused}, "rootsift": dict(fused)},
            "holidays_upright": {"first_stage": {"fused": fused}},
        }

    new = {"map": 0.91, "map_inria": 0.93, "p_at_10": 0.5}
    lines = report.readme_section(None, {"sets": sets(new)}, None)
    header = next(line for line in lines if line.startswith("| method"))
    assert "Holidays INRIA mAP" in header
    first_stage = next(line for line in lines if line.startswith("| lookalike, first stage"))
    assert "| 0.930 | 0.930 |" in first_stage and "0.910" not in first_stage
    rootsift = next(line for line in lines if line.startswith("| RootSIFT"))
    assert "| 0.930 |" in rootsift

    old = {"map": 0.91, "p_at_10": 0.5}
    lines = report.readme_section(None, {"sets": sets(old)}, None)
    header = next(line for line in lines if line.startswith("| method"))
    assert "Holidays mAP" in header and "INRIA" not in header
    first_stage = next(line for line in lines if line.startswith("| lookalike, first stage"))
    assert "| 0.910 | 0.910 |" in first_stage


def test_the_fingerprint_tables_show_every_ranking_set_and_the_short_list_recall() -> None:
    report = _report()

    def figures(value: float) -> dict[str, float]:
        return {
            "map": value,
            "map_inria": value - 0.01,
            "p_at_1": 1.0,
            "median_query_ms": 900.0,
            "p95_query_ms": 1200.0,
        }

    labels = ("cnn", "cnn+bozorth3@25", "bozorth3 all")
    sets = {
        f"fvc2002_db{i}": {
            **{label: figures(0.5 + 0.1 * j + 0.01 * i) for j, label in enumerate(labels)},
            "short_list_recall": 0.9,
        }
        for i in (1, 2)
    }
    average = {label: figures(0.515 + 0.1 * j) for j, label in enumerate(labels)}
    result = {
        "machine": MACHINE,
        "command": "python benchmarks/fingerprints.py --verify 25",
        "verify": 25,
        "sets": sets,
        "average": {**average, "short_list_recall": 0.9},
    }
    lines = report.fingerprints_section(result)
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert "| cnn+bozorth3@25 | 0.6100 | 0.6200 | 0.6150 | 0.6050 | 1.000 | 900 |" in lines
    assert set(labels) <= {r.removeprefix("| ") for r in rows}
    assert rows["| recall of the CNN's best 25"].count("0.9000") == 3

    scale = {
        "machine": MACHINE,
        "command": "python benchmarks/fingerprints_scale.py --prints 10000 --verify 200",
        "prints": 10000,
        "real": 320,
        "synthetic": 9680,
        "queries": 320,
        "verify": 200,
        "map": 0.9,
        "map_inria": 0.89,
        "p_at_1": 0.95,
        "short_list_recall": 0.97,
        "search_seconds": {"median": 1.234, "p95": 1.9},
        "index_seconds": 2000.0,
        "index_failed": 0,
    }
    text = "\n".join(report.fingerprints_scale_section(scale))
    assert "## Fingerprints at 10,000 prints" in text
    assert "| 0.9000 | 0.8900 | 0.950 | 0.9700 | 1234 ms | 1900 ms |" in text
    assert "(5.0 prints/s, 0 failed)" in text


def test_the_backbone_table_has_a_row_per_backbone_and_dashes_for_what_is_missing() -> None:
    report = _report()
    timed = {"map_inria": 0.95, "test_map_inria": 0.94, "median_query_ms": 300.0}
    scores = {
        "lite0/holidays": {"lookalike": timed, "index_images_per_second": 10.7},
        "lite0/holidays_leave_out": {"lookalike": {**timed, "p95_query_ms": 800.0}},
        "lite0/corel": {"fused": {"p_at_10": 0.77, "map": 0.31}},
        "lite0/fvc2002": {
            "fvc2002_db1": {"cnn": {"map": 0.6}, "cnn+bozorth3": {"map": 0.8}},
            "fvc2002_db2": {"cnn": {"map": 0.8}, "cnn+bozorth3": {"map": 0.9}},
        },
        "lite0/holidays_trained": {"asmk": 0.94, "global": 0.86, "fused": 0.95},
        "lite2/holidays": {"lookalike": timed},
    }
    result = {"machine": MACHINE, "command": "python benchmarks/backbones.py", "scores": scores}
    rows = [line for line in report.backbones_section(result) if line.startswith("| lite")]
    assert rows[0] == (
        "| lite0 | 0.9500 (0.9400) | 0.9500 (0.9400) | 300 / 800 ms | 10.7 img/s | "
        "0.770 / 0.3100 | — | 0.7000 / 0.8500 | 0.9400 / 0.8600 |"
    )
    assert rows[1].startswith("| lite2 | 0.9500 (0.9400) | — | — | — |")
    assert len(rows) == 2


def test_the_scale_robustness_table_has_a_row_per_family_and_size_then_the_totals() -> None:
    """R@1 of the three variants, candidate recall and latency side by side, the families in
    the order the result holds them, every size under each, the exhaustive R@1 without
    distractors and what the word candidates gained and cost."""
    report = _report()

    def figures(r1: float, recall: float, ms: float) -> dict[str, Any]:
        return {
            "copies": 200,
            "r1": r1,
            "r10": 1.0,
            "candidate_recall": recall,
            "candidates": 2000,
            "latency_ms": {"median": ms, "p95": 2 * ms},
        }

    def variant(r1: float, recall: float, ms: float) -> dict[str, Any]:
        families = {"rotation": figures(r1 - 0.1, recall, ms), "crop": figures(r1, recall, ms)}
        return {"all": figures(r1, recall, ms), "families": families, "transforms": {}}

    def size(images: int, drop: float) -> dict[str, Any]:
        return {
            "images": images,
            "build": {
                "build_s": 61.4,
                "postings_bytes_per_image": 1850.0,
                "cell_offsets_bytes": 8_388_616,
            },
            "variants": {
                "global": variant(0.8 - drop, 0.85 - drop, 90.0),
                "global_wide": variant(0.81 - drop, 0.86 - drop, 110.0),
                "words": variant(0.9 - drop, 0.95 - drop, 120.0),
            },
            "paired": {"all": {"gained": 21, "lost": 2}},
            "breakdown_ms": {"global": 4.04, "words": 31.26},
        }

    baseline = size(11_611, 0.0)
    baseline["variants"]["exhaustive"] = variant(0.93, 1.0, 60.0)
    result = {
        "machine": {**MACHINE, "load_average": {"start": 0.2, "end": 0.3}},
        "command": "python benchmarks/scale_robustness.py --sizes 100000,1000000",
        "setup": {"candidates": 2000, "word_candidates": 1000, "word_bits": 8, "strengths": [4, 5]},
        "originals": 100,
        "copies": 400,
        "no_distractors": baseline,
        "sizes": {"1000000": size(1_000_000, 0.2), "100000": size(100_000, 0.1)},
    }
    lines = report.scale_robustness_section(result)
    assert lines[0] == "## Scale: transformed copies among 1,000,000 images"
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| family")]
    assert [row.split(" | ")[:2] for row in rows] == [
        [f"| {family}", images]
        for family in ("rotation", "crop", "**all**")
        for images in ("11,611", "100,000", "1,000,000")
    ]
    assert rows[2] == (
        "| rotation | 1,000,000 | 0.500 | 0.510 | 0.600 | 0.650 / 0.750 | 90 / 120 ms "
        "| 180 / 240 ms |"
    )
    assert rows[-1].startswith("| **all** | 1,000,000 | 0.600 | 0.610 | 0.700 |")
    text = "\n".join(lines)
    assert "R@1 of 0.930 (rotation 0.830, crop 0.930)" in text
    assert "- 1,000,000 images: 21 gained, 2 lost;" in text
    assert "(1.85 GB), and 8 MB of cell offsets" in text
    assert "takes 31.3 ms (median), the global search 4.0 ms." in text
    assert "shared while it ran" not in text  # an idle machine: no warning
    assert "scale_robustness" in report.RESULT_NAMES
    steps = [step.writes for step in load_benchmark("run_all").STEPS]
    assert steps.index(("scale_robustness",)) == steps.index(("scale_asmk",)) + 1


def test_verdict_scores_count_same_place_matches_true_only_when_reviewed() -> None:
    """A match between two Holidays scenes that show one place is false in the headline
    precision and true in the reviewed one; any other false match stays false in both."""
    verdict = load_benchmark("verdict")
    query = verdict.Query(
        "holidays",
        "set/images/126500.jpg",
        None,
        "test",
        ("set/images/126500.jpg", "set/images/126501.jpg"),
    )
    logged = {
        query.key: {
            "hits": [
                ["set/images/126501.jpg", 60, 0.8, 0.02],  # its own scene
                ["set/images/126400.jpg", 102, 0.7, 0.04],  # another scene of one harbour
                ["set/images/127601.jpg", 50, 0.5, 0.02],  # another place
                ["set/images/127602.jpg", 3, 0.1, 0.001],  # not a match at all
            ]
        }
    }
    m = verdict.scores([query], logged, verdict.VERDICT)
    assert (m["matches"], m["false_matches"]) == (3, 2)
    assert m["match_precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["match_precision_reviewed"] == pytest.approx(2 / 3, abs=1e-4)
    assert [p[1] for p in m["false_match_pairs"]] == [
        "set/images/126400.jpg",
        "set/images/127601.jpg",
    ]
    assert m["holidays_recall"] == 1.0


def test_the_verdict_section_shows_the_reviewed_precision_and_the_trade_off() -> None:
    report = _report()
    rule = {
        "match_inliers": 34,
        "match_global": 0.55,
        "sure_inliers": 44,
        "similar_inliers": 15,
        "similar_global": 0.56,
    }
    scores = {
        "match_precision": 0.9873,
        "match_precision_reviewed": 0.9949,
        "false_matches": 5,
        "matches": 395,
        "holidays_recall": 0.498,
        "holidays_pairs": 245,
        "copies_recall": 0.9625,
        "copies": 160,
        "corel_queries_with_a_match": 0,
        "corel_queries": 150,
        "similar_precision": 0.302,
        "copies_recall_by_family": {"blur": 0.9},
    }
    result = {
        "machine": MACHINE,
        "command": "benchmarks/verdict.py",
        "queries": {"holidays": 300, "corel": 300, "copy": 320},
        "images": 11611,
        "k": 100,
        "targets": {"match_precision": 0.99},
        "chosen": rule,
        "defaults": rule,
        "test": {"defaults": scores},
        "seconds_median": 0.9,
        "seconds_p95": 2.4,
        "same_place": {"1264~1265": "one harbour"},
        "trade_off": [
            {"target": 0.995, "rule": rule, "match_precision": 0.9862}
            | {"holidays_recall": 0.465, "copies_recall": 0.938}
        ],
    }
    text = "\n".join(report.verdict_section(result))
    assert "| defaults | 0.9873 (5 / 395) | 0.9949 | 0.498 of 245 |" in text
    assert "1264 and 1265: one harbour" in text
    assert "| 0.995 | 34 inliers and cosine 0.55, or 44 inliers | 0.9862 | 0.465 | 0.938 |" in text
    older = {k: v for k, v in result.items() if k not in ("same_place", "trade_off")}
    older["test"] = {
        "defaults": {k: v for k, v in scores.items() if k != "match_precision_reviewed"}
    }
    assert "| defaults | 0.9873 (5 / 395) | – |" in "\n".join(report.verdict_section(older))


def test_the_scale_search_table_has_a_row_per_size_in_order() -> None:
    report = _report()

    def size(disk: int, median: float) -> dict[str, Any]:
        return {
            "images": 1,
            "bytes_per_image": {"features": 14600, "indexes": 13600},
            "disk_bytes_per_image": disk,
            "open_s": 1.25,
            "rss_open_bytes": 120_000_000,
            "query_ms": {"median": median, "p95": 2 * median},
            "map": {"all": 0.9, "test": 0.91},
            "map_inria": {"all": 0.89, "test": 0.9},
            "first_hit_relevant": 0.95,
        }

    result = {
        "machine": MACHINE,
        "command": "python benchmarks/scale_search.py",
        "queries": "300 Holidays query photographs, not in the index",
        "real_images": 11311,
        "sizes": {"1000000": size(29000, 410.0), "11311": size(33000, 300.0)},
    }
    rows = [line for line in report.scale_search_section(result) if line.startswith("| 1")]
    assert rows == [
        "| 11,311 | 33.0 kB | 14.6 kB | 13.6 kB | 1.2 s | 120 MB | 300 ms | 600 ms | "
        "0.890 / 0.900 | 0.950 |",
        "| 1,000,000 | 29.0 kB | 14.6 kB | 13.6 kB | 1.2 s | 120 MB | 410 ms | 820 ms | "
        "0.890 / 0.900 | 0.950 |",
    ]
