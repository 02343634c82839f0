"""The full default search at scale (issue 24, part 1): Holidays query photographs that are not
in the index, searched from their files through the call `lookalike search` makes (the first
stage, spatial verification of the shortlist, second looks), among the real images and
100,000 and 1,000,000 images in all, the others synthetic distractors that carry verification
data. Writes results/scale_search.json.

    .venv/bin/python benchmarks/scale_search.py [--sizes 100000,1000000] [--queries 300]

Real images. Holidays' 511 images that are not queries and the 10,800 Corel photographs,
indexed with compact local features (`lookalike index --compact`: what makes a million images
fit on one disk), in the cache (`bench-scale-search/base`). With no distractors they give the
reference figures (size: the real images alone).

Distractors. Written straight into a copy of that index, as `lookalike index` would have left
them, one feature shard of `SHARD` images at a time, then one generation built over every
image (`build.build_generation`, as an index run builds it, of the kinds the default settings
choose for that size: the compressed global index and the shortlist ASMK from 100,000 images):

- the raw global descriptor of distractor i: `common.distractors`' recipe on the real images'
  raw descriptors, normalise(x_a + w x_b + s g / sqrt(d)), for random real images a and b;
- its ASMK codes: `scale_asmk.distractor_codes` from the same a, b, w and s (words from both,
  residuals mostly from other real images on the same words, bits flipped);
- its local features for verification: image a's compact codes, scales and strengths with image
  b's positions (its size recorded as b's), so that a query that shares a's appearance finds
  tentative matches whose geometry is that of another image, as between unrelated photographs;
- its classic descriptors: image a's.

Figures per size: bytes on disk per image, in all (everything under the index folder) and by
part (`Collection.info`), the time to build the
generation, to open it (the first search's load, and the growth of the process's resident
memory it caused),
and the default search's time per query (median and p95, one query at a time, the machine
otherwise idle) with the Holidays mAP of its rankings by both AP rules (all queries and the
test half) and the share of queries whose first hit is relevant. Sizes reuse their folder when
it was made by this code; `--keep` keeps them (the 1M folder holds some 30 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from common import Distractors, distractors, machine, median, percentile, save_result, tree_rss
from lookalike.catalog import Catalog
from lookalike.collection import Collection
from lookalike.evaluate import data_root, holidays
from lookalike.evaluate.cache import cache_root, fresh_cache_dir
from lookalike.evaluate.datasets import RetrievalSet, leave_out
from lookalike.evaluate.metrics import average_precision, average_precision_inria
from lookalike.evaluate.run import indexed_root, merged_view
from lookalike.features.batch import Extras
from lookalike.index import build
from lookalike.index.asmk_index import AsmkIndex
from lookalike.index.asmk_shortlist import CodeBlock, block_or_codes
from lookalike.index.atomic import atomic_dir, save_npy
from lookalike.index.generation import current_model
from lookalike.index.layout import IndexLayout, shard_name, shard_numbers
from lookalike.index.store import CODES, new_uid, open_shard
from lookalike.settings import Settings
from scale_asmk import distractor_codes

WORK = cache_root() / "bench-scale-search"
SHARD = 4096
"""Distractor images a feature shard (an index run writes smaller ones; fewer files here)."""
SEED = 11
TOP = 100
"""Hits a query asks for (the rankings scored)."""
SYNTHETIC = "distractors-synthetic"


@dataclass(frozen=True)
class Real:
    """What the distractors are made from, in the rows of the base index's generation: raw
    global descriptors `(r, D)`, each image's compact local arrays, classic rows by name, the
    ASMK codes (a block and the inverted file), and each image's (width, height)."""

    globals_: np.ndarray
    local: list[dict[str, np.ndarray]]
    classic: dict[str, np.ndarray]
    codes: CodeBlock
    inverted: AsmkIndex
    sizes: np.ndarray


def base() -> tuple[RetrievalSet, Collection]:
    """The Holidays leave-out set among Corel, and its index with compact features (built the
    first time)."""
    rset = merged_view(leave_out(holidays()), [data_root() / "corel"])
    defaults = Settings()
    settings = replace(defaults, store=replace(defaults.store, compact=True))
    index = fresh_cache_dir(WORK / "base")
    collection = Collection.create(indexed_root(rset), index=index, settings=settings)
    collection.index(workers=2)
    return rset, collection


def real_of(collection: Collection) -> Real:
    loaded = collection.snapshot().loaded
    records = collection.snapshot().records
    globals_, local, sizes = [], [], []
    features = IndexLayout(collection.index_dir).features
    for image in loaded.ids:
        record = records[int(image)]
        shard = open_shard(features, record.shard or 0)
        row = record.row or 0
        a, b = int(shard.offsets[row]), int(shard.offsets[row + 1])
        assert shard.codes is not None, "the base index must be compact"
        local.append(
            {
                name: np.array(getattr(shard, name)[a:b])
                for name in (CODES, "xy", "scale", "strength")
            }
        )
        globals_.append(np.asarray(shard.global_[row], np.float32))
        sizes.append((record.width or 0, record.height or 0))
    asmk = loaded.asmk
    assert isinstance(asmk, AsmkIndex), "the base index is small: an inverted file"
    return Real(
        globals_=np.stack(globals_),
        local=local,
        classic={name: np.asarray(m) for name, m in loaded.classic.items()},
        codes=block_or_codes(asmk),
        inverted=asmk,
        sizes=np.asarray(sizes, np.int64),
    )


def add_distractors(index_dir: Path, real: Real, count: int, settings: Settings) -> None:
    """`count` distractors written into the index `index_dir` (see the module's docstring), a
    feature shard, its codes and classic descriptors and its catalog rows at a time."""
    layout = IndexLayout(index_dir)
    model = current_model(index_dir)
    assert model is not None
    # a compact shard of the real images says which features and codec (see store.write_shard)
    stored = json.loads(
        (layout.feature_shard(shard_numbers(layout.features)[0]) / "meta.json").read_text()
    )
    first_shard = max(shard_numbers(layout.features)) + 1
    with Catalog.open(index_dir) as catalog:
        for c, start in enumerate(range(0, count, SHARD)):
            n = min(SHARD, count - start)
            shard = first_shard + c
            pool = distractors(real.globals_, n, SEED + start)
            a, b = pool.first, pool.second
            _write_features(layout.feature_shard(shard), real, pool, stored)
            block = distractor_codes(real.codes, real.inverted, pool, 0, n)
            with atomic_dir(layout.code_shard(model.id, shard)) as tmp:
                block.save(tmp)
            with atomic_dir(layout.classic(settings.classic.key) / shard_name(shard)) as tmp:
                for name, matrix in real.classic.items():
                    save_npy(tmp, name, np.asarray(matrix[a], np.float32))
            with catalog.transaction(durable=True):
                for row in range(n):
                    width, height = real.sizes[b[row]]
                    catalog.put_ok(
                        f"{SYNTHETIC}/{start + row:07d}.jpg", size=1, mtime_ns=0,
                        hash=f"synthetic-{start + row}", shard=shard, row=row,
                        width=int(width), height=int(height),
                    )  # fmt: skip
            print(f"  distractors {start + n:,} / {count:,}", end="\r", flush=True)
    print(flush=True)


def _write_features(folder: Path, real: Real, pool: Distractors, stored: dict[str, Any]) -> None:
    """A compact feature shard of the distractors of `pool`: image a's codes, scales and
    strengths with image b's positions; their raw global descriptors. `stored`: the meta of a
    real compact shard (its features' key, codec and features kept)."""
    a, b = pool.first, pool.second
    k = [
        min(len(real.local[i][CODES]), len(real.local[j]["xy"])) for i, j in zip(a, b, strict=True)
    ]
    with atomic_dir(folder) as tmp:
        save_npy(tmp, "offsets", np.concatenate([[0], np.cumsum(k)]).astype(np.int64))
        for name, source in ((CODES, a), ("xy", b), ("scale", a), ("strength", a)):
            parts = [real.local[s][name][:m] for s, m in zip(source, k, strict=True)]
            save_npy(tmp, name, np.concatenate(parts))
        save_npy(tmp, "global", pool.vectors.astype(np.float16))
        meta = {
            "features": stored["features"], "codec": stored["codec"], "keep": stored["keep"],
            "uid": new_uid(), "images": len(a),
        }  # fmt: skip
        (tmp / "meta.json").write_text(json.dumps(meta))


def publish(index_dir: Path, settings: Settings) -> float:
    """Build and publish a generation over every image of the index, as an index run does;
    returns the seconds it took."""
    model = current_model(index_dir)
    assert model is not None
    extras = Extras(settings.classic, settings.sift, settings.minutiae)
    t = time.perf_counter()
    with Catalog.open(index_dir) as catalog:
        records = catalog.records("ok")
        generation = catalog.generation + 1
        build.build_generation(
            index_dir, model, records, generation, extras, None, settings.index, settings.similar
        )
        with catalog.transaction(durable=True):
            catalog.set_meta("generation", str(generation))
        build.remove_stale(index_dir, catalog, model, generation, extras)
    return time.perf_counter() - t


def scaled(base_collection: Collection, size: int, real: Real) -> tuple[Path, float | None]:
    """The index of `size` images: the base index, or a copy of it with distractors (made
    the first time); with the seconds its generation took to build (None when reused)."""
    if size <= len(real.local):
        return base_collection.index_dir, None
    folder = fresh_cache_dir(WORK / f"size-{size}")
    index_dir = folder / "index"
    done = folder / "complete"
    if done.is_file():
        return index_dir, None
    shutil.rmtree(index_dir, ignore_errors=True)
    shutil.copytree(base_collection.index_dir, index_dir)
    settings = base_collection.settings
    add_distractors(index_dir, real, size - len(real.local), settings)
    seconds = publish(index_dir, settings)
    done.write_text(str(seconds))
    return index_dir, seconds


def measure(rset: RetrievalSet, index_dir: Path, queries: list[str]) -> dict[str, Any]:
    """Open the index and search every query from its file (see the module's docstring)."""
    collection = Collection.open(index_dir)
    rss_before = tree_rss(os.getpid())
    t = time.perf_counter()
    collection.snapshot()
    open_s = time.perf_counter() - t
    rss_open = tree_rss(os.getpid()) - rss_before
    info = collection.info()
    seconds, ap, ap_inria, first = {}, {}, {}, {}
    for q in queries:
        t = time.perf_counter()
        hits = collection.search(rset.path(q), k=TOP)
        seconds[q] = time.perf_counter() - t
        ranked = [h.path for h in hits]
        ap[q] = average_precision(ranked, rset.queries[q])
        ap_inria[q] = average_precision_inria(ranked, rset.queries[q])
        first[q] = bool(ranked) and ranked[0] in rset.queries[q]
    test = [q for q in queries if rset.splits.get(q) == "test"]

    def mean(values: dict[str, float], subset: list[str]) -> float:
        return round(float(np.mean([values[q] for q in subset])), 4) if subset else 0.0

    return {
        "images": info["images"],
        "bytes_per_image": {k: round(v) for k, v in info["bytes_per_image"].items()},
        "disk_bytes_per_image": round(_disk_bytes(index_dir) / max(1, info["images"])),
        "open_s": round(open_s, 2),
        "rss_open_bytes": rss_open,
        "query_ms": {
            "median": round(1000 * median(list(seconds.values())), 1),
            "p95": round(1000 * percentile(list(seconds.values()), 95), 1),
        },
        "map": {"all": mean(ap, queries), "test": mean(ap, test)},
        "map_inria": {"all": mean(ap_inria, queries), "test": mean(ap_inria, test)},
        "first_hit_relevant": mean({q: float(v) for q, v in first.items()}, queries),
    }


def _disk_bytes(folder: Path) -> int:
    """Every file under `folder`, in bytes (what `du -b` counts of the files)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the scaled index folders")
    args = parser.parse_args()
    rset, base_collection = base()
    real = real_of(base_collection)
    queries = sorted(rset.queries)
    if args.queries < len(queries):
        rng = np.random.default_rng(SEED)
        queries = sorted(rng.choice(queries, args.queries, replace=False).tolist())
    sizes = [len(real.local), *(int(s) for s in args.sizes.split(","))]
    results: dict[str, Any] = {
        "command": f"python benchmarks/scale_search.py --sizes {args.sizes} "
        f"--queries {args.queries}",
        "machine": machine(),
        "queries": f"{len(queries)} Holidays query photographs, not in the index",
        "real_images": len(real.local),
        "sizes": {},
    }
    for size in sizes:
        print(f"== {size:,} images", flush=True)
        index_dir, build_s = scaled(base_collection, size, real)
        figures = measure(rset, index_dir, queries)
        if build_s is not None:
            figures["build_s"] = round(build_s, 1)
        results["sizes"][str(size)] = figures
        print(json.dumps(figures), flush=True)
        save_result("scale_search", results, partial=size != sizes[-1])
        if index_dir != base_collection.index_dir and not args.keep:
            shutil.rmtree(index_dir.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
