"""Peers measured in lookalike's own harness, on the same images:

- PHash, the perceptual hash imagededup uses, through the `imagehash` package (imagededup
  itself needs torchvision, which does not import beside the pinned CPU torch);
- off-the-shelf GeM: the backbone's pooled descriptor as it comes, cosine-compared, without
  the whitening lookalike learns (what a typical pretrained-embedding tool gives).

Each ranks the whole collection for a query; `rank_of` scores with ties counted against the
image sought.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.collection import Collection
from lookalike.images import ImageError, load_image

HASH_SIDE = 256
"""Images are decoded at most this large before hashing (PHash looks at 32 x 32 anyway)."""


def phash(image: np.ndarray) -> np.ndarray:
    """64-bit PHash of `image: (H, W, 3) uint8` RGB, as `(64,)` bool."""
    import imagehash

    return np.asarray(imagehash.phash(Image.fromarray(image)).hash, bool).ravel()


def phash_collection(
    root: Path,
    paths: Sequence[str],
    cache: Path,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """`(len(paths), 64)` bool PHashes of `root / path`, cached in `cache` (an .npz keyed by
    the paths); a file that cannot be read gets an all-false hash (and matches nothing
    well)."""
    if cache.is_file():
        with np.load(cache) as stored:
            if json.loads(str(stored["paths"])) == list(paths):
                return np.asarray(stored["hashes"], bool)
    hashes = np.zeros((len(paths), 64), bool)
    for i, rel in enumerate(paths):
        with contextlib.suppress(ImageError, OSError):
            hashes[i] = phash(load_image(root / rel, max_side=HASH_SIDE))
        if progress is not None:
            progress(i + 1, len(paths))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, hashes=hashes, paths=np.array(json.dumps(list(paths))))
    tmp.replace(cache)
    return hashes


def hamming_scores(hashes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Negated Hamming distances `(n,)` of `hashes: (n, 64)` to `query: (64,)`: higher is
    closer, so they rank like similarities."""
    return -(hashes != query[None]).sum(axis=1).astype(np.float32)


def gem_matrix(collection: Collection, ids: Sequence[int]) -> np.ndarray:
    """`(len(ids), G)` unit rows: the raw pooled descriptors stored for these images of an
    indexed `Collection` (before the whitening lookalike learns)."""
    matrix = np.stack([collection.stored_features(i).global_ for i in ids]).astype(np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def gem_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine of raw global descriptors `matrix: (n, G)` (unit rows) with `query: (G,)`."""
    q = np.asarray(query, np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    return np.asarray(matrix, np.float32) @ q


def rank_of(scores: np.ndarray, row: int) -> int:
    """1-based rank of `row` under `scores`, every tie counted against it: 1 + the number of
    other rows scoring at least as high."""
    return int((scores >= scores[row]).sum())
