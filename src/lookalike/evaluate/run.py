"""Run a benchmark set through lookalike: index it (into a cache folder), query, score.

The data folder is only read: indexes, and the upright or merged views of a set, are written
under the cache folder (`$LOOKALIKE_CACHE`, default `~/.cache/lookalike`). A cached index is
rebuilt when the code or the precision that built it changes (`evaluate.cache`); the views
hold links and upright copies only, which no code change alters.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.collection import Collection
from lookalike.evaluate.cache import cache_root, fresh_cache_dir  # cache_root: also for callers
from lookalike.evaluate.datasets import RetrievalSet, data_root
from lookalike.evaluate.methods import parse_method, ranker
from lookalike.evaluate.metrics import RetrievalReport, summarize
from lookalike.images import find_images
from lookalike.settings import Settings

logger = logging.getLogger("lookalike")


def default_index_dir(rset: RetrievalSet) -> Path:
    """The cache folder for an index of `rset`, named after the set and its root (only the
    name: `cached_index_dir` is the folder to index into)."""
    digest = hashlib.blake2b(str(rset.root.resolve()).encode(), digest_size=6).hexdigest()
    return cache_root() / "indexes" / f"{rset.name}-{digest}"


def cached_index_dir(rset: RetrievalSet) -> Path:
    """`default_index_dir(rset)`, fresh: removed first when other code, or another precision,
    built the index there (`cache.fresh_cache_dir`)."""
    return fresh_cache_dir(default_index_dir(rset))


def view_folder(rset: RetrievalSet, distractors: Sequence[Path]) -> Path:
    """The cache folder of `rset` among `distractors`: `views/<set>-<key>`, the key a hash of
    the resolved paths of the set's root and of the distractor folders (two sets or distractor
    folders of the same name never share a view)."""
    folders = [rset.root, *distractors]
    key = hashlib.blake2b(
        "|".join(str(p.resolve()) for p in folders).encode(), digest_size=6
    ).hexdigest()
    return cache_root() / "views" / f"{rset.name}-{key}"


def upright_view(rset: RetrievalSet, folder: Path | None = None) -> RetrievalSet:
    """The set with every image turned upright: rotated images are written (PNG, lossless)
    into `folder` (default: `views/<set>-upright` in the cache), the others are linked. Returns
    the set rooted at `folder`."""
    folder = folder or cache_root() / "views" / f"{rset.name}-upright"
    renamed: dict[str, str] = {}
    for rel in rset.images:
        degrees = rset.rotations.get(rel, 0)
        target = folder / (rel if not degrees else f"{rel}.upright.png")
        renamed[rel] = target.relative_to(folder).as_posix()
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if degrees:
            with Image.open(rset.path(rel)) as im:
                im.rotate(-degrees, expand=True).save(target)
        else:
            target.symlink_to(rset.path(rel).resolve())
    return _renamed(rset, folder, renamed, rotations={})


def merged_view(
    rset: RetrievalSet, distractors: Sequence[Path], folder: Path | None = None
) -> RetrievalSet:
    """The set plus distractor images, as one folder of links: `set/...` and `distractors-i/...`
    (`folder`, default: `view_folder(rset, distractors)` in the cache). Distractors are never
    queries. Raises OSError for a distractor folder that cannot be read."""
    folder = folder or view_folder(rset, distractors)
    renamed = {rel: f"set/{rel}" for rel in rset.images}
    for rel, new in renamed.items():
        _link(rset.path(rel), folder / new)
    extra: list[str] = []
    for i, dist in enumerate(distractors):
        for path in find_images(dist):
            new = f"distractors-{i}/{path.relative_to(dist).as_posix()}"
            _link(path, folder / new)
            extra.append(new)
    view = _renamed(rset, folder, renamed, rotations={})
    return replace(view, images=tuple(sorted([*view.images, *extra])))


def default_distractors(rset: RetrievalSet) -> list[Path]:
    """The distractors a set is measured among unless told otherwise: the Corel set for
    Holidays, when the benchmark data has it (`data_root()/corel`); none for other sets."""
    corel = data_root() / "corel"
    return [corel] if corel.is_dir() and rset.name == "holidays" else []


def with_distractors(rset: RetrievalSet, distractors: Sequence[Path]) -> RetrievalSet:
    """`rset` among `distractors`: its merged view in the cache (`merged_view`), or `rset`
    itself when there are no distractors."""
    return merged_view(rset, distractors) if distractors else rset


def indexed_root(rset: RetrievalSet) -> Path:
    """The folder to index for `rset`: its root, or, when it leaves queries out of the index
    (`datasets.leave_out`), a cache folder of links to its other images
    (`views/<set>-leave-out-<key>`, the key a hash of the root and of the images left out).
    The images keep their paths relative to the set's root."""
    if not rset.left_out:
        return rset.root
    key = hashlib.blake2b(
        "|".join([str(rset.root.resolve()), *sorted(rset.left_out)]).encode(), digest_size=6
    ).hexdigest()
    folder = cache_root() / "views" / f"{rset.name}-leave-out-{key}"
    for rel in rset.indexed:
        _link(rset.path(rel), folder / rel)
    return folder


def _link(source: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve())


def _renamed(
    rset: RetrievalSet, root: Path, renamed: dict[str, str], rotations: dict[str, int]
) -> RetrievalSet:
    def r(paths: frozenset[str]) -> frozenset[str]:
        return frozenset(renamed[p] for p in paths)

    return RetrievalSet(
        name=rset.name,
        root=root,
        images=tuple(sorted(renamed[p] for p in rset.images)),
        queries={renamed[q]: r(rel) for q, rel in rset.queries.items()},
        junk={renamed[q]: r(j) for q, j in rset.junk.items()},
        rotations=rotations,
        groups={renamed[p]: g for p, g in rset.groups.items()},
    )


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation, per search mode, with timing."""

    dataset: str
    images: int
    reports: dict[str, RetrievalReport]
    index_seconds: float
    query_seconds: dict[str, float]  # median per query
    index_dir: Path

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "images": self.images,
            "index_seconds": round(self.index_seconds, 2),
            "index": str(self.index_dir),
            "modes": {
                mode: {
                    **{k: v for k, v in rep.as_dict().items() if k != "per_query_ap"},
                    "median_query_seconds": round(self.query_seconds[mode], 4),
                }
                for mode, rep in self.reports.items()
            },
        }


def evaluate(
    rset: RetrievalSet,
    *,
    modes: Sequence[str] = ("fused", "asmk", "global"),
    index_dir: Path | None = None,
    settings: Settings | None = None,
    model: Path | None = None,
    workers: int = 0,
    max_queries: int | None = None,
    seed: int = 0,
    verify: int | None = None,
    expand: bool | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> EvalResult:
    """Index `rset.root` into `index_dir` (a cache folder by default) and score every query
    with each of `modes` (methods named as in `evaluate.methods`: search modes, fusions and
    peers).

    Queries use their stored features (as re-extracting the same file would give); the query
    itself is removed from its ranking by the set's junk lists. `max_queries` draws a seeded
    sample of the queries for large sets. `verify` and `expand` set the second stage (default:
    the collection's settings; `verify=0` ranks by the first stage alone).
    """
    methods = [parse_method(m) for m in modes]
    index_dir = index_dir or cached_index_dir(rset)
    collection = Collection.create(rset.root, index=index_dir, settings=settings, model=model)
    t0 = time.perf_counter()
    collection.index(workers=workers, progress=progress)
    index_seconds = time.perf_counter() - t0
    queries = sorted(rset.queries)
    if max_queries is not None and max_queries < len(queries):
        rng = np.random.default_rng(seed)
        queries = sorted(rng.choice(queries, size=max_queries, replace=False).tolist())
    ids = {q: collection.id_of(q) for q in queries}
    n = len(rset.images)
    reports: dict[str, RetrievalReport] = {}
    query_seconds: dict[str, float] = {}
    for method in methods:
        mode = method.name
        rank = ranker(collection, method, verify=verify, expand=expand, seed=seed)
        rankings: dict[str, list[str]] = {}
        times = []
        for i, q in enumerate(queries):
            image_id = ids[q]
            if image_id is None:
                rankings[q] = []  # the query failed to index: it scores 0
                continue
            t = time.perf_counter()
            rankings[q] = rank(image_id)
            times.append(time.perf_counter() - t)
            if progress is not None:
                progress(f"query ({mode})", i + 1, len(queries))
        reports[mode] = summarize(
            rankings,
            {q: rset.queries[q] for q in queries},
            {q: rset.junk.get(q, frozenset()) for q in queries},
        )
        query_seconds[mode] = float(np.median(times)) if times else 0.0
    return EvalResult(rset.name, n, reports, index_seconds, query_seconds, index_dir)
