"""ASMK at scale: the shortlist kind (every image's ASMK code in image order on disk, memory-
mapped, scored only on the global index's best candidates) in the whole first stage (compressed
global index, ASMK on the candidates, fusion, ranking) at 10k, 100k and 1M images, against the
inverted file with the exact global index (today's first stage below 100k). Writes
results/scale_asmk.json.

    .venv/bin/python benchmarks/scale_asmk.py [--sizes 10000,100000,1000000]
        [--candidates 500,1000,2000,5000] [--inverted-up-to 100000]

Codes. The real ones are those of the Holidays + Corel index (11,611 images, 4,096 words,
128-D residuals; the cached index of benchmarks/robustness.py, opened, never rebuilt), read
off its inverted file. 10k is a subset of them: every Holidays image and a seeded sample of
Corel. From 100k on, all the real images and distractors, made with the global benchmark's
recipe (`common.distractors`: distractor i is made from the real images a = x_i and b = x_j
with the weight w and the noise scale s that made its global descriptor), so that both
sides of a distractor come from the same two images:

- its visual words: each of a's with probability 1 / (1 + w), each of b's with probability
  w / (1 + w) (a's residual kept when both have the word): as many words as a real image, from
  the same distribution of words;
- its residuals: each word keeps its source's residual with probability 0.01 / s, else takes
  the residual of a random real image on the same word (so that each word's residuals keep
  their real, non-uniform statistics); then every bit flips with probability 1/32.

The keep probability is set so that a distractor is as close to its nearest real image as a
real image is to its nearest other one (median ASMK similarity), the way the global recipe
matches cosines: copying more of a source's residuals makes every distractor a near duplicate
of two real images, far closer than real images are to one another. The script measures and
stores the distributions (`distractors`): words an image, ASMK similarity to the nearest real
image and the mean over all real images (for real images, leaving themselves out), and, per
Holidays query, the best ASMK score of a non-relevant real image against that of as many
distractors. Sizes are nested: 1M holds 100k's distractors. Generated codes are written under
~/.cache/lookalike/bench-scale-asmk/ and removed at the end (about 17 GB at 1M while it runs:
the distractors' codes and the index built from them).

Queries: the 300 Holidays queries, with their stored features (not extracted again), searched
as `lookalike search` searches an indexed image (`search.query.score` with the default search
settings, the query's own row left out of the normalisation), one at a time on one thread.
Spatial verification is not part of this: distractors have codes, not local features.

Figures, per size:
- `shortlist`: `build_s` (the ASMK codes written from the real and distractor codes, as
  `lookalike index` writes them from its encoded shards), `global_build_s` (the compressed
  global index: training and adding, all cores); bytes an image: `ram_bytes_per_image` (what
  the ASMK side holds in RAM: the offsets), `mapped_bytes_per_image` (its words and residuals,
  memory-mapped), and the global index's `global_ram_bytes_per_image` and
  `global_refine_bytes_per_image`; `by_candidates`, for each candidate count: `latency_ms` of
  the whole first stage (median, 95th percentile), `map` (Holidays mAP of the first 1000
  hits, the query itself junk), `candidate_recall` (the fraction of relevant images among the
  candidates: what any ASMK score could find); `breakdown_ms` (medians of the parts, default
  count: query encoding, global search, ASMK on the candidates).
- `inverted` (up to `--inverted-up-to` images): the inverted file in RAM with the exact global
  index: build, RAM an image, latency, mAP; and `shortlist_max_difference`, the largest
  difference between the two kinds' ASMK scores on the same rows (0: the same numbers).
- `rss`: resident memory of this process after the size (anonymous, and file pages mapped).

`no_distractors` is the same over the 11,611 real images alone. The machine may be shared
with other work while this runs: `machine.load_average` records the load at the start and
the end; latencies are then upper bounds.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import resource
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from common import (
    Distractors,
    RealSet,
    ScaleSet,
    distractors,
    faiss_one_thread,
    machine_while,
    mean_ap,
    median,
    percentile,
    quantiles,
    real_set,
    save_result,
    scale_set,
)
from lookalike.evaluate.run import cache_root
from lookalike.features import ImageFeatures
from lookalike.index.asmk_index import AsmkIndex, ImageCode, Vocabulary, take_rows
from lookalike.index.asmk_shortlist import (
    SHORTLIST_DIR,
    CodeBlock,
    Part,
    ShortlistAsmk,
    block_of,
    file_bytes,
    inverted_of,
    write_shortlist,
)
from lookalike.index.generation import LoadedGeneration
from lookalike.index.global_index import (
    REFINE_FILE,
    GlobalIndex,
    build_global,
    load_global,
    save_global,
)
from lookalike.search.query import global_candidates, score, top_rows
from lookalike.settings import IndexSettings, SearchSettings

SEED = 0
TOP = 1000  # hits scored for mAP
CANDIDATES = (500, 1000, 2000, 5000)
CHUNK = 16_384  # distractor codes made (and stored) at once
KEEP = 0.01  # a distractor's word keeps its source's residual with probability KEEP / s
FLIP_BITS = 5  # ... then each bit flips with probability 2 ** -FLIP_BITS
SAMPLE = 400  # images whose nearest real image is measured
BREAKDOWN = 50  # queries whose first stage is timed part by part
GLOBAL = IndexSettings(kind="compressed")
SEARCH = SearchSettings()
WORK = cache_root() / "bench-scale-asmk"


@dataclass(frozen=True)
class Queries:
    """The Holidays queries: their stored raw `features` and ASMK `codes` (with the search
    settings' multiple assignment), in the order of `RealSet.queries`."""

    features: list[ImageFeatures]
    codes: list[ImageCode]


def holidays_queries(real: RealSet) -> Queries:
    model, vocabulary = real.loaded.model, real.loaded.asmk.vocabulary
    features = [real.collection.stored_features(int(real.loaded.ids[q])) for q in real.queries]
    codes = [
        vocabulary.encode(
            model.local_whitening.apply(np.asarray(f.local.desc, np.float32)),
            SEARCH.query_assignments,
        )
        for f in features
    ]
    return Queries(features, codes)


def random_bits(rng: np.random.Generator, shape: tuple[int, int], ands: int) -> np.ndarray:
    """`shape` uint32 whose bits are each set with probability 2 ** -ands."""
    bits = rng.integers(0, 2**32, shape, dtype=np.uint32)
    for _ in range(ands - 1):
        bits &= rng.integers(0, 2**32, shape, dtype=np.uint32)
    return bits


def distractor_codes(
    real: CodeBlock, inverted: AsmkIndex, pool: Distractors, start: int, stop: int
) -> CodeBlock:
    """The ASMK codes of distractors `start..stop-1` of `pool` (see the module's docstring),
    from the `real` codes and their `inverted` file; seeded by `start`."""
    rng = np.random.default_rng([SEED, start])
    n = stop - start
    weight = pool.weight[start:stop].astype(np.float64)
    sources, owners, sides = [], [], []
    for side, rows, keep in (
        (0, pool.first[start:stop], 1.0 / (1.0 + weight)),
        (1, pool.second[start:stop], weight / (1.0 + weight)),
    ):
        entries = real.entries(rows)
        owner = np.repeat(np.arange(n), real.counts(rows))
        kept = rng.random(len(entries)) < keep[owner]
        sources.append(entries[kept])
        owners.append(owner[kept])
        sides.append(np.full(int(kept.sum()), side, np.int8))
    source, owner = np.concatenate(sources), np.concatenate(owners)
    words = np.asarray(real.words[source], np.int64)
    order = np.lexsort((np.concatenate(sides), words, owner))  # a's first on a shared word
    source, owner, words = source[order], owner[order], words[order]
    first = np.ones(len(source), bool)
    first[1:] = (owner[1:] != owner[:-1]) | (words[1:] != words[:-1])
    source, owner, words = source[first], owner[first], words[first]
    own = rng.random(len(source)) < (KEEP / pool.noise[start:stop].astype(np.float64))[owner]
    other = inverted.bounds[words] + (rng.random(len(source)) * inverted.counts[words]).astype(
        np.int64
    )
    residuals = np.where(
        own[:, None], take_rows(real.residuals, source), take_rows(inverted.residuals, other)
    )
    residuals ^= random_bits(rng, residuals.shape, FLIP_BITS)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))])
    return CodeBlock(offsets.astype(np.int64), words.astype(real.words.dtype), residuals)


def write_pool(folder: Path, real: CodeBlock, inverted: AsmkIndex, pool: Distractors) -> list[Path]:
    """Every distractor's code, `CHUNK` a folder (as an index's encoded shards are)."""
    chunks = []
    n = len(pool.first)
    for start in range(0, n, CHUNK):
        chunk = folder / f"chunk-{start // CHUNK:05d}"
        distractor_codes(real, inverted, pool, start, min(n, start + CHUNK)).save(chunk)
        chunks.append(chunk)
        print(f"  distractor codes {min(n, start + CHUNK):,} / {n:,}", end="\r", flush=True)
    print(flush=True)
    return chunks


def parts_of(col: ScaleSet, real: CodeBlock, chunks: list[Path]) -> list[Part]:
    """Where each image of `col` takes its code from: its real rows from `real`, the
    distractors that follow from the chunk folders."""
    m = len(col.real_rows)
    parts: list[Part] = [(np.arange(m), col.real_rows, lambda: real)]
    for c, chunk in enumerate(chunks):
        start = m + c * CHUNK
        k = min(CHUNK, len(col.labels) - start)
        if k <= 0:
            break
        parts.append((start + np.arange(k), np.arange(k), functools.partial(CodeBlock.open, chunk)))
    return parts


def code_stats(
    real: RealSet, codes: CodeBlock, pool: CodeBlock, queries: Queries
) -> dict[str, Any]:
    """Words an image, ASMK similarity to the nearest real image and mean over the real images,
    for a sample of the real `codes` and of the distractors' (`pool`); and each query's best
    score of a non-relevant image: among the Holidays images, the Corel ones and as many
    distractors as real images (or all of `pool`)."""
    inverted: AsmkIndex = real.loaded.asmk
    alpha, threshold = SEARCH.alpha, SEARCH.similarity_threshold
    rng = np.random.default_rng(SEED)
    m = codes.n_images

    def nearest(block: CodeBlock, rows: np.ndarray, own: bool) -> tuple[list, list]:
        best, mean = [], []
        for row in rows:
            sims = inverted.scores(block.code(int(row)), alpha=alpha, threshold=threshold)
            if own:
                sims = np.delete(sims, row)
            best.append(float(sims.max()))
            mean.append(float(sims.mean()))
        return best, mean

    real_best, real_mean = nearest(codes, rng.choice(m, SAMPLE, replace=False), True)
    pool_best, pool_mean = nearest(pool, np.arange(min(SAMPLE, pool.n_images)), False)
    as_many = ShortlistAsmk(pool.head(min(m, pool.n_images)), inverted.vocabulary, 1)
    corel = np.array([not p.startswith("set/") for p in real.paths])
    best: dict[str, list[float]] = {"holidays": [], "corel": [], "distractors": []}
    for q, code in zip(real.queries, queries.codes, strict=True):
        sims = inverted.scores(code, alpha=alpha, threshold=threshold)
        sims[[int(q), *real.relevant[int(q)]]] = -np.inf
        best["holidays"].append(float(sims[~corel].max()))
        best["corel"].append(float(sims[corel].max()))
        others = as_many.scores(code, alpha=alpha, threshold=threshold)
        best["distractors"].append(float(others.max()))
    return {
        "recipe": (
            "words: each of a's with p 1/(1+w), of b's with p w/(1+w); residuals: the source's "
            f"with p {KEEP}/s, else a random real image's on the word; bits flipped with p "
            f"1/{2**FLIP_BITS}"
        ),
        "words_per_image": {
            "real": quantiles(codes.counts(), 0),
            "distractors": quantiles(pool.counts(), 0),
        },
        "nearest_real": {"real": quantiles(real_best, 4), "distractors": quantiles(pool_best, 4)},
        "mean_over_real": {"real": quantiles(real_mean, 5), "distractors": quantiles(pool_mean, 5)},
        "query_best_non_relevant": {
            **{name: quantiles(values, 4) for name, values in best.items()},
            "scored": {
                "holidays": int((~corel).sum()),
                "corel": int(corel.sum()),
                "distractors": as_many.n_images,
            },
        },
    }


def first_stage(
    loaded: LoadedGeneration, col: ScaleSet, queries: Queries, candidates: int | None
) -> dict[str, Any]:
    """Latency and Holidays mAP of the first stage over the queries; with a shortlist ASMK
    index of `candidates`, the fraction of relevant images among the candidates."""
    with faiss_one_thread():
        times, rankings, found, relevant = [], {}, 0, 0
        for q, features in zip(col.queries, queries.features, strict=True):
            self_rows = np.array([q])
            t = time.perf_counter()
            scores = score(loaded, features, SEARCH, self_rows)
            rows = top_rows(scores.final, TOP + 1)
            times.append(time.perf_counter() - t)
            rankings[int(q)] = rows.tolist()
            if candidates is not None:
                query = loaded.model.global_whitening.apply(features.global_[None])[0]
                rows, _ = global_candidates(loaded.global_, query.astype(np.float32), candidates)
                found += len(set(rows.tolist()) & set(col.relevant[int(q)]))
                relevant += len(col.relevant[int(q)])
    out: dict[str, Any] = {
        "latency_ms": {
            "median": round(median(times) * 1e3, 2),
            "p95": round(percentile(times, 95) * 1e3, 2),
        },
        "map": round(mean_ap(col, rankings), 4),
    }
    if candidates is not None:
        out["candidate_recall"] = round(found / max(relevant, 1), 4)
    return out


def breakdown(loaded: LoadedGeneration, queries: Queries) -> dict[str, float]:
    """Median milliseconds of the parts of the first stage over the first `BREAKDOWN`
    queries: encoding the query's ASMK code, the global search, ASMK on the candidates."""
    asmk = loaded.asmk
    assert isinstance(asmk, ShortlistAsmk)
    model, vocabulary = loaded.model, asmk.vocabulary
    with faiss_one_thread():
        parts: dict[str, list[float]] = {"encode": [], "global": [], "asmk": []}
        for features in queries.features[:BREAKDOWN]:
            t0 = time.perf_counter()
            desc = model.local_whitening.apply(np.asarray(features.local.desc, np.float32))
            code = vocabulary.encode(desc, SEARCH.query_assignments)
            t1 = time.perf_counter()
            query = model.global_whitening.apply(features.global_[None].astype(np.float32))[0]
            rows, _ = global_candidates(loaded.global_, query, asmk.candidates)
            t2 = time.perf_counter()
            asmk.scores(
                code, alpha=SEARCH.alpha, threshold=SEARCH.similarity_threshold, candidates=rows
            )
            t3 = time.perf_counter()
            for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                parts[name].append(seconds)
    return {name: round(median(values) * 1e3, 2) for name, values in parts.items()}


def largest_difference(shortlist: ShortlistAsmk, inverted: AsmkIndex, queries: Queries) -> float:
    """The largest difference between the shortlist kind's ASMK scores and the inverted file's
    over the same codes, on 2000 random rows for each of the first `BREAKDOWN` queries."""
    rng = np.random.default_rng(SEED)
    alpha, threshold = SEARCH.alpha, SEARCH.similarity_threshold
    largest = 0.0
    for code in queries.codes[:BREAKDOWN]:
        rows = rng.choice(inverted.n_images, min(2000, inverted.n_images), replace=False)
        got = shortlist.scores(code, alpha=alpha, threshold=threshold, candidates=rows)
        full = inverted.scores(code, alpha=alpha, threshold=threshold)
        largest = max(largest, float(np.abs(got - full[rows]).max()))
    return largest


def rss() -> dict[str, int]:
    """This process's resident memory now (anonymous, and file pages mapped) and its peak."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "anon_bytes": fields.get("RssAnon", 0),
        "file_bytes": fields.get("RssFile", 0),
        "peak_bytes": peak,
    }


def global_index(col: ScaleSet, folder: Path) -> tuple[Any, float]:
    """The compressed global index of `col`'s vectors built and saved into `folder`, loaded
    back as a search reads it (memory-mapped refine vectors), and the seconds building took."""
    t = time.perf_counter()
    built = build_global(col.vectors, GLOBAL)
    recorded = save_global(built, folder)
    seconds = time.perf_counter() - t
    del built
    gc.collect()
    return load_global(folder, recorded["global_index"]), seconds


def run_size(
    col: ScaleSet,
    parts: list[Part],
    real: RealSet,
    queries: Queries,
    counts: list[int],
    with_inverted: bool,
    folder: Path,
) -> dict[str, Any]:
    n = len(col.labels)
    model = real.loaded.model
    vocabulary: Vocabulary = real.loaded.asmk.vocabulary
    out: dict[str, Any] = {"images": n}
    print(f"[{n}] shortlist ASMK + compressed global index: building", flush=True)
    t = time.perf_counter()
    asmk = write_shortlist(folder, vocabulary, n, parts, counts[0])
    build_s = time.perf_counter() - t
    global_, global_s = global_index(col, folder)
    sizes = file_bytes(folder)
    result: dict[str, Any] = {
        "build_s": round(build_s, 2),
        "global_build_s": round(global_s, 2),
        "ram_bytes_per_image": asmk.ram_bytes() / n,
        "offsets_file_bytes_per_image": sizes["asmk_index"] / n,
        "mapped_bytes_per_image": sizes["asmk_codes"] / n,
        "global_ram_bytes_per_image": global_.ram_bytes() / n,
        "global_refine_bytes_per_image": (folder / REFINE_FILE).stat().st_size / n,
        "global_params": global_.params(),
        "by_candidates": {},
    }
    for count in counts:
        loaded = LoadedGeneration(
            0, np.arange(n), ShortlistAsmk(asmk.block, vocabulary, count), global_, model
        )
        print(f"[{n}] {count} candidates: queries", flush=True)
        result["by_candidates"][str(count)] = first_stage(loaded, col, queries, count)
        print(f"  {result['by_candidates'][str(count)]}", flush=True)
        if count == IndexSettings().candidates:
            result["breakdown_ms"] = breakdown(loaded, queries)
    out["shortlist"] = result
    out["rss"] = rss()
    del global_, loaded
    gc.collect()
    if with_inverted:
        print(f"[{n}] inverted file + exact global index", flush=True)
        t = time.perf_counter()
        inverted = inverted_of(asmk.block, vocabulary)  # the codes read into RAM and sorted
        inverted_s = time.perf_counter() - t
        exact = GlobalIndex.build(col.vectors)
        loaded = LoadedGeneration(0, np.arange(n), inverted, exact, model)
        out["inverted"] = {
            "build_s": round(inverted_s, 2),
            "ram_bytes_per_image": inverted.ram_bytes() / n,
            **first_stage(loaded, col, queries, None),
            "shortlist_max_difference": largest_difference(asmk, inverted, queries),
        }
        print(f"  {out['inverted']}", flush=True)
        del loaded, inverted, exact
    del asmk
    gc.collect()
    shutil.rmtree(folder / SHORTLIST_DIR, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--candidates", default=",".join(str(c) for c in CANDIDATES))
    parser.add_argument("--inverted-up-to", type=int, default=100_000)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    default = IndexSettings().candidates
    counts = [default, *sorted({int(c) for c in args.candidates.split(",")} - {default})]
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    load_start = os.getloadavg()

    print("real codes and queries", flush=True)
    real = real_set()
    inverted: AsmkIndex = real.loaded.asmk
    real_codes = block_of(inverted)
    queries = holidays_queries(real)
    m = real_codes.n_images
    n_pool = max(0, max(sizes) - m)
    pool = distractors(real.vectors, n_pool, SEED)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` removes the work too
    work = WORK / f"run-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"sizes": {}, "candidates_default": default}
    try:
        print(f"{n_pool:,} distractors", flush=True)
        chunks = write_pool(work / "distractors", real_codes, inverted, pool)
        if chunks:  # the first chunk's distractors (CHUNK > 11,611 real images)
            print("distractor statistics", flush=True)
            results["distractors"] = code_stats(
                real, real_codes, CodeBlock.open(chunks[0]), queries
            )
            print(results["distractors"], flush=True)
        base = scale_set(real, pool.vectors, m, SEED)
        results["no_distractors"] = run_size(
            base, parts_of(base, real_codes, []), real, queries, counts, True, work / "size"
        )
        for size in sizes:
            col = scale_set(real, pool.vectors, size, SEED)
            results["sizes"][str(size)] = run_size(
                col,
                parts_of(col, real_codes, chunks),
                real,
                queries,
                counts,
                size <= args.inverted_up_to,
                work / "size",
            )
            del col
            gc.collect()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["queries"] = len(real.queries)
    results["settings"] = {"search": SEARCH.__dict__, "global_index": GLOBAL.__dict__}
    results["machine"] = machine_while(load_start)
    path = save_result("scale_asmk", results)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
