"""The robustness suite: transformed copies of each query image search a collection (the set
plus distractors) for their untouched original; recall@1 and recall@10 per method and
transform, with one plot per transform family.

Every method runs in the same loop on the same copies: lookalike's modes (a copy is described
once, then searched each way) and the peers of `peers.py`.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.collection import Collection
from lookalike.evaluate.datasets import RetrievalSet
from lookalike.evaluate.methods import METHODS as NAMED_METHODS
from lookalike.evaluate.methods import parse_method
from lookalike.evaluate.peers import (
    gem_matrix,
    gem_scores,
    hamming_scores,
    phash,
    phash_collection,
    rank_of,
)
from lookalike.evaluate.robustness import FAMILIES, Transform, apply, suite
from lookalike.images import load_image
from lookalike.index.layout import IndexLayout
from lookalike.settings import CNN_MODES

QUERY_SIDE = 1024
"""Query images are decoded at most this large before they are transformed."""

K = 10

METHODS: tuple[str, ...] = tuple(name for name in NAMED_METHODS if name not in ("fused", "similar"))
"""The methods a robustness run scores, by their names in `methods.py`: every named method but
'fused' (the first stage of 'lookalike' alone) and 'similar' (the same kind of thing, not the
copy the suite looks for)."""


@dataclass(frozen=True)
class RobustnessResult:
    """`ranks[method][transform name]`: the original's rank for each query (K + 1 when it is
    not in the top K); `seconds[method]`: median seconds a query (describing a copy is counted
    once, in 'describe')."""

    dataset: str
    images: int
    queries: tuple[str, ...]
    transforms: tuple[Transform, ...]
    ranks: dict[str, dict[str, list[int]]]
    seconds: dict[str, float]

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.ranks)

    def recall(self, method: str, transform: str, k: int) -> float:
        ranks = self.ranks[method][transform]
        return sum(r <= k for r in ranks) / len(ranks) if ranks else 0.0

    def family_recall(self, method: str, family: str, k: int) -> float:
        names = [t.name for t in self.transforms if t.family == family]
        return float(np.mean([self.recall(method, n, k) for n in names]))

    def average(self, method: str, k: int) -> float:
        return float(np.mean([self.recall(method, t.name, k) for t in self.transforms]))

    def as_dict(self) -> dict[str, Any]:
        families = sorted({t.family for t in self.transforms}, key=list(FAMILIES).index)
        return {
            "dataset": self.dataset,
            "images": self.images,
            "queries": len(self.queries),
            "transforms": {t.name: t.describe() for t in self.transforms},
            "methods": {
                m: {
                    "average": {"r1": self.average(m, 1), "r10": self.average(m, K)},
                    "families": {
                        f: {"r1": self.family_recall(m, f, 1), "r10": self.family_recall(m, f, K)}
                        for f in families
                    },
                    "transforms": {
                        t.name: {"r1": self.recall(m, t.name, 1), "r10": self.recall(m, t.name, K)}
                        for t in self.transforms
                    },
                    "median_query_seconds": round(self.seconds.get(m, 0.0), 4),
                }
                for m in self.methods
            },
            "describe_seconds": round(self.seconds.get("describe", 0.0), 4),
        }


def run_robustness(
    rset: RetrievalSet,
    collection: Collection,
    *,
    queries: int | Sequence[str] | None = 100,
    families: Sequence[str] = tuple(FAMILIES),
    methods: Sequence[str] | None = None,
    seed: int = 0,
    split: str | None = None,
    peer_cache: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> RobustnessResult:
    """Transform a seeded sample of `queries` of `rset`'s query images (None: all; a list:
    those; with `split`, of every image of that half: see `sample_queries`) with every
    transform of `families`, and find each original in `collection` (an indexed `Collection`
    over `rset.root`, distractors and all) with each of `methods` (default: all, 'rootsift'
    only when the collection stores RootSIFT features)."""
    if methods is None:
        methods = default_methods(collection)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; allowed: {', '.join(METHODS)}")
    chosen = sample_queries(rset, queries, seed, split)
    transforms = suite(tuple(families))
    images = collection.images()  # (id, path) in index order
    row_of = {path: row for row, (_, path) in enumerate(images)}
    id_of = {path: image_id for image_id, path in images}
    parsed = {m: parse_method(m) for m in methods}
    settings = [s for s in (method.settings() for method in parsed.values()) if s is not None]
    needed = tuple(sorted({n for s in settings for n in s.classic}))
    cnn = "gem" in methods or any(s.mode in CNN_MODES for s in settings)
    sift = any(s.sift for s in settings)

    hashes = gem = None
    if "phash" in methods:
        cache = peer_cache or IndexLayout(collection.index_dir).phash
        hashes = phash_collection(
            collection.root,
            [p for _, p in images],
            cache,
            None if progress is None else lambda d, t: progress("phash", d, t),
        )
    if "gem" in methods:
        gem = gem_matrix(collection, [i for i, _ in images])

    ranks: dict[str, dict[str, list[int]]] = {m: {t.name: [] for t in transforms} for m in methods}
    times: dict[str, list[float]] = {m: [] for m in [*methods, "describe"]}
    done, total = 0, len(chosen) * len(transforms)
    for query in chosen:
        if query not in row_of:
            raise ValueError(f"query {query} is not in the index (it failed to index?)")
        original = load_image(rset.path(query), max_side=QUERY_SIDE)
        for transform in transforms:
            rng = np.random.default_rng([seed, zlib.crc32(f"{query}|{transform.name}".encode())])
            copy = apply(original, transform, rng)
            t = time.perf_counter()
            description = collection.describe(copy, classic=needed, cnn=cnn, sift=sift)
            times["describe"].append(time.perf_counter() - t)
            for method in methods:
                t = time.perf_counter()
                if not parsed[method].peer:
                    hits = collection.search(description, k=K, **parsed[method].search)
                    found = [h.rank for h in hits if h.id == id_of[query]]
                    rank = found[0] if found else K + 1
                elif method == "phash":
                    assert hashes is not None
                    rank = _capped(hamming_scores(hashes, phash(copy)), row_of[query])
                else:
                    assert gem is not None and description.features is not None
                    rank = _capped(gem_scores(gem, description.features.global_), row_of[query])
                times[method].append(time.perf_counter() - t)
                ranks[method][transform.name].append(rank)
            done += 1
            if progress is not None:
                progress("robustness", done, total)
    return RobustnessResult(
        dataset=rset.name,
        images=len(images),
        queries=tuple(chosen),
        transforms=tuple(transforms),
        ranks=ranks,
        seconds={m: float(np.median(v)) for m, v in times.items() if v},
    )


def default_methods(collection: Collection) -> list[str]:
    """Every method, those needing RootSIFT only when `collection` stores its features."""
    sift = collection.settings.sift.enabled
    return [m for m in METHODS if sift or not getattr(parse_method(m).settings(), "sift", False)]


def sample_queries(
    rset: RetrievalSet,
    queries: int | Sequence[str] | None,
    seed: int = 0,
    split: str | None = None,
) -> list[str]:
    """The query images a run uses: all (None), a seeded sample of a count, or a given list;
    of the set's queries, or with `split`, of every image of that half of the set (its queries
    and their relevant images: `RetrievalSet.split_images`)."""
    everything = sorted(rset.queries) if split is None else rset.split_images(split)
    if queries is None:
        return everything
    if not isinstance(queries, int):
        known = set(everything)
        missing = [q for q in queries if q not in known]
        if missing:
            raise ValueError(f"{missing[0]} is not a query image of {rset.name}")
        return list(queries)
    if queries >= len(everything):
        return everything
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(everything, size=queries, replace=False).tolist())


def combine(chunks: Sequence[RobustnessResult], queries: Sequence[str]) -> RobustnessResult:
    """One result over `queries` from the chunks of any runs (same collection and transforms),
    each holding some queries' ranks for some methods; where two hold the same query and
    method, the first wins. A method left out for any of `queries` is left out of the result.
    Query times are the mean of the contributing chunks' medians; describing a copy, of the
    chunks that gave the first method's ranks."""
    if not chunks:
        raise ValueError("no chunks to combine")
    first = chunks[0]
    if any(c.transforms != first.transforms or c.images != first.images for c in chunks):
        raise ValueError("the runs differ in their transforms or collection size")
    found: dict[tuple[str, str], tuple[int, int]] = {}  # (method, query) -> (chunk, position)
    for n, chunk in enumerate(chunks):
        for method in chunk.methods:
            for i, query in enumerate(chunk.queries):
                found.setdefault((method, query), (n, i))
    named = list(dict.fromkeys(m for c in chunks for m in c.methods))
    order = {m: i for i, m in enumerate(METHODS)}
    named.sort(key=lambda m: order.get(m, len(order)))
    methods = [m for m in named if all((m, q) in found for q in queries)]
    ranks = {
        m: {
            t.name: [chunks[found[m, q][0]].ranks[m][t.name][found[m, q][1]] for q in queries]
            for t in first.transforms
        }
        for m in methods
    }
    seconds = {}
    for key in methods:
        used = sorted({found[key, q][0] for q in queries})
        seconds[key] = float(np.mean([chunks[n].seconds.get(key, np.nan) for n in used]))
        if key == methods[0]:  # describing a copy: in the runs of the first method
            seconds["describe"] = float(np.mean([chunks[n].seconds["describe"] for n in used]))
    return RobustnessResult(
        first.dataset, first.images, tuple(queries), first.transforms, ranks, seconds
    )


def _capped(scores: np.ndarray, row: int) -> int:
    return min(rank_of(scores, row), K + 1)


def plot_families(result: RobustnessResult, folder: Path) -> list[Path]:
    """One PNG per transform family: recall@1 and recall@10 against strength, a line per
    method. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    families = sorted({t.family for t in result.transforms}, key=list(FAMILIES).index)
    for family in families:
        levels = [t for t in result.transforms if t.family == family]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        for ax, k in zip(axes, (1, K), strict=True):
            for method in result.methods:
                ax.plot(
                    range(1, len(levels) + 1),
                    [result.recall(method, t.name, k) for t in levels],
                    marker="o",
                    label=method,
                    linewidth=2.5 if method == "lookalike" else 1.2,
                )
            ax.set_xticks(range(1, len(levels) + 1))
            ax.set_xticklabels(
                [t.describe().removeprefix(family).strip() for t in levels], rotation=20, fontsize=8
            )
            ax.set_title(f"recall@{k}")
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("share of queries finding their original")
        axes[1].legend(fontsize=8, loc="lower left")
        fig.suptitle(
            f"{family}: {len(result.queries)} {result.dataset} queries among {result.images} images"
        )
        fig.tight_layout()
        path = folder / f"robustness-{family}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
