"""Render BENCHMARKS.md from the JSON results that the benchmark scripts wrote.

.venv/bin/python benchmarks/report.py
"""

from __future__ import annotations

from typing import Any

from common import REPO, load_result


def _machine(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Python {m['python']}, "
        f"torch {m['torch']}; measured {m['date']}"
    )


def holidays_section(r: dict[str, Any]) -> list[str]:
    s, u = r["as_stored"], r["upright"]
    lat = s["query_latency_from_file"]
    lines = [
        "## INRIA Holidays (811 images, 300 queries, official protocol)",
        "",
        f"Command: `{r['command']}` · Machine: {_machine(r['machine'])}.",
        "",
        "Each query is searched against all 811 images and removed from its own ranking; AP is",
        "the non-interpolated mean of precision at each relevant image (the common definition;",
        "INRIA's own script interpolates and gives slightly lower figures). The whitening and",
        "the codebook are learned on the set itself, without labels.",
        "",
        "| search mode | mAP as stored | mAP upright | P@1 as stored | target (as stored) |",
        "|---|---:|---:|---:|---:|",
    ]
    targets = {"fused": "≥ 0.86 (default)", "asmk": "≥ 0.83", "global": "≥ 0.84"}
    for mode in ("fused", "asmk", "global"):
        lines.append(
            f"| {mode}{' (default)' if mode == 'fused' else ''} | {s['map'][mode]:.4f} | "
            f"{u['map'][mode]:.4f} | {s['p_at_1'][mode]:.3f} | {targets[mode]} |"
        )
    st = s["index_stage_seconds"]
    bpi = s["bytes_per_image"]
    lines += [
        "",
        "### Speed, size and memory (as stored)",
        "",
        "| figure | value | target |",
        "|---|---:|---:|",
        f"| indexing, end to end from files (decode, extract, learn, build) | "
        f"{s['index_images_per_second']:.1f} images/s ({s['index_seconds']:.0f} s) "
        "| ≥ 8 images/s |",
        f"| — of which extraction | {st.get('extract', 0):.0f} s | |",
        f"| — learning whitening + codebook | {st.get('learn', 0):.0f} s | |",
        f"| — encoding and building the indexes | {st.get('build', 0):.0f} s | |",
    ]
    for mode in ("fused", "asmk", "global"):
        lines.append(
            f"| query latency from a file, {mode} (median / p95 of {lat[mode]['queries']}) | "
            f"{lat[mode]['median_ms']:.0f} / {lat[mode]['p95_ms']:.0f} ms | "
            f"{'≤ 300 ms median' if mode == 'fused' else ''} |"
        )
    total = sum(v for k, v in bpi.items())
    lines += [
        f"| index size on disk per image | {total / 1e3:.0f} kB | |",
        f"| — raw local features (float16 descriptors, positions, scales) | "
        f"{bpi['features'] / 1e3:.0f} kB | |",
        f"| — ASMK codes + global vectors (cache) | {bpi['codes'] / 1e3:.1f} kB | |",
        f"| — searchable indexes (ASMK inverted file + FAISS) | {bpi['indexes'] / 1e3:.1f} kB | |",
        f"| peak memory while indexing (all processes) | "
        f"{s['index_peak_rss_bytes'] / 2**20:.0f} MiB | |",
        "",
        "Query latency is measured in one process with the model and the index loaded, from the",
        "query file to the ranked hits (decode, 3-scale extraction, scoring).",
        "",
    ]
    return lines


def corel_section(r: dict[str, Any]) -> list[str]:
    res = r["result"]
    modes = res["modes"]
    n_queries = next(iter(modes.values()))["n_queries"]
    lines = [
        "## Corel (80 categories, 10,800 photographs of 120 x 80 px)",
        "",
        f"Command: `{r['command']}` · Machine: {_machine(r['machine'])}.",
        "",
        "Category-level retrieval (`lookalike eval groups`): a hit is any image of the query's",
        f"category (135 per category). {n_queries} queries drawn with a fixed seed search all",
        f"{res['images']} images. lookalike looks for the same object or scene, not the same",
        "kind of thing, so this measures how far instance features carry to categories.",
        "",
        "| search mode | mAP | P@1 | P@5 | P@10 |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, m in modes.items():
        lines.append(
            f"| {mode} | {m['map']:.4f} | {m['p_at_1']:.3f} | {m['p_at_5']:.3f} | "
            f"{m['p_at_10']:.3f} |"
        )
    lines += [
        "",
        f"Indexing took {res['index_seconds']:.0f} s "
        f"({res['images'] / res['index_seconds']:.1f} images/s); peak memory of the run "
        f"{r['peak_rss_bytes'] / 2**20:.0f} MiB.",
        "",
    ]
    return lines


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Every figure here is written by a script in `benchmarks/` (`make bench` runs them all",
        "and regenerates this page). The machine is shared and noisy: latencies are medians.",
        "",
    ]
    holidays = load_result("holidays")
    if holidays:
        lines += holidays_section(holidays)
    corel = load_result("corel")
    if corel:
        lines += corel_section(corel)
    (REPO / "BENCHMARKS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {REPO / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
