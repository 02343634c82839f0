"""Near-duplicate detection on planted copies of Corel photographs: `lookalike dedup` against
perceptual hashing (PHash, as in imagededup, through the `imagehash` package), precision and
recall over pairs, each kind of copy reported separately. Writes results/dedup.json.

    .venv/bin/python benchmarks/dedup.py [--planted 250] [--distractors 1750]

(A reduced run to check the script works: `--planted 20 --distractors 80`; its figures are not
for BENCHMARKS.md.)

A seeded sample of Corel photographs gets seven copies each: resized (0.7x), recompressed
(JPEG quality 30), cropped (80% of the area, off centre), colour-shifted (hue, saturation and
brightness), mirrored (left to right), rotated (a quarter turn either way, a photograph held
sideways) and tilted (15 to 30 degrees either way on the same canvas, corners filled with the
mean colour). The collection is those originals, their copies and other Corel photographs as
distractors. The true pairs are every two images of one planted family (8 images, 28 pairs); a
method's pairs are every two images it puts in one group (lookalike) or within its Hamming
distance (PHash, imagededup's default threshold 10 and others).

Definitions. Precision and recall are over unordered pairs of images. lookalike is scored
twice: on the pairs that verification links directly ("edges", what a pairwise tool such as
PHash reports) and on every pair inside a reported group ("groups", what `lookalike dedup`
prints, where one spurious link merges two families). Recall by kind of copy is over the
(original, copy) pairs of that kind: for "groups", the share of copies of that kind that land
in their original's group. Corel holds its own near duplicates (burst shots, cards of one deck,
objects shot against the same colour chart); they count as false positives here, so precision
is a lower bound.

lookalike's pairs come from one `verified_pairs` pass (`Collection.dedup`'s): candidates from
the global index (`DEDUP_NEIGHBOURS` nearest at least `DEDUP_GATE` similar), second and
mirrored looks for images with nothing verified at the default threshold; the thresholds of
the sweep then keep the pairs with that many inliers (above the default the sweep is exactly
what `dedup --threshold T` gives only where no look was needed). The verified pairs are kept
in results/details/dedup-pairs.json.gz.
"""

from __future__ import annotations

import argparse
import gzip
import io
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from common import RESULTS, machine, save_result
from lookalike.collection import Collection
from lookalike.evaluate import data_root
from lookalike.evaluate.cache import cache_root, fresh_cache_dir
from lookalike.images import find_images, load_image
from lookalike.search.dedup import build_groups
from lookalike.settings import DEDUP_GATE, DEDUP_NEIGHBOURS, DEDUP_SUPPORT, DEDUP_THRESHOLD

COPIES = ("resized", "jpeg", "cropped", "recoloured", "mirrored", "rotated", "tilted")
THRESHOLDS = tuple(sorted({40, 60, 80, 100, 120, 150, 200, DEDUP_THRESHOLD}))
PHASH_DISTANCES = (0, 4, 6, 8, 10, 12, 14)


def make_copy(image: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One edited copy of an RGB picture."""
    w, h = image.size
    if kind == "resized":
        return image.resize((max(1, round(w * 0.7)), max(1, round(h * 0.7))), Image.LANCZOS)
    if kind == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=30)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if kind == "cropped":
        side = np.sqrt(0.8)
        cw, ch = round(w * side), round(h * side)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return image.crop((x, y, x + cw, y + ch))
    if kind == "recoloured":
        hsv = np.asarray(image.convert("HSV")).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(20, 40))) % 256
        shifted = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
        shifted = ImageEnhance.Color(shifted).enhance(float(rng.uniform(1.3, 1.6)))
        return ImageEnhance.Brightness(shifted).enhance(float(rng.uniform(0.75, 0.85)))
    if kind == "mirrored":
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if kind == "rotated":  # a photograph held sideways: a quarter turn either way
        turn = Image.Transpose.ROTATE_90 if rng.random() < 0.5 else Image.Transpose.ROTATE_270
        return image.transpose(turn)
    if kind == "tilted":  # 15 to 30 degrees either way on the same canvas, as the demo's
        angle = float(rng.uniform(15.0, 30.0)) * (1.0 if rng.random() < 0.5 else -1.0)
        fill = tuple(int(c) for c in np.asarray(image).reshape(-1, 3).mean(axis=0))
        return image.rotate(angle, resample=Image.BILINEAR, fillcolor=fill)
    raise ValueError(f"unknown copy {kind!r}; allowed: {', '.join(COPIES)}")


def build_set(folder: Path, planted: int, distractors: int, seed: int) -> dict[str, list[str]]:
    """Write the collection into `folder` (once); returns family name -> member paths."""
    corel = data_root() / "corel"
    everything = sorted(p.relative_to(corel).as_posix() for p in find_images(corel))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(everything), planted + distractors, replace=False)
    families: dict[str, list[str]] = {}
    for number, index in enumerate(chosen):
        rel = everything[int(index)]
        stem = f"{number:05d}"
        image = Image.fromarray(load_image(corel / rel))
        target = folder / "originals" / f"{stem}.png"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target)
        if number >= planted:
            continue
        members = [target.relative_to(folder).as_posix()]
        for kind in COPIES:
            copy = folder / "copies" / f"{stem}-{kind}.png"
            if not copy.exists():
                copy.parent.mkdir(parents=True, exist_ok=True)
                make_copy(image, kind, rng).save(copy)
            members.append(copy.relative_to(folder).as_posix())
        families[stem] = members
    return families


Pair = tuple[str, str]


def pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


def pairs_within(members: list[str] | tuple[str, ...]) -> set[Pair]:
    return {pair(a, b) for a, b in itertools.combinations(members, 2)}


def true_pairs(families: dict[str, list[str]]) -> set[Pair]:
    return set().union(*(pairs_within(m) for m in families.values()))


def score(predicted: set[Pair], truth: set[Pair]) -> dict[str, float]:
    hits = len(predicted & truth)
    return {
        "pairs": len(predicted),
        "precision": round(hits / len(predicted), 4) if predicted else 1.0,
        "recall": round(hits / len(truth), 4),
    }


def recall_by_copy(predicted: set[Pair], families: dict[str, list[str]]) -> dict:
    """Recall of the (original, copy) pairs among `predicted`, per kind of copy."""
    out = {}
    for i, kind in enumerate(COPIES, start=1):
        pairs = {pair(m[0], m[i]) for m in families.values()}
        out[kind] = round(len(pairs & predicted) / len(pairs), 4)
    return out


def save_pairs(
    near: dict[tuple[int, int], int], paths: dict[int, str], hashes: dict[int, str | None]
) -> None:
    """Every verified pair with its inliers (paths, not ids) and the content hashes, in
    results/details/dedup-pairs.json.gz: other ways of grouping them can be measured without
    verifying again."""
    details = RESULTS / "details"
    details.mkdir(parents=True, exist_ok=True)
    with gzip.open(details / "dedup-pairs.json.gz", "wt") as f:
        json.dump(
            {
                "pairs": [[paths[a], paths[b], n] for (a, b), n in sorted(near.items())],
                "hashes": {paths[i]: h for i, h in hashes.items()},
            },
            f,
        )


def phash_pairs(paths: list[str], distance: int, hashes: np.ndarray) -> set[Pair]:
    """Pairs of `paths` whose packed 64-bit hashes `(n, 8) uint8` differ in <= `distance` bits."""
    bits = np.unpackbits(hashes, axis=1).astype(np.int32)  # (n, 64)
    same = bits @ bits.T + (1 - bits) @ (1 - bits).T
    close = np.argwhere(np.triu(64 - same <= distance, k=1))
    return {pair(paths[a], paths[b]) for a, b in close}


def main() -> None:
    import imagehash

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planted", type=int, default=250)
    parser.add_argument("--distractors", type=int, default=1750)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # the copies and the index, made again when other code made them
    folder = fresh_cache_dir(
        cache_root() / "bench-dedup" / f"corel-{args.planted}-{args.distractors}-{args.seed}"
    )
    families = build_set(folder / "images", args.planted, args.distractors, args.seed)
    (folder / "families.json").write_text(json.dumps(families))  # for dedup_scale.py
    truth = true_pairs(families)
    results: dict[str, Any] = {
        "machine": machine(),
        "command": "python benchmarks/dedup.py",
        "images": args.planted * (1 + len(COPIES)) + args.distractors,
        "planted": args.planted,
        "true_pairs": len(truth),
    }

    collection = Collection.create(folder / "images", index=folder / "index")
    t = time.perf_counter()
    collection.index()
    results["lookalike_index_seconds"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    near = collection.verified_pairs(
        neighbours=DEDUP_NEIGHBOURS,
        gate=DEDUP_GATE,
        min_inliers=min(THRESHOLDS),
        sure=DEDUP_THRESHOLD,
    )
    results["lookalike_dedup_seconds"] = round(time.perf_counter() - t, 1)
    results["lookalike_settings"] = {
        "neighbours": DEDUP_NEIGHBOURS,
        "gate": DEDUP_GATE,
        "default_threshold": DEDUP_THRESHOLD,
    }
    info = collection.info()
    paths = {int(i): p["path"] for i, p in _records(collection).items()}
    hashes = {int(i): p["hash"] for i, p in _records(collection).items()}
    save_pairs(near, paths, hashes)
    lookalike = {}
    for threshold in THRESHOLDS:
        pairs = {k: v for k, v in near.items() if v >= threshold}
        edges = {pair(paths[a], paths[b]) for a, b in pairs}
        # what `lookalike dedup --threshold T` groups: a weak link joins two groups of copies
        # only with support; and, to compare, the groups every link would join
        groups = build_groups(paths, hashes, pairs, sure=DEDUP_SUPPORT * threshold)
        grouped = set().union(*(pairs_within(g.paths) for g in groups))
        chained = build_groups(paths, hashes, pairs)
        within = set().union(*(pairs_within(g.paths) for g in chained))
        lookalike[str(threshold)] = {
            "edges": score(edges, truth),
            "groups": {
                **score(grouped, truth),
                "count": len(groups),
                "largest": max((len(g.paths) for g in groups), default=0),
                "sure": DEDUP_SUPPORT * threshold,
            },
            "chained_groups": {
                **score(within, truth),
                "count": len(chained),
                "largest": max((len(g.paths) for g in chained), default=0),
            },
            "recall_by_copy": recall_by_copy(edges, families),
            "group_recall_by_copy": recall_by_copy(grouped, families),
            "chained_recall_by_copy": recall_by_copy(within, families),
        }
        print(f"lookalike threshold {threshold}: {lookalike[str(threshold)]}")
    results["lookalike"] = lookalike
    results["lookalike_images"] = info["images"]

    ordered = sorted(paths.values())
    t = time.perf_counter()
    hashes_phash = np.stack(
        [
            np.packbits(imagehash.phash(Image.open(folder / "images" / p)).hash.ravel())
            for p in ordered
        ]
    )
    results["phash_seconds"] = round(time.perf_counter() - t, 1)
    phash = {}
    for distance in PHASH_DISTANCES:
        predicted = phash_pairs(ordered, distance, hashes_phash)
        phash[str(distance)] = {
            **score(predicted, truth),
            "recall_by_copy": recall_by_copy(predicted, families),
        }
        print(f"phash distance {distance}: {phash[str(distance)]}")
    results["phash"] = phash
    path = save_result("dedup", results)
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=2))
    print(f"-> {path}")


def _records(collection: Collection) -> dict[int, dict[str, Any]]:
    from lookalike.catalog import Catalog

    with Catalog.open(collection.index_dir, readonly=True) as catalog:
        return {r.id: {"path": r.path, "hash": r.hash} for r in catalog.records("ok")}


if __name__ == "__main__":
    main()
