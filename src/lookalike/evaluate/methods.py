"""The methods an evaluation can score, by name, each ranking a whole collection for a query:

- a search mode: 'fused', 'asmk', 'global', 'colour', 'texture', 'shape' or 'rootsift';
- a CNN mode with classic descriptors fused into it: 'fused+classic' (the three histograms)
  or e.g. 'fused+colour+texture' or 'fused+rootsift';
- a peer (`peers.py`): 'phash' or 'gem'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.settings import CLASSIC_DESCRIPTORS, CNN_MODES, FUSABLE, SEARCH_MODES

PEERS = ("phash", "gem")


@dataclass(frozen=True)
class Method:
    """A search mode with descriptors fused into it (`fuse`), or a peer (`mode` is the
    peer's name and `peer` is True)."""

    name: str
    mode: str
    fuse: tuple[str, ...] = ()
    peer: bool = False


def parse_method(name: str) -> Method:
    """The method called `name` (see the module's docstring); ValueError if there is none."""
    if name in PEERS:
        return Method(name, name, peer=True)
    mode, *fused = name.split("+")
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown method {name!r}; {methods_help()}")
    if fused == ["classic"]:
        fused = list(CLASSIC_DESCRIPTORS)
    bad = [f for f in fused if f not in FUSABLE]
    if bad:
        raise ValueError(
            f"{name!r}: cannot fuse {bad[0]!r}; allowed: classic, {', '.join(FUSABLE)}"
        )
    if fused and mode not in CNN_MODES:
        raise ValueError(f"{name!r}: classic descriptors are fused into a CNN mode only")
    return Method(name, mode, tuple(fused))


def methods_help() -> str:
    return (
        f"allowed: {', '.join(SEARCH_MODES)}, a CNN mode with '+classic' or "
        f"'+{'+'.join(CLASSIC_DESCRIPTORS)}' fused in, or a peer ({', '.join(PEERS)})"
    )


Ranker = Callable[[int], list[str]]
"""Paths of the whole collection, best first, for the indexed image with this id."""


def ranker(
    collection: Any,
    method: Method,
    *,
    verify: int | None = None,
    expand: bool | None = None,
    seed: int = 0,
) -> Ranker:
    """How `method` ranks `collection` (an indexed `Collection`) for one of its own images.

    A peer's ties (PHash distances are small integers) fall in a seeded random order.
    """
    images = collection.images()  # (id, path) in row order
    n = len(images)
    if not method.peer:

        def search(image_id: int) -> list[str]:
            hits = collection.search(
                image_id, k=n, mode=method.mode, fuse=method.fuse, verify=verify, expand=expand
            )
            return [h.path for h in hits]

        return search

    from lookalike.evaluate.peers import gem_matrix, hamming_scores, phash_collection

    paths = [p for _, p in images]
    row_of = {image_id: row for row, (image_id, _) in enumerate(images)}
    order = np.random.default_rng(seed).permutation(n)  # the tie-break
    if method.mode == "phash":
        hashes = phash_collection(
            collection.root, paths, collection.index_dir / "peers" / "phash.npz"
        )

        def scores(row: int) -> np.ndarray:
            return hamming_scores(hashes, hashes[row])

    else:
        matrix = gem_matrix(collection, [i for i, _ in images])

        def scores(row: int) -> np.ndarray:
            return matrix @ matrix[row]

    def rank(image_id: int) -> list[str]:
        s = scores(row_of[image_id])[order]
        return [paths[order[i]] for i in np.argsort(-s, kind="stable")]

    return rank
