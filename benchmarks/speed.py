"""Speed side by side: how fast each method describes an image for its index, and how long a
query from a file takes, in one process on the same images. Writes results/speed.json.

    .venv/bin/python benchmarks/speed.py [--images 100] [--queries 50]

Indexing: a seeded sample of Holidays images is described once per method on one core (torch
and OpenCV single-threaded; `lookalike index` runs one such worker per core), decoding
included. The CNN pass gives lookalike's local features and the global descriptor at once;
GeM, the raw pooled descriptor, comes from the same pass. It runs in the default precision
(bfloat16 where the processor has it natively) and engine (OpenVINO when installed) and, for
the ratios, in float32 and in PyTorch.

Queries: latency as users feel it. A seeded sample of the 300 Holidays query photographs, none
of them in the index, is searched from the files with every method, to the top 20, with the
machine's default threads (`Collection.search(path, k=20)`, as `lookalike search FILE` does).
The index holds the 511 other Holidays images (`datasets.leave_out`, cached apart from the
811-image index): an indexed query would verify at once against its own copy, while a
photograph that is not in the collection takes up to four second looks (coarse and three
turns) when nothing verifies for sure, so the median and the p95 are both reported. RootSIFT
is switched on in that index first (`lookalike index --sift`: its features, codebook and
inverted file; not timed).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch

from common import holidays_outside, machine, median, outside_queries, percentile, save_result
from lookalike.collection import Collection
from lookalike.evaluate.methods import METHODS, parse_method
from lookalike.evaluate.peers import (
    HASH_SIDE,
    gem_matrix,
    gem_scores,
    hamming_scores,
    phash,
    phash_collection,
)
from lookalike.features import Extractor
from lookalike.features.classic import describe
from lookalike.images import load_image
from lookalike.index import sift_store
from lookalike.search.query import top_rows

K = 20
TIMED: tuple[str, ...] = tuple(m for m in METHODS if m != "lookalike+rootsift")
"""The methods whose queries are timed, by their names in `lookalike.evaluate.methods`: every
named method but 'lookalike+rootsift'."""


def interleaved(
    methods: dict[str, Callable[[Any], object]], inputs: list[Any]
) -> dict[str, list[float]]:
    """Seconds of each method on each input, every method in turn on one input before the
    next: the machine's drift falls on all methods alike."""
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for item in inputs:
        for name, fn in methods.items():
            t = time.perf_counter()
            fn(item)
            seconds[name].append(time.perf_counter() - t)
    return seconds


def indexing(collection: Collection, paths: list[Any]) -> dict[str, dict[str, float]]:
    """Seconds per image for each method's description, on one core."""
    threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    decode = collection.settings.features.decode_size
    extractor = collection.extractor()
    exact = Extractor(extractor.settings, weights=extractor.weights, precision="float32")
    eager = Extractor(extractor.settings, weights=extractor.weights, engine="torch")
    classic = collection.settings.classic

    steps: dict[str, Callable[[Any], object]] = {
        "lookalike (CNN pass: local + global)": lambda p: extractor.extract(load_image(p, decode)),
        "lookalike, network in float32": lambda p: exact.extract(load_image(p, decode)),
        "lookalike, network in PyTorch": lambda p: eager.extract(load_image(p, decode)),
        "colour": lambda p: describe(load_image(p, decode), ("colour",), classic),
        "texture": lambda p: describe(load_image(p, decode), ("texture",), classic),
        "shape": lambda p: describe(load_image(p, decode), ("shape",), classic),
        "rootsift": lambda p: sift_store.describe_file(p, collection.settings.sift),
        "phash": lambda p: phash(load_image(p, HASH_SIDE)),
    }
    for network in (extractor, exact, eager):
        network.extract(load_image(paths[0], decode))  # build the network
    seconds = interleaved(steps, paths)
    out = {}
    for name in steps:
        out[name] = {
            "median_ms": 1000 * median(seconds[name]),
            "images_per_second_one_core": len(seconds[name]) / sum(seconds[name]),
        }
        print(f"index {name}: {out[name]['images_per_second_one_core']:.1f} images/s", flush=True)
    torch.set_num_threads(threads[0])
    cv2.setNumThreads(threads[1])
    return out


def querying(collection: Collection, queries: list[Any]) -> dict[str, dict[str, Any]]:
    """Seconds per query from its file (`queries`: paths, none of them indexed) to the top
    `K`, for each timed method: median and p95 in milliseconds."""
    images = collection.images()
    hashes = phash_collection(
        collection.root, [p for _, p in images], collection.index_dir / "peers" / "phash.npz"
    )
    gem = gem_matrix(collection, [i for i, _ in images])
    decode = collection.settings.features.decode_size
    extractor = collection.extractor()

    peers: dict[str, Callable[[Any], object]] = {
        "phash": lambda p: top_rows(hamming_scores(hashes, phash(load_image(p, HASH_SIDE))), K),
        "gem": lambda p: top_rows(
            gem_scores(gem, extractor.extract(load_image(p, decode)).global_), K
        ),
    }
    methods: dict[str, Callable[[Any], object]] = {}
    for name in TIMED:
        method = parse_method(name)
        methods[name] = (
            peers[name]
            if method.peer
            else (lambda p, kw=method.search: collection.search(p, k=K, **kw))
        )
    for fn in methods.values():
        fn(queries[0])  # warm: the network, the index, the caches
    seconds = interleaved(methods, queries)
    out = {}
    for name in methods:
        out[name] = {
            "median_ms": 1000 * median(seconds[name]),
            "p95_ms": 1000 * percentile(seconds[name], 95),
            "queries": len(seconds[name]),
        }
        print(f"query {name}: {out[name]['median_ms']:.0f} ms", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="images described per method")
    parser.add_argument("--queries", type=int, default=50, help="queries searched per method")
    args = parser.parse_args()

    rset, collection = holidays_outside(sift=True)  # queries left out, RootSIFT on
    n_indexed = len(collection.images())
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(list(rset.images), size=args.images, replace=False).tolist())
    queries, asked = outside_queries(rset, n_indexed, args.queries)
    results = {
        "machine": machine(),
        "command": f"python benchmarks/speed.py --images {args.images} --queries {args.queries}",
        "collection_images": n_indexed,
        "query_photographs": asked,
        "bfloat16": collection.extractor().bfloat16,
        "index": indexing(collection, [rset.path(r) for r in sample]),
        "engine": collection.extractor().engine,
        "query": querying(collection, [rset.path(q) for q in queries]),
    }
    path = save_result("speed", results)
    print(json.dumps({k: results[k] for k in ("index", "query")}, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
