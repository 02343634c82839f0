"""Robustness at scale: transformed copies of Holidays photographs search the real images
(Holidays + Corel) among 100,000 and 1,000,000 synthetic distractors for their untouched
original, through the first stage alone; candidates from the global index only, against
candidates that also come from the fine-word postings (`index.asmk_postings`). Writes
results/scale_robustness.json.

    .venv/bin/python benchmarks/scale_robustness.py [--sizes 100000,1000000] [--queries 100]
        [--strengths 4,5] [--candidates 2000] [--word-candidates 1000] [--word-bits 8]

Copies. A seeded sample of `--queries` originals from every image of the test half of
Holidays (`robustness_run.sample_queries`, seed 0, as benchmarks/robustness.py draws them),
each transformed by every family of the suite (`evaluate.robustness`) at the strengths
`--strengths` (default 4 and 5, the two harshest: rotation 135° and 180°, crops keeping 30%
and 20% of the area, blur of sigma 5 and 8 px per 512, JPEG quality 15 and 8, ...; where a
copy's global descriptor moves most, so where candidates that do not go through it could
matter; the scale family's 4 is 2x, milder than its 3, and its 5 is 0.25x), made with the seeds
`run_robustness` uses (the same copies as benchmarks/robustness.py's) and described as it
describes them (`Collection.describe`). Their CNN features are cached, one npz an original,
under the cache's `bench-scale-robustness/copies-<code key>-<model id>/`: a rerun does not
extract again, and a run with other strengths extracts only the copies it lacks.

Images. The real images are those of the Holidays + Corel index (11,611 images; the cached
index of benchmarks/robustness.py, built first when it is missing, as benchmarks/scale_asmk.py
does), their stored ASMK codes and global descriptors; the distractors are scale_asmk's
(`common.distractors` for the global descriptors, `scale_asmk.distractor_codes` for the
codes; sizes are nested). At each size the shortlist kind's codes and fine-word postings are
written once (`write_shortlist(..., word_candidates, word_bits)`) with the compressed global
index (`scale_asmk.GLOBAL`). The copies themselves are not indexed: an original is found
when it ranks first.

Variants, over the same codes, postings and global index:

- `global`: the global index's `--candidates` best rows alone (a `ShortlistAsmk` without
  postings, today's first stage at scale);
- `global_wide`: the global index's `--candidates` + `--word-candidates` best rows (as many
  candidates as `words` at most: what more global candidates alone give);
- `words`: the `--candidates` global rows joined by the `--word-candidates` rows the copy's
  fine words point at most (`search.query.with_word_candidates`);
- `exhaustive`, without distractors only: the real index as `lookalike` builds it at that size
  (inverted file: ASMK scores every image).

Each copy is searched by `search.query.score` (mode 'fused', the default search settings; CNN
features only: distractors have no classic descriptors, so a blurred copy's colour does not
weigh in) and the first 10 rows ranked, one copy at a time on one thread; the variants take
turns, in an order that rotates from copy to copy, so that none always meets cold pages. Per
family (and per transform, and over all copies), per variant: R@1 and R@10 (the original's
rank), `candidate_recall` (the original among the rows ASMK scored), the median number of
candidates, and the latency of the first stage (median, 95th percentile; the query's ASMK
encoding included). `paired`: copies whose original ranks first with the word candidates and
not with the global ones alone (`gained`), and the reverse (`lost`). `breakdown_ms`: medians
over 100 copies of the global search and of the postings look-up alone. `build`: the time to
write the codes with the postings and to build the global index, bytes an image in RAM and
mapped, the postings' share. `rss`: this process's memory after the size.

Disk and memory: at 1M, the distractors' codes (about 8 GB) and the size's codes (8 GB) with
its postings (4 bytes a visual word an image, about 1.9 GB) and global index (0.5 GB);
memory as scale_asmk's (about 12 GB at its peak, the global index's training) and the
copies' features (about 0.5 MB a copy: 0.7 GB for 1,600). Generated data lives under the
cache's `bench-scale-robustness/`; the size's generation is removed after each size (and by
the next run, after a kill) and the distractors' codes at the end of a completed run. A run
that fails or is stopped keeps the distractors' codes (each chunk is written whole or not at
all) and its partial results (`save_result(..., partial=True)`): run again with the same
options, it carries on with the first size not done. Remove the folder to reclaim the disk.

`no_distractors` is the same over the 11,611 real images alone. The machine may be shared
with other work while this runs: `machine.load_average` records the load at the start and the
end; latencies are then upper bounds.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import signal
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
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
    load_current,
    machine_while,
    median,
    percentile,
    real_set,
    save_result,
    scale_set,
)
from lookalike.collection import Collection
from lookalike.evaluate.cache import cache_root, code_key
from lookalike.evaluate.datasets import RetrievalSet
from lookalike.evaluate.robustness import FAMILIES, LEVELS, Transform, apply
from lookalike.evaluate.robustness_run import QUERY_SIDE, sample_queries
from lookalike.features import ImageFeatures, LocalFeatures
from lookalike.images import load_image
from lookalike.index.asmk_index import AsmkIndex, Vocabulary
from lookalike.index.asmk_postings import CELL_OFFSETS, CELL_ROWS
from lookalike.index.asmk_shortlist import (
    SHORTLIST_DIR,
    CodeBlock,
    ShortlistAsmk,
    block_of,
    file_bytes,
    write_shortlist,
)
from lookalike.index.generation import Generation, LoadedGeneration
from lookalike.index.global_index import REFINE_FILE
from lookalike.search.query import global_candidates, score, top_rows
from lookalike.settings import IndexSettings
from robustness import collection_and_view
from scale_asmk import (
    CHUNK,
    GLOBAL,
    SEARCH,
    SEED,
    distractor_codes,
    global_index,
    parts_of,
    rss,
)

NAME = "scale_robustness"
K = 10  # rows ranked: R@1 and R@10
STRENGTHS = (4, 5)
COPY_SEED = 0  # `run_robustness`'s default: the copies of benchmarks/robustness.py
BREAKDOWN = 100  # copies whose global search and postings look-up are timed alone
EXHAUSTIVE = "exhaustive"
WORK = cache_root() / "bench-scale-robustness"


# --- the copies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Copies:
    """The transformed copies searched: for copy i, the real row of its original
    `originals[i]`, its transform `transforms[i]` and its raw CNN `features[i]`."""

    originals: list[int]
    transforms: list[Transform]
    features: list[ImageFeatures]


def chosen_transforms(strengths: Sequence[int]) -> list[Transform]:
    """Every family of the suite at each of `strengths` (1 to 5), family by family."""
    return [Transform(family, level) for family in FAMILIES for level in sorted(set(strengths))]


def save_copies(path: Path, features: Mapping[str, ImageFeatures]) -> None:
    """The features of an original's copies (transform name -> features) as one npz,
    written whole or not at all."""
    arrays: dict[str, Any] = {}  # Any: numpy's stubs refuse a dict of arrays as savez's **kwds
    for name, f in features.items():
        local = f.local
        arrays |= {
            f"{name}.global": np.asarray(f.global_),
            f"{name}.desc": np.asarray(local.desc),
            f"{name}.xy": np.asarray(local.xy),
            f"{name}.scale": np.asarray(local.scale),
            f"{name}.strength": np.asarray(local.strength),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_copies(path: Path) -> dict[str, ImageFeatures]:
    """What `save_copies` wrote (empty when `path` is missing)."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        names = sorted({key.rpartition(".")[0] for key in data.files})
        return {
            name: ImageFeatures(
                LocalFeatures(
                    xy=data[f"{name}.xy"],
                    scale=data[f"{name}.scale"],
                    strength=data[f"{name}.strength"],
                    desc=data[f"{name}.desc"],
                ),
                data[f"{name}.global"],
            )
            for name in names
        }


def copies_folder(model_id: str) -> Path:
    """Where the copies' features go: they depend on the code (network, precision) and on the
    index's model (its weights)."""
    return WORK / f"copies-{code_key()}-{model_id}"


def copy_features(
    collection: Collection,
    view: RetrievalSet,
    original: str,
    transforms: Sequence[Transform],
    folder: Path,
) -> dict[str, ImageFeatures]:
    """The CNN features of `original`'s copies by `transforms` (name -> features), made and
    described as `run_robustness` does; those cached in `folder` are not extracted again."""
    digest = hashlib.blake2b(original.encode(), digest_size=8).hexdigest()
    path = folder / f"{digest}.npz"
    have = load_copies(path)
    missing = [t for t in transforms if t.name not in have]
    if missing:
        image = load_image(view.path(original), max_side=QUERY_SIDE)
        for transform in missing:
            key = zlib.crc32(f"{original}|{transform.name}".encode())
            copy = apply(image, transform, np.random.default_rng([COPY_SEED, key]))
            described = collection.describe(copy, classic=(), cnn=True, sift=False)
            assert described.features is not None
            have[transform.name] = described.features
        save_copies(path, have)
    return {t.name: have[t.name] for t in transforms}


def make_copies(real: RealSet, n: int, transforms: Sequence[Transform]) -> tuple[Copies, float]:
    """The copies of a seeded sample of `n` originals of the test half of Holidays by every
    transform of `transforms`, and the seconds their features took to extract (0 when all
    were cached)."""
    collection, view = collection_and_view()
    folder = copies_folder(real.loaded.model.id)
    row_of = {path: row for row, path in enumerate(real.paths)}
    originals, chosen, features = [], [], []
    t = time.perf_counter()
    sample = sample_queries(view, n, split="test")
    for i, original in enumerate(sample):
        if original not in row_of:
            raise ValueError(f"{original} is not in the Holidays + Corel index (failed to index?)")
        found = copy_features(collection, view, original, transforms, folder)
        for transform in transforms:
            originals.append(row_of[original])
            chosen.append(transform)
            features.append(found[transform.name])
        print(f"  copies described: {i + 1} / {len(sample)} originals", end="\r", flush=True)
    print(flush=True)
    return Copies(originals, chosen, features), time.perf_counter() - t


# --- the distractors' codes, kept for a rerun ----------------------------------------------


def pool_chunks(
    folder: Path,
    real: CodeBlock,
    inverted: AsmkIndex,
    pool: Distractors,
    stamp: Mapping[str, Any],
) -> list[Path]:
    """Every distractor's code, `CHUNK` a folder (as scale_asmk's `write_pool` lays them out),
    each written whole (into a temporary folder, then renamed) and only when missing: a rerun
    with the same `stamp` (what the codes depend on) reuses them; another stamp starts over."""
    stamp_file = folder / "stamp.json"
    if folder.exists() and (
        not stamp_file.is_file() or json.loads(stamp_file.read_text()) != dict(stamp)
    ):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(dict(stamp), sort_keys=True))
    n = len(pool.first)
    chunks = []
    for start in range(0, n, CHUNK):
        chunk = folder / f"chunk-{start // CHUNK:05d}"
        if not chunk.is_dir():
            tmp = folder / f"{chunk.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            distractor_codes(real, inverted, pool, start, min(n, start + CHUNK)).save(tmp)
            tmp.rename(chunk)
        chunks.append(chunk)
        print(f"  distractor codes {min(n, start + CHUNK):,} / {n:,}", end="\r", flush=True)
    print(flush=True)
    return chunks


# --- the first stage over the copies --------------------------------------------------------


@dataclass(frozen=True)
class Searched:
    """One copy searched one way: the original's `rank` (K + 1 beyond the first K), whether
    it was among the `candidates` ASMK scored (None: every row was) and how many there were,
    and the `seconds` the first stage took."""

    rank: int
    found: bool | None
    candidates: int | None
    seconds: float


def search_copies(
    generations: Mapping[str, Generation], copies: Copies, rows: Sequence[int]
) -> dict[str, list[Searched]]:
    """Every copy searched in each of `generations` (variant -> generation over the same
    rows), its original at row `rows[i]`; the variants take turns in an order that rotates
    from copy to copy. One thread."""
    names = list(generations)
    out: dict[str, list[Searched]] = {name: [] for name in names}
    with faiss_one_thread():
        for i, (features, row) in enumerate(zip(copies.features, rows, strict=True)):
            turn = i % len(names)
            for name in names[turn:] + names[:turn]:
                t = time.perf_counter()
                scores = score(generations[name], features, SEARCH)
                top = top_rows(scores.final, K)
                seconds = time.perf_counter() - t
                hit = np.flatnonzero(top == row)
                found = None if scores.candidates is None else bool(np.isin(row, scores.candidates))
                out[name].append(
                    Searched(
                        rank=int(hit[0]) + 1 if len(hit) else K + 1,
                        found=found,
                        candidates=None if scores.candidates is None else len(scores.candidates),
                        seconds=seconds,
                    )
                )
            if (i + 1) % 50 == 0 or i + 1 == len(rows):
                print(f"  searched {i + 1} / {len(rows)} copies", end="\r", flush=True)
    print(flush=True)
    return out


def figures(searched: Sequence[Searched]) -> dict[str, Any]:
    """R@1, R@10, candidate recall, median candidates and latency of some searches."""
    ranks = np.array([s.rank for s in searched])
    seconds = [s.seconds for s in searched]
    out: dict[str, Any] = {
        "copies": len(searched),
        "r1": round(float(np.mean(ranks <= 1)), 4) if len(ranks) else float("nan"),
        "r10": round(float(np.mean(ranks <= K)), 4) if len(ranks) else float("nan"),
        "latency_ms": {
            "median": round(median(seconds) * 1e3, 2),
            "p95": round(percentile(seconds, 95) * 1e3, 2),
        },
    }
    found = [s.found for s in searched if s.found is not None]
    if found:
        out["candidate_recall"] = round(float(np.mean(found)), 4)
        out["candidates"] = int(
            np.median([s.candidates for s in searched if s.candidates is not None])
        )
    return out


def summarise(searched: Sequence[Searched], transforms: Sequence[Transform]) -> dict[str, Any]:
    """`figures` over all copies, per family and per transform (`transforms[i]` made copy
    i)."""
    if len(searched) != len(transforms):
        raise ValueError(f"{len(searched)} searches for {len(transforms)} copies")

    def where(keep: Any) -> list[Searched]:
        return [s for s, t in zip(searched, transforms, strict=True) if keep(t)]

    families = list(dict.fromkeys(t.family for t in transforms))
    names = list(dict.fromkeys(t.name for t in transforms))
    return {
        "all": figures(searched),
        "families": {f: figures(where(lambda t, f=f: t.family == f)) for f in families},
        "transforms": {n: figures(where(lambda t, n=n: t.name == n)) for n in names},
    }


def paired(
    before: Sequence[Searched], after: Sequence[Searched], transforms: Sequence[Transform]
) -> dict[str, dict[str, int]]:
    """Per family and over all copies: copies whose original ranks first `after` and not
    `before` (`gained`), and the reverse (`lost`)."""
    out: dict[str, dict[str, int]] = {}
    for b, a, t in zip(before, after, transforms, strict=True):
        for key in (t.family, "all"):
            counts = out.setdefault(key, {"gained": 0, "lost": 0})
            counts["gained"] += int(a.rank == 1 and b.rank != 1)
            counts["lost"] += int(b.rank == 1 and a.rank != 1)
    return out


def breakdown(loaded: Generation, asmk: ShortlistAsmk, copies: Copies) -> dict[str, float]:
    """Median milliseconds of the global search and of the postings look-up alone, over
    `BREAKDOWN` copies spread over the families (their ASMK codes encoded untimed)."""
    model, vocabulary = loaded.model, asmk.vocabulary
    step = max(1, len(copies.features) // BREAKDOWN)
    parts: dict[str, list[float]] = {"global": [], "words": []}
    with faiss_one_thread():
        for features in copies.features[::step][:BREAKDOWN]:
            desc = model.local_whitening.apply(np.asarray(features.local.desc, np.float32))
            code = vocabulary.encode(desc, SEARCH.query_assignments)
            query = model.global_whitening.apply(features.global_[None].astype(np.float32))[0]
            t0 = time.perf_counter()
            global_candidates(loaded.global_, query, asmk.candidates)
            t1 = time.perf_counter()
            asmk.word_rows(code)
            t2 = time.perf_counter()
            parts["global"].append(t1 - t0)
            parts["words"].append(t2 - t1)
    return {name: round(median(values) * 1e3, 2) for name, values in parts.items()}


# --- one size ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The run's choices (recorded in the results: a partial run is carried on only under
    the same ones)."""

    queries: int
    strengths: tuple[int, ...]
    candidates: int
    word_candidates: int
    word_bits: int


def variants(asmk: ShortlistAsmk, options: Options) -> dict[str, ShortlistAsmk]:
    """The shortlist indexes compared, over the codes and postings of `asmk`."""
    c, w = options.candidates, options.word_candidates
    return {
        "global": ShortlistAsmk(asmk.block, asmk.vocabulary, c),
        "global_wide": ShortlistAsmk(asmk.block, asmk.vocabulary, c + w),
        "words": ShortlistAsmk(asmk.block, asmk.vocabulary, c, asmk.postings, w),
    }


def run_size(
    col: ScaleSet,
    chunks: list[Path],
    real: RealSet,
    real_codes: CodeBlock,
    copies: Copies,
    options: Options,
    folder: Path,
) -> dict[str, Any]:
    """The shortlist generation of `col` written into `folder` (removed after), every copy
    searched each way (`variants`, and `EXHAUSTIVE` without distractors)."""
    n = len(col.labels)
    model = real.loaded.model
    vocabulary: Vocabulary = real.loaded.asmk.vocabulary
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        print(f"[{n}] codes with postings + compressed global index: building", flush=True)
        t = time.perf_counter()
        asmk = write_shortlist(
            folder,
            vocabulary,
            n,
            parts_of(col, real_codes, chunks),
            options.candidates,
            word_candidates=options.word_candidates,
            word_bits=options.word_bits,
        )
        build_s = time.perf_counter() - t
        global_, global_s = global_index(col, folder)
        sizes, codes = file_bytes(folder), folder / SHORTLIST_DIR
        build = {
            "build_s": round(build_s, 2),
            "global_build_s": round(global_s, 2),
            "ram_bytes_per_image": asmk.ram_bytes() / n,
            "mapped_bytes_per_image": sizes["asmk_codes"] / n,
            "postings_bytes_per_image": (codes / f"{CELL_ROWS}.npy").stat().st_size / n,
            "cell_offsets_bytes": (codes / f"{CELL_OFFSETS}.npy").stat().st_size,
            "global_ram_bytes_per_image": global_.ram_bytes() / n,
            "global_refine_bytes_per_image": (folder / REFINE_FILE).stat().st_size / n,
        }
        print(f"  {build}", flush=True)
        generations: dict[str, Generation] = {
            name: LoadedGeneration(0, np.arange(n), index, global_, model)
            for name, index in variants(asmk, options).items()
        }
        if n == len(real.vectors):
            generations[EXHAUSTIVE] = real.loaded  # the same rows: `scale_set` keeps them
        row_in_col = {int(r): i for i, r in enumerate(col.real_rows)}
        rows = [row_in_col[r] for r in copies.originals]
        print(f"[{n}] {len(rows)} copies, {len(generations)} ways", flush=True)
        searched = search_copies(generations, copies, rows)
        out: dict[str, Any] = {
            "images": n,
            "build": build,
            "variants": {
                name: summarise(found, copies.transforms) for name, found in searched.items()
            },
            "paired": paired(searched["global"], searched["words"], copies.transforms),
            "breakdown_ms": breakdown(generations["words"], asmk, copies),
            "rss": rss(),
        }
        for name, summary in out["variants"].items():
            print(f"  {name}: {summary['all']}", flush=True)
        del generations, asmk, global_
        gc.collect()
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the run ------------------------------------------------------------------------------


def parse_strengths(text: str) -> tuple[int, ...]:
    """'4,5' -> (4, 5); each strength 1 to `LEVELS`."""
    try:
        strengths = tuple(sorted({int(s) for s in text.split(",") if s.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"strengths are integers 1 to {LEVELS}: {text!r}"
        ) from None
    if not strengths or not all(1 <= s <= LEVELS for s in strengths):
        raise argparse.ArgumentTypeError(f"strengths are integers 1 to {LEVELS}: {text!r}")
    return strengths


def earlier(setup: Mapping[str, Any], sizes: Sequence[int]) -> dict[str, Any]:
    """What a stopped run of this code with the same `setup` measured: `no_distractors` and
    those of `sizes` it finished (nothing when there was no such run)."""
    found = load_current(NAME)
    if not found or not found.get("partial") or found.get("setup") != dict(setup):
        return {}
    done = {k: v for k, v in found.get("sizes", {}).items() if int(k) in sizes}
    base = {"no_distractors": found["no_distractors"]} if "no_distractors" in found else {}
    return {**base, "sizes": done}


def main() -> None:
    defaults = IndexSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="images, with distractors")
    parser.add_argument("--queries", type=int, default=100, help="originals (seeded sample)")
    parser.add_argument(
        "--strengths",
        type=parse_strengths,
        default=STRENGTHS,
        help=f"the suite's strengths to apply, 1 to {LEVELS} (default 4,5: the harshest two)",
    )
    parser.add_argument("--candidates", type=int, default=defaults.candidates)
    parser.add_argument("--word-candidates", type=int, default=defaults.word_candidates)
    parser.add_argument("--word-bits", type=int, default=defaults.word_bits)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    options = Options(
        args.queries, tuple(args.strengths), args.candidates, args.word_candidates, args.word_bits
    )
    if options.word_candidates < 1 or options.candidates < 1 or options.queries < 1:
        parser.error("--queries, --candidates and --word-candidates must be >= 1")
    try:
        IndexSettings(word_candidates=options.word_candidates, word_bits=options.word_bits)
    except ValueError as error:
        parser.error(str(error))
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    load_start = os.getloadavg()
    command = (
        f"python benchmarks/scale_robustness.py --sizes {','.join(map(str, sizes))} "
        f"--queries {options.queries} --strengths {','.join(map(str, options.strengths))} "
        f"--candidates {options.candidates} --word-candidates {options.word_candidates} "
        f"--word-bits {options.word_bits}"
    )

    print("real codes", flush=True)
    real = real_set()
    inverted: AsmkIndex = real.loaded.asmk
    real_codes = block_of(inverted)
    m = real_codes.n_images
    transforms = chosen_transforms(options.strengths)
    setup = {**options.__dict__, "strengths": list(options.strengths), "seed": SEED}
    results: dict[str, Any] = {
        "setup": setup,
        "transforms": {t.name: t.describe() for t in transforms},
        "sizes": {},
        **earlier(setup, sizes),
        "settings": {"search": SEARCH.__dict__, "global_index": GLOBAL.__dict__},
        "command": command,
    }
    print(f"copies: {options.queries} originals x {len(transforms)} transforms", flush=True)
    copies, extract_s = make_copies(real, options.queries, transforms)
    results["originals"] = len(set(copies.originals))
    results["copies"] = len(copies.transforms)
    results["extract_seconds_this_run"] = round(extract_s, 1)

    todo = [s for s in sizes if str(s) not in results["sizes"]]
    n_pool = max([0, *(s - m for s in todo)])
    pool = distractors(real.vectors, n_pool, SEED)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill` runs the clean-up too
    stamp = {
        "n": n_pool,
        "seed": SEED,
        "chunk": CHUNK,
        "code": code_key(),
        "model": real.loaded.model.id,
        "generation": int(real.loaded.generation),
    }
    pool_dir, size_dir = WORK / "distractors", WORK / "size"  # a killed run's: removed
    print(f"{n_pool:,} distractors", flush=True)
    chunks = pool_chunks(pool_dir, real_codes, inverted, pool, stamp)
    if "no_distractors" not in results:
        base = scale_set(real, pool.vectors, m, SEED)
        results["no_distractors"] = run_size(base, [], real, real_codes, copies, options, size_dir)
        save_result(NAME, {**results, "machine": machine_while(load_start)}, partial=True)
    for size in todo:
        col = scale_set(real, pool.vectors, size, SEED)
        results["sizes"][str(size)] = run_size(
            col, chunks, real, real_codes, copies, options, size_dir
        )
        del col
        gc.collect()
        save_result(NAME, {**results, "machine": machine_while(load_start)}, partial=True)
    results["machine"] = machine_while(load_start)
    path = save_result(NAME, results)
    shutil.rmtree(pool_dir, ignore_errors=True)  # kept only for a run that did not finish
    print(f"wrote {path}", flush=True)
    print_summary(results)


def print_summary(results: Mapping[str, Any]) -> None:
    """R@1 per family and size: global candidates alone, as many of them, with the words."""
    rows = [results["no_distractors"], *(x for _, x in sorted(results["sizes"].items(), key=_size))]
    print(f"{'family':12s} {'images':>9s}  R@1 global / wide / +words   cand. recall  ms")
    for family in [*FAMILIES, "all"]:
        for x in rows:
            v = x["variants"]
            if family != "all" and family not in v["global"]["families"]:
                continue
            g, wide, w = (
                v[n]["all"] if family == "all" else v[n]["families"][family]
                for n in ("global", "global_wide", "words")
            )
            print(
                f"{family:12s} {x['images']:>9,}  {g['r1']:.3f} / {wide['r1']:.3f} / {w['r1']:.3f}"
                f"   {g['candidate_recall']:.3f} / {w['candidate_recall']:.3f}"
                f"   {g['latency_ms']['median']:.0f} / {w['latency_ms']['median']:.0f}"
            )


def _size(item: tuple[str, Any]) -> int:
    return int(item[0])


if __name__ == "__main__":
    main()
