"""RootSIFT + ASMK: a classic baseline through lookalike's own codebook and inverted file.
Writes results/rootsift-<set>.json.

    .venv/bin/python benchmarks/rootsift.py holidays [--upright] [--workers 2] [--json]
    .venv/bin/python benchmarks/rootsift.py fvc2002_db1|corel|... [--codebook-size 4096]

Every image is described by up to 1000 RootSIFT features (OpenCV SIFT, longer side at most
1024 px); a k-means codebook is fitted on a seeded sample of them (lookalike's `LearnSettings`:
160,000 descriptors, 10 iterations); database images are encoded with one assignment and
queries with `SearchSettings().query_assignments`, and scored by `AsmkIndex.scores` with
lookalike's alpha and threshold, exactly as `lookalike.search.query.score` does in 'asmk' mode.
As in `lookalike eval`, each query's own image is junk in its ranking; images that fail to
load are not indexed and, as queries, score 0. `--whiten` adds lookalike's PCA-whitening of
local descriptors (fitted on the same sample) before the codebook.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lookalike.evaluate.datasets import RetrievalSet
from lookalike.evaluate.metrics import summarize
from lookalike.features.classic import SiftSettings, rootsift_file
from lookalike.features.local import LocalFeatures
from lookalike.images import ImageError
from lookalike.index.asmk_index import AsmkIndex, ImageCode, Vocabulary
from lookalike.learn.codebook import fit_codebook
from lookalike.learn.whitening import Whitening, fit_whitening
from lookalike.search.query import top_rows
from lookalike.settings import LearnSettings, SearchSettings

logger = logging.getLogger("lookalike")

Progress = Callable[[str, int, int], None]

ENCODE_BATCH = 256
"""Images quantised per FAISS search when encoding the database (bounds the float32 copy)."""


def extract_all(
    rset: RetrievalSet,
    settings: SiftSettings,
    *,
    workers: int = 2,
    progress: Progress | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """RootSIFT descriptors of every image of `rset`, in `workers` spawned processes (1: here).

    Returns `rel -> (N, 128) float16` descriptors, strongest first (float16 as lookalike stores
    its local descriptors, to halve the memory of large sets), and `rel -> reason` for the
    images that failed to load. Every process runs OpenCV single-threaded.
    """
    descs: dict[str, np.ndarray] = {}
    failures: dict[str, str] = {}
    total = len(rset.images)
    for done, (rel, result) in enumerate(_iter_extract(rset, settings, workers), start=1):
        if isinstance(result, str):
            failures[rel] = result
            logger.warning("%s: %s", rset.path(rel), result)
        else:
            descs[rel] = result
        if progress is not None:
            progress("extract", done, total)
    return descs, failures


def _iter_extract(
    rset: RetrievalSet, settings: SiftSettings, workers: int
) -> Iterator[tuple[str, np.ndarray | str]]:
    """(rel, float16 descriptors or failure reason) per image, in `rset.images` order."""
    paths = list(rset.images)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file is not None and not os.path.isfile(main_file):
        workers = 1  # e.g. a script read from stdin: spawned workers could not re-import it
    workers = max(1, min(workers, len(paths)))
    if workers == 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for rel in paths:
                yield rel, _describe(rset.path(rel), settings)
        finally:
            cv2.setNumThreads(threads)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=cv2.setNumThreads, initargs=(1,)
    ) as pool:
        # a bounded window of files in flight keeps memory flat
        todo = iter(paths)
        pending: deque[tuple[str, Future[LocalFeatures]]] = deque(
            (rel, pool.submit(rootsift_file, rset.path(rel), settings))
            for rel in islice(todo, workers * 4)
        )
        while pending:
            rel, future = pending.popleft()
            following = next(todo, None)
            if following is not None:
                pending.append(
                    (following, pool.submit(rootsift_file, rset.path(following), settings))
                )
            try:
                yield rel, np.asarray(future.result().desc, dtype=np.float16)
            except Exception as exc:  # a bad file, or a bug, must not stop a run over thousands
                yield rel, _reason(exc)


def _describe(path: Path, settings: SiftSettings) -> np.ndarray | str:
    try:
        return np.asarray(rootsift_file(path, settings).desc, dtype=np.float16)
    except Exception as exc:  # a bad file, or a bug, must not stop a run over thousands
        return _reason(exc)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"unexpected error: {exc!r}"


def sample_descriptors(descs: Sequence[np.ndarray], n: int, seed: int) -> np.ndarray:
    """Up to about `n` descriptors `(n', d)` float32, spread over the images as lookalike's
    `index.build.sample_descriptors` does (each kept with probability n / total)."""
    rng = np.random.default_rng(seed)
    total = sum(len(d) for d in descs)
    keep = min(1.0, n / max(total, 1))
    parts = [np.asarray(d[rng.random(len(d)) < keep], dtype=np.float32) for d in descs]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def encode_database(
    vocabulary: Vocabulary,
    descs: Sequence[np.ndarray],
    whitening: Whitening | None,
    progress: Progress | None = None,
) -> list[ImageCode]:
    """ASMK codes of the database images (one assignment), in batches of `ENCODE_BATCH`."""
    codes: list[ImageCode] = []
    for start in range(0, len(descs), ENCODE_BATCH):
        batch = [_prepare(d, whitening) for d in descs[start : start + ENCODE_BATCH]]
        codes.extend(vocabulary.encode_many(batch, 1))
        if progress is not None:
            progress("encode", len(codes), len(descs))
    return codes


def _prepare(desc: np.ndarray, whitening: Whitening | None) -> np.ndarray:
    x = np.asarray(desc, dtype=np.float32)
    return whitening.apply(x) if whitening is not None and len(x) else x


def evaluate_rootsift(
    rset: RetrievalSet,
    *,
    codebook_size: int = 4096,
    workers: int = 2,
    seed: int = 0,
    settings: SiftSettings = SiftSettings(),
    whiten: bool = False,
    max_queries: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score every query of `rset` (or a sample of `max_queries`, drawn with `seed` as
    `lookalike.evaluate.run.evaluate` draws it) with RootSIFT + ASMK; a JSON-ready dict of the
    figures.

    The codebook (`codebook_size` words, fewer when there are under 39 descriptors a word) is
    fitted on a sample of `LearnSettings().sample_features` descriptors drawn with `seed`.
    """
    learn = LearnSettings()
    search = SearchSettings(mode="asmk")
    t0 = time.perf_counter()
    descs, failures = extract_all(rset, settings, workers=workers, progress=progress)
    extract_seconds = time.perf_counter() - t0

    indexed = [rel for rel in rset.images if rel in descs]  # failed images are not indexed
    t0 = time.perf_counter()
    sample = sample_descriptors([descs[r] for r in indexed], learn.sample_features, seed)
    whitening = fit_whitening(sample, learn.local_dim) if whiten else None
    if whitening is not None:
        sample = whitening.apply(sample)
    centroids = fit_codebook(sample, codebook_size, iterations=learn.kmeans_iterations, seed=seed)
    fit_seconds = time.perf_counter() - t0
    vocabulary = Vocabulary(centroids)

    t0 = time.perf_counter()
    codes = encode_database(vocabulary, [descs[r] for r in indexed], whitening, progress)
    index = AsmkIndex.build(vocabulary, codes)
    index_seconds = time.perf_counter() - t0

    queries = sorted(rset.queries)
    if max_queries is not None and max_queries < len(queries):
        rng = np.random.default_rng(seed)
        queries = sorted(rng.choice(queries, size=max_queries, replace=False).tolist())
    rankings: dict[str, list[str]] = {}
    times: list[float] = []
    for i, q in enumerate(queries):
        if q not in descs:
            rankings[q] = []  # the query failed to load: it scores 0
            continue
        t = time.perf_counter()
        code = vocabulary.encode(_prepare(descs[q], whitening), search.query_assignments)
        scores = index.scores(code, alpha=search.alpha, threshold=search.similarity_threshold)
        rows = top_rows(scores, len(indexed))
        times.append(time.perf_counter() - t)
        rankings[q] = [indexed[r] for r in rows]
        if progress is not None:
            progress("query", i + 1, len(queries))
    report = summarize(
        rankings,
        {q: rset.queries[q] for q in queries},
        {q: rset.junk.get(q, frozenset()) for q in queries},
    )
    counts = [len(descs[r]) for r in indexed]
    return {
        "dataset": rset.name,
        "images": len(rset.images),
        "failed_images": len(failures),
        "queries": report.n_queries,
        "map": report.map,
        "map_inria": report.map_inria,
        "p_at_1": report.p_at_1,
        "p_at_5": report.p_at_5,
        "p_at_10": report.p_at_10,
        "ns_score": report.ns_score,
        "extract_seconds": round(extract_seconds, 2),
        "images_per_second": round(len(rset.images) / extract_seconds, 2)
        if extract_seconds > 0
        else None,
        "workers": workers,
        "fit_seconds": round(fit_seconds, 2),
        "encode_index_seconds": round(index_seconds, 2),
        "median_query_seconds": round(float(np.median(times)), 4) if times else 0.0,
        "codebook_size": len(centroids),
        "codebook_sample": len(sample),
        "whiten": whiten,
        "features_per_image": round(float(np.mean(counts)), 1) if counts else 0.0,
        "sift": {**settings.__dict__, "key": settings.key},
        "search": {
            "alpha": search.alpha,
            "similarity_threshold": search.similarity_threshold,
            "query_assignments": search.query_assignments,
        },
        "seed": seed,
    }


def load_set(name: str, upright: bool = False) -> RetrievalSet:
    """A benchmark set by name (`lookalike.evaluate.DATASETS`); `upright` turns Holidays'
    sideways images upright (a view written under the cache folder, as `lookalike eval`)."""
    from lookalike.evaluate.datasets import load_dataset
    from lookalike.evaluate.run import cache_root, upright_view

    rset = load_dataset(name)
    if upright:
        if not rset.rotations:
            raise ValueError(f"--upright applies to holidays only, not {name!r}")
        rset = upright_view(rset, cache_root() / "views" / f"{rset.name}-upright")
    return rset


def main() -> None:
    from common import machine, save_result
    from lookalike.evaluate.datasets import DATASETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--upright", action="store_true", help="Holidays turned upright first.")
    parser.add_argument("--codebook-size", type=int, default=LearnSettings().codebook_size)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-features", type=int, default=SiftSettings().max_features)
    parser.add_argument("--max-side", type=int, default=SiftSettings().max_side)
    parser.add_argument("--whiten", action="store_true", help="PCA-whiten as lookalike does.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON only.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rset = load_set(args.dataset, args.upright)
    settings = SiftSettings(max_features=args.max_features, max_side=args.max_side)

    def progress(stage: str, done: int, total: int) -> None:
        if not args.json and (done == total or done % 100 == 0):
            print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)

    result = evaluate_rootsift(
        rset,
        codebook_size=args.codebook_size,
        workers=args.workers,
        seed=args.seed,
        settings=settings,
        whiten=args.whiten,
        progress=progress,
    )
    result["upright"] = args.upright
    parts = ["rootsift", args.dataset]
    parts += ["upright"] if args.upright else []
    parts += ["whiten"] if args.whiten else []
    command = " ".join(["python benchmarks/rootsift.py", *sys.argv[1:]])
    path = save_result(
        "-".join(parts), {"machine": machine(), "command": command, "result": result}
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key in ("dataset", "images", "failed_images", "queries", "map", "p_at_1", "p_at_10"):
        print(f"{key:>22}: {result[key]}")
    for key in ("features_per_image", "codebook_size", "extract_seconds", "images_per_second"):
        print(f"{key:>22}: {result[key]}")
    print(f"{'median_query_seconds':>22}: {result['median_query_seconds']}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
