"""The one registry of named evaluation methods, and the rule for names composed from modes.

A method ranks a whole collection for a query. `METHODS` names every method that a benchmark
scores by name: lookalike's own, each with the keyword arguments of `Collection.search` it
sets (what it leaves out is the index's setting), and the peers of `peers.py` ('peer').

Any other name is composed: a search mode ('fused', 'asmk', 'global', 'colour', 'texture',
'shape' or 'rootsift'), or a CNN mode with classic descriptors or RootSIFT fused into it, e.g.
'fused+colour+texture' or 'global+rootsift' ('+classic' stands for the three histograms). A
composed name sets `mode` and `fuse`; the named methods that are modes set the same.

An evaluation (`run.evaluate`) searches each query from its file (`ranker`) and scores every
method at the run's second stage (its `verify`
and `expand`, the index's where None), in place of a method's own; the robustness suite
(`robustness_run.py`) and `benchmarks/speed.py` search with the method's own options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np

from lookalike.collection import Collection
from lookalike.evaluate.peers import (
    HASH_SIDE,
    gem_matrix,
    gem_scores,
    hamming_scores,
    phash,
    phash_collection,
)
from lookalike.images import load_image
from lookalike.index.layout import IndexLayout
from lookalike.settings import (
    CLASSIC_DESCRIPTORS,
    CNN_MODES,
    FUSABLE,
    SEARCH_MODES,
    SearchSettings,
    Settings,
)


class SearchKeywords(TypedDict, total=False):
    """Keyword arguments of `Collection.search` that a method sets."""

    mode: str
    fuse: tuple[str, ...]
    verify: int
    expand: bool
    retry: bool


METHODS: dict[str, SearchKeywords | Literal["peer"]] = {
    "lookalike": {},  # the index's own search: fused first stage, spatial verification
    "fused": {"mode": "fused", "fuse": (), "verify": 0},  # the fused first stage alone
    "asmk": {"mode": "asmk", "fuse": (), "verify": 0},
    "global": {"mode": "global", "fuse": (), "verify": 0},
    "similar": {"mode": "similar", "fuse": ()},  # the same kind of thing (never verified)
    "fused+classic": {"mode": "fused", "fuse": CLASSIC_DESCRIPTORS},
    "colour": {"mode": "colour", "fuse": ()},
    "texture": {"mode": "texture", "fuse": ()},
    "shape": {"mode": "shape", "fuse": ()},
    "rootsift": {"mode": "rootsift", "fuse": ()},  # an index made with --sift only
    "lookalike+rootsift": {"fuse": ("rootsift",)},  # the index's search, RootSIFT fused in
    "phash": "peer",  # a 64-bit perceptual hash
    "gem": "peer",  # off-the-shelf GeM, the pooled CNN descriptor before lookalike's whitening
}
"""Named methods, in the order their tables list them: what each sets of `Collection.search`'s
options, or 'peer'."""


@dataclass(frozen=True)
class Method:
    """A method by name: the options of `Collection.search` it sets (`search`), or a peer of
    `peers.py` (`peer`, with no options)."""

    name: str
    search: SearchKeywords
    peer: bool = False

    def settings(self, stored: SearchSettings | None = None) -> SearchSettings | None:
        """The search settings it runs with over an index that stores `stored` (default: the
        default settings); None for a peer."""
        if self.peer:
            return None
        base = stored or SearchSettings()
        return replace(
            base, mode=self.search.get("mode", base.mode), fuse=self.search.get("fuse", base.fuse)
        )


def parse_method(name: str) -> Method:
    """The method called `name` (see the module's docstring); ValueError if there is none."""
    named = METHODS.get(name)
    if isinstance(named, str):
        return Method(name, {}, peer=True)
    if named is not None:
        return Method(name, named.copy())
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
    return Method(name, {"mode": mode, "fuse": tuple(fused)})


def methods_help() -> str:
    peers = [name for name, options in METHODS.items() if options == "peer"]
    other = [n for n in METHODS if n not in peers and n.split("+")[0] not in SEARCH_MODES]
    return (
        f"allowed: {', '.join(SEARCH_MODES)}, a CNN mode with '+classic' or "
        f"'+{'+'.join(CLASSIC_DESCRIPTORS)}' fused in, or a peer ({', '.join(peers)}), or "
        f"{', '.join(other)}"
    )


def unavailable(method: Method, settings: Settings) -> str | None:
    """Why an index with `settings` cannot rank by `method`, with the fix; None when it can.
    Checked before any work, so that an evaluation never fails after hours."""
    if method.peer:
        return None
    search = method.settings(settings.search)
    assert search is not None
    needs = {search.mode, *search.fuse}
    if "rootsift" in needs and not settings.sift.enabled:
        return (
            f"{method.name!r} needs RootSIFT features, which this index does not store: run "
            "`lookalike index FOLDER --index INDEX --sift` on it first, or leave it out"
        )
    missing = sorted((needs & set(CLASSIC_DESCRIPTORS)) - set(settings.classic.descriptors))
    if missing:
        return (
            f"{method.name!r} needs the {missing[0]!r} descriptor, which this index does not "
            "store: add it to the index's classic descriptors, or leave it out"
        )
    return None


@dataclass(frozen=True)
class Asked:
    """One query of an evaluation: its image `file`, and its `id` when it is indexed."""

    file: Path
    id: int | None


Ranker = Callable[[Asked], list[str]]
"""Paths of the whole collection, best first, for one query."""


def ranker(
    collection: Collection,
    method: Method,
    *,
    verify: int | None = None,
    expand: bool | None = None,
    seed: int = 0,
    by_id: bool = False,
) -> Ranker:
    """How `method` ranks `collection` (an indexed `Collection`) for a query, at the second
    stage `verify` and `expand` set (None: the index's setting) whatever the method's own.

    A query is searched from its file, as `lookalike search FILE` does (decoded, described,
    second looks and every rule); an indexed query is searched around its indexed copies
    (`Collection.copies`: same content), which then influence nothing. `by_id`: an indexed
    query is searched by its stored features instead (faster; no decoding, no second looks).
    A peer's ties (PHash distances are small integers) fall in a seeded random order.
    """
    images = collection.images()  # (id, path) in row order
    n = len(images)
    if not method.peer:
        options: dict[str, Any] = {**method.search, "verify": verify, "expand": expand}

        def search(asked: Asked) -> list[str]:
            if by_id:
                return [h.path for h in collection.search(_indexed(asked), k=n, **options)]
            exclude = () if asked.id is None else collection.copies(asked.file)
            hits = collection.search(asked.file, k=n, exclude=exclude, **options)
            return [h.path for h in hits]

        return search
    scores = _peer_scores(collection, method, images, by_id)
    paths = [p for _, p in images]
    order = np.random.default_rng(seed).permutation(n)  # the tie-break

    def rank(asked: Asked) -> list[str]:
        s = scores(asked)[order]
        return [paths[order[i]] for i in np.argsort(-s, kind="stable")]

    return rank


def _indexed(asked: Asked) -> int:
    """The id of an indexed query (`by_id`); ValueError for a query file that is not indexed."""
    if asked.id is None:
        raise ValueError(f"{asked.file} is not indexed: it cannot be searched by id")
    return asked.id


def _peer_scores(
    collection: Collection, method: Method, images: list[tuple[int, str]], by_id: bool
) -> Callable[[Asked], np.ndarray]:
    """A peer's `(n,)` scores of the collection's rows for a query: of its file, or (`by_id`)
    of the row of the indexed query."""
    row_of = {image_id: row for row, (image_id, _) in enumerate(images)}

    def row(asked: Asked) -> int:
        return row_of[_indexed(asked)]

    if method.name == "phash":
        layout = IndexLayout(collection.index_dir)
        hashes = phash_collection(collection.root, [p for _, p in images], layout.phash)

        def of_phash(asked: Asked) -> np.ndarray:
            query = hashes[row(asked)] if by_id else phash(load_image(asked.file, HASH_SIDE))
            return hamming_scores(hashes, query)

        return of_phash
    matrix = gem_matrix(collection, [i for i, _ in images])
    decode = collection.settings.features.decode_size

    def of_gem(asked: Asked) -> np.ndarray:
        if by_id:
            return matrix @ matrix[row(asked)]
        query = collection.extractor().extract(load_image(asked.file, decode)).global_
        return gem_scores(matrix, query)

    return of_gem
