"""Run a benchmark set through lookalike: index it (into a cache folder), query, score.

The data folder is only read: indexes, and the upright or merged views of a set, are written
under the cache folder (`$LOOKALIKE_CACHE`, default `~/.cache/lookalike`). A cached index is
rebuilt when the code or the precision that built it changes (`evaluate.cache`); the views
hold links and upright copies only, which no code change alters.
"""

from __future__ import annotations

import hashlib
import json
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
from lookalike.evaluate.datasets import SPLITS, RetrievalSet, data_root
from lookalike.evaluate.methods import Asked, Ranker, parse_method, ranker, unavailable
from lookalike.evaluate.metrics import RetrievalReport, summarize
from lookalike.images import find_images
from lookalike.settings import Settings

logger = logging.getLogger("lookalike")


def default_index_dir(rset: RetrievalSet, settings: Settings | None = None) -> Path:
    """The cache folder for an index of `rset`, named after the set and its root (only the
    name: `cached_index_dir` is the folder to index into); an index with other `settings`
    than the defaults (a preset) has its own."""
    key = "|".join([str(rset.root.resolve()), *sorted(rset.left_out)])  # leave-out: its own
    if settings is not None and settings != Settings():
        key += "|" + json.dumps(settings.as_dict(), sort_keys=True)
    digest = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    return cache_root() / "indexes" / f"{rset.name}-{digest}"


def cached_index_dir(rset: RetrievalSet, settings: Settings | None = None) -> Path:
    """`default_index_dir(rset, settings)`, fresh: removed first when other code, or another
    precision, built the index there (`cache.fresh_cache_dir`)."""
    return fresh_cache_dir(default_index_dir(rset, settings))


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
        splits={renamed[q]: half for q, half in rset.splits.items()},
        left_out=r(rset.left_out),
    )


TOP = 100
"""Hits of each query's ranking an evaluation keeps (its results' `rankings`)."""


@dataclass(frozen=True)
class ModeResult:
    """One method's evaluation: `reports` on all queries ('all') and on each half of the set
    (`datasets.SPLITS`, when it has them); each query's search time in seconds and its best
    `TOP` hits."""

    reports: dict[str, RetrievalReport]
    seconds: dict[str, float]
    rankings: dict[str, list[str]]

    @property
    def median_seconds(self) -> float:
        """The median query time (0 when no query was searched)."""
        return float(np.median(list(self.seconds.values()))) if self.seconds else 0.0

    @property
    def p95_seconds(self) -> float:
        """The 95th percentile of the query times (0 when no query was searched)."""
        return float(np.percentile(list(self.seconds.values()), 95)) if self.seconds else 0.0

    def as_dict(self, detail: bool = False) -> dict[str, Any]:
        """The figures per split, the median and p95 query time; with `detail`, each query's
        APs (both rules), time and ranking too."""
        out: dict[str, Any] = {
            split: {k: v for k, v in rep.as_dict().items() if not k.startswith("per_query")}
            for split, rep in self.reports.items()
        }
        out["median_query_seconds"] = round(self.median_seconds, 4)
        out["p95_query_seconds"] = round(self.p95_seconds, 4)
        if detail:
            every = self.reports["all"]
            out["queries"] = {
                q: {
                    "ap": every.per_query_ap[q],
                    "ap_inria": every.per_query_ap_inria[q],
                    "seconds": round(self.seconds.get(q, 0.0), 4),
                    "ranking": self.rankings[q],
                }
                for q in sorted(self.rankings)
            }
        return out


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation, per method, with timing. `protocol`: 'official' (the queries
    are indexed, each searched from its file around its indexed copies), 'official, by id'
    (searched by their stored features) or 'leave-out' (the queries are not indexed)."""

    dataset: str
    protocol: str
    images: int
    modes: dict[str, ModeResult]
    index_seconds: float
    index_dir: Path

    @property
    def reports(self) -> dict[str, RetrievalReport]:
        """Each method's report on all the queries."""
        return {mode: r.reports["all"] for mode, r in self.modes.items()}

    def as_dict(self, detail: bool = False) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "protocol": self.protocol,
            "images": self.images,
            "index_seconds": round(self.index_seconds, 2),
            "index": str(self.index_dir),
            "modes": {mode: r.as_dict(detail) for mode, r in self.modes.items()},
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
    by_id: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    finished: Callable[[EvalResult], None] | None = None,
) -> EvalResult:
    """Index `rset` (its `indexed_root`) into `index_dir` (a cache folder by default) and score
    every query with each of `modes` (methods named as in `evaluate.methods`: search modes,
    fusions and peers).

    Each query is searched from its file, as `lookalike search FILE` does (`methods.ranker`):
    an indexed query (the official protocol) around its indexed copies and then dropped from
    its ranking by the set's junk lists; a query the set leaves out (`datasets.leave_out`) as
    it is. `by_id`: indexed queries are searched by their stored features instead. Every
    method is checked against the index's settings before any work (ValueError naming the
    fix). `max_queries` draws a seeded sample of the queries. `verify` and `expand` set the
    second stage (default: the index's settings; `verify=0` ranks by the first stage alone).
    `finished` is called with the results so far each time a method is done.
    """
    if by_id and rset.left_out:
        raise ValueError("queries left out of the index cannot be searched by id")
    methods = [parse_method(m) for m in modes]
    index_dir = index_dir or cached_index_dir(rset, settings)
    collection = Collection.create(
        indexed_root(rset), index=index_dir, settings=settings, model=model
    )
    problems = [p for p in (unavailable(m, collection.settings) for m in methods) if p]
    if problems:
        raise ValueError("; ".join(problems))
    t0 = time.perf_counter()
    collection.index(workers=workers, progress=progress)
    index_seconds = time.perf_counter() - t0
    queries = _sample(sorted(rset.queries), max_queries, seed)
    asked = {
        q: Asked(rset.path(q), None if q in rset.left_out else collection.id_of(q)) for q in queries
    }
    protocol = "leave-out" if rset.left_out else "official, by id" if by_id else "official"
    result = EvalResult(
        rset.name, protocol, len(rset.indexed), {}, index_seconds, collection.index_dir
    )
    for method in methods:
        rank = ranker(collection, method, verify=verify, expand=expand, seed=seed, by_id=by_id)
        result.modes[method.name] = _score_method(rset, queries, asked, rank, method.name, progress)
        if finished is not None:
            finished(result)
    return result


def _sample(queries: list[str], size: int | None, seed: int) -> list[str]:
    """A seeded sample of `size` of `queries` (all when None or not fewer), sorted."""
    if size is None or size >= len(queries):
        return queries
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(queries, size=size, replace=False).tolist())


def _score_method(
    rset: RetrievalSet,
    queries: list[str],
    asked: dict[str, Asked],
    rank: Ranker,
    name: str,
    progress: Callable[[str, int, int], None] | None,
) -> ModeResult:
    """Rank every query with `rank` and score the rankings on all queries and on each split.
    A query that is indexed in the set but failed to index ranks nothing (it scores 0)."""
    rankings: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for i, q in enumerate(queries):
        if asked[q].id is None and q not in rset.left_out:
            rankings[q] = []
            continue
        t = time.perf_counter()
        rankings[q] = rank(asked[q])
        seconds[q] = time.perf_counter() - t
        if progress is not None:
            progress(f"query ({name})", i + 1, len(queries))
    halves: dict[str, list[str]] = {"all": queries}
    for split in SPLITS if rset.splits else ():
        halves[split] = [q for q in queries if rset.splits.get(q) == split]
    reports = {
        half: summarize(
            rankings,
            {q: rset.queries[q] for q in chosen},
            {q: rset.junk.get(q, frozenset()) for q in chosen},
        )
        for half, chosen in halves.items()
        if chosen
    }
    return ModeResult(reports, seconds, {q: r[:TOP] for q, r in rankings.items()})
