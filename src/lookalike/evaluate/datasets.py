"""Benchmark retrieval sets (Holidays, Corel, FVC fingerprints) with their protocols.

Each loader returns a :class:`RetrievalSet`: the folder to index, its images as
sorted posix paths relative to that folder, and per query the relevant and junk
paths. Feed ``queries`` and ``junk`` straight to
:func:`lookalike.evaluate.metrics.summarize`, with rankings keyed and listed by the
same relative paths.

The data lives outside the repository (see ``shared/data/README.md``): in
``$LOOKALIKE_DATA``, or by default in the ``shared/data`` folder beside the
repository checkout. Nothing is read at import time.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path, PurePosixPath

from lookalike.images import IMAGE_EXTENSIONS

__all__ = [
    "DATASETS",
    "FINGERPRINT_SETS",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "DataMissing",
    "RetrievalSet",
    "corel",
    "data_root",
    "fingerprints",
    "groups",
    "holidays",
    "leave_out",
    "load_dataset",
    "require_data",
]

FINGERPRINT_SETS: tuple[str, ...] = tuple(
    f"fvc{year}_db{db}" for year in (2000, 2002) for db in (1, 2, 3, 4)
)
"""The eight FVC "B" sets shipped under ``fingerprints/``."""

SPLITS: tuple[str, ...] = ("validation", "test")
"""The halves a set's queries fall in: parameters are chosen on *validation*, figures are
reported on *test* (and on all queries). Holidays: even group numbers validate, odd ones test;
a groups folder: its groups in sorted order, alternately."""

_ROTATIONS = frozenset({0, 90, 180, 270})
_ENV_VAR = "LOOKALIKE_DATA"


class DataMissing(FileNotFoundError):
    """A benchmark folder or file is not where it was expected."""

    def __init__(self, path: Path, what: str = "folder") -> None:
        self.path = path
        super().__init__(
            f"benchmark data {what} not found: {path}. Put the data there, or set "
            f"{_ENV_VAR} to the folder that holds holidays/, corel/ and fingerprints/."
        )


def _find_repo_root(start: Path) -> Path | None:
    """The nearest folder above ``start`` whose pyproject.toml names this project."""
    for folder in start.resolve().parents:
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            name = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
            continue
        if name == "lookalike":
            return folder
    return None


def data_root() -> Path:
    """Folder holding the benchmark sets.

    ``$LOOKALIKE_DATA`` when set and non-empty; otherwise ``shared/data`` beside
    the repository checkout (the folder holding this project's pyproject.toml);
    for an installed package with no checkout, ``../shared/data`` from the
    current working directory. The folder is not required to exist.
    """
    env = os.environ.get(_ENV_VAR)
    if env:
        return Path(env).expanduser()
    repo_root = _find_repo_root(Path(__file__))
    base = repo_root.parent if repo_root is not None else Path.cwd().parent
    return base / "shared" / "data"


def require_data(path: Path) -> Path:
    """Return ``path`` if it is a directory; raise :class:`DataMissing` otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise DataMissing(path)
    return path


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataMissing(path, what="file")
    return path


def _is_image(name: str) -> bool:
    """An image file by its suffix (:data:`lookalike.images.IMAGE_EXTENSIONS`, any case) that
    is not hidden (a set's protocol leaves out "._x.jpg" and the like, which
    :func:`lookalike.images.find_images` would list)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _list_images(folder: Path, *, recursive: bool) -> list[str]:
    """Image files under ``folder`` as sorted posix paths relative to it.

    Hidden files and folders (names starting with ".") are skipped; symlinked
    folders are not followed.
    """
    if not recursive:
        return sorted(p.name for p in folder.iterdir() if p.is_file() and _is_image(p.name))
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(folder)
        found.extend((rel_dir / f).as_posix() for f in filenames if _is_image(f))
    return sorted(found)


@dataclass(frozen=True)
class RetrievalSet:
    """A retrieval benchmark: what to index, what to ask, and what counts as a hit.

    All paths are posix strings relative to ``root``. The constructor checks the
    protocol is consistent and raises ``ValueError`` naming the first problem.

    Attributes:
        name: short name, e.g. ``"holidays"`` or ``"fvc2002_db1"``.
        root: folder that gets indexed.
        images: every image to index, sorted, unique.
        queries: query path -> relevant paths; the query itself is never relevant.
        junk: query path -> paths removed from that query's ranking.
        rotations: path -> clockwise degrees (0/90/180/270) that make it upright;
            ``{}`` when not applicable. Upright with PIL: ``im.rotate(-deg, expand=True)``.
        groups: path -> group name for one-folder-per-group sets; ``{}`` otherwise.
        splits: query -> the half it belongs to (:data:`SPLITS`); ``{}``: no split.
        left_out: images that are queries only: searched from their files, never indexed
            (see :func:`leave_out`); ``frozenset()``: every image is indexed.
    """

    name: str
    root: Path
    images: tuple[str, ...]
    queries: dict[str, frozenset[str]]
    junk: dict[str, frozenset[str]]
    rotations: dict[str, int]
    groups: dict[str, str]
    splits: dict[str, str] = field(default_factory=dict)
    left_out: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if list(self.images) != sorted(set(self.images)):
            raise ValueError(f"{self.name}: images must be sorted and unique")
        known = frozenset(self.images)

        def unknown(paths: Iterable[str], what: str) -> None:
            extra = sorted(set(paths) - known)
            if extra:
                raise ValueError(
                    f"{self.name}: {len(extra)} {what} are not among the images, e.g. {extra[:3]}"
                )

        unknown(self.queries, "queries")
        unknown(self.junk, "junk keys")
        unknown(self.rotations, "rotated paths")
        unknown(self.groups, "grouped paths")
        for query, rel in self.queries.items():
            if not rel <= known:
                unknown(rel, f"relevant images of {query!r}")
            self._check_query(query, rel)
        bad = {p: d for p, d in self.rotations.items() if d not in _ROTATIONS}
        if bad:
            raise ValueError(f"{self.name}: rotations must be 0/90/180/270, got {bad}")
        unknown(self.splits, "split queries")
        odd = sorted({s for s in self.splits.values() if s not in SPLITS})
        if odd:
            raise ValueError(f"{self.name}: splits must be one of {SPLITS}, got {odd}")
        unknown(self.left_out, "left-out images")

    def _check_query(self, query: str, rel: frozenset[str]) -> None:
        if not rel:
            raise ValueError(f"{self.name}: query {query!r} has no relevant images")
        if query in rel:
            raise ValueError(f"{self.name}: query {query!r} is listed as its own relevant")
        clash = rel & self.junk.get(query, frozenset())
        if clash:
            raise ValueError(
                f"{self.name}: {sorted(clash)[:3]} are both relevant and junk for {query!r}"
            )
        if rel & self.left_out:
            raise ValueError(
                f"{self.name}: {sorted(rel & self.left_out)[:3]} are relevant to {query!r} "
                "but left out of the index"
            )

    @property
    def indexed(self) -> tuple[str, ...]:
        """The images to index: every image but the left-out queries, sorted."""
        return tuple(p for p in self.images if p not in self.left_out)

    def split(self, name: str) -> list[str]:
        """The queries of one half (:data:`SPLITS`), sorted; ValueError for another name or a
        set without splits."""
        if name not in SPLITS or not self.splits:
            raise ValueError(
                f"{self.name}: no split {name!r}; splits: {sorted(set(self.splits.values()))}"
            )
        return sorted(q for q in self.queries if self.splits.get(q) == name)

    def split_images(self, name: str) -> list[str]:
        """Every image of one half: its queries and their relevant images, sorted (the
        robustness suite draws its originals from these)."""
        queries = self.split(name)
        return sorted({*queries, *(r for q in queries for r in self.queries[q])})

    @property
    def n_relevant(self) -> int:
        """Number of (query, relevant image) pairs."""
        return sum(len(rel) for rel in self.queries.values())

    def path(self, rel: str) -> Path:
        """Filesystem path of an image given its path relative to ``root``."""
        return self.root / rel


def holidays(root: Path | None = None) -> RetrievalSet:
    """INRIA Holidays (first 300 groups, 811 images) with the official protocol.

    Reads ``images/*.jpg``, ``ground_truth.json`` and ``upright.json`` from ``root``
    (default ``data_root() / "holidays"``). Ids such as ``"100000"`` become
    ``"images/100000.jpg"``, relative to ``root``, which is the folder to index.
    Each query is junk in its own ranking; 300 queries, 511 relevant pairs.
    """
    root = require_data(root if root is not None else data_root() / "holidays")
    require_data(root / "images")
    gt_path = _require_file(root / "ground_truth.json")
    up_path = _require_file(root / "upright.json")
    images = tuple(f"images/{name}" for name in _list_images(root / "images", recursive=False))

    def image_of(image_id: object) -> str:
        if not isinstance(image_id, str):
            raise ValueError(f"{gt_path}: image ids must be strings, got {image_id!r}")
        return f"images/{image_id}.jpg"

    try:
        raw_queries = json.loads(gt_path.read_text(encoding="utf-8"))["queries"]
        raw_rotations = json.loads(up_path.read_text(encoding="utf-8"))["rotate_clockwise_degrees"]
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{root}: expected ground_truth.json with a 'queries' object and upright.json "
            f"with a 'rotate_clockwise_degrees' object ({err!r})"
        ) from err
    queries = {image_of(q): frozenset(image_of(r) for r in rel) for q, rel in raw_queries.items()}
    return RetrievalSet(
        name="holidays",
        root=root,
        images=images,
        queries=queries,
        junk={q: frozenset({q}) for q in queries},
        rotations={image_of(i): int(d) for i, d in raw_rotations.items()},
        groups={},
        splits={image_of(q): SPLITS[int(q) // 100 % 2] for q in raw_queries},
    )


def groups(root: Path, *, min_group_size: int = 2, name: str | None = None) -> RetrievalSet:
    """A "one folder per group" set: every image queries the rest of its group.

    Images are found recursively (suffixes in :data:`IMAGE_EXTENSIONS`, any case;
    hidden names skipped). An image's group is its parent folder relative to
    ``root`` (``fvc2002_db1/101/101_1.png`` -> ``"fvc2002_db1/101"``). Every image
    of a group with at least ``min_group_size`` members is a query; its relevant
    images are the other members and its junk is itself. Images of smaller
    groups, and loose images directly in ``root`` (which have no group), are
    indexed as distractors only.

    Args:
        root: folder to scan and index.
        min_group_size: smallest group whose members become queries; at least 2.
        name: set name; defaults to ``root``'s folder name.

    Raises:
        DataMissing: ``root`` is not a folder.
        ValueError: ``min_group_size < 2``, no images, or no group big enough.
    """
    if min_group_size < 2:
        raise ValueError(f"min_group_size must be at least 2, got {min_group_size}")
    root = require_data(root)
    images = _list_images(root, recursive=True)
    if not images:
        raise ValueError(f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {root}")
    group_of: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for image in images:
        parent = PurePosixPath(image).parent
        if parent == PurePosixPath("."):
            continue
        group_of[image] = parent.as_posix()
        members.setdefault(parent.as_posix(), []).append(image)
    queries: dict[str, frozenset[str]] = {}
    big_groups = {g: frozenset(ms) for g, ms in members.items() if len(ms) >= min_group_size}
    for image in images:
        group = group_of.get(image)
        if group in big_groups:
            queries[image] = big_groups[group] - {image}
    if not queries:
        raise ValueError(
            f"no group folder under {root} has {min_group_size} or more images; expected "
            "one subfolder of images per group"
        )
    return RetrievalSet(
        name=name if name is not None else root.name,
        root=root,
        images=tuple(images),
        queries=queries,
        junk={q: frozenset({q}) for q in queries},
        rotations={},
        groups=group_of,
        splits=_group_splits(group_of, queries),
    )


def leave_out(rset: RetrievalSet, per_group: int | None = None) -> RetrievalSet:
    """The set with queries that are not in the collection: the *leave-out* protocol.

    With `per_group` None (Holidays), every query is left out of the index and searched from
    its file against the other images. With `per_group` N (a groups folder), the first N files
    of each group (sorted by name) are the queries, left out, each relevant to the rest of its
    group; a group of N files or fewer is indexed whole and asks nothing. Raises ValueError when
    no query is left (or `per_group` < 1).
    """
    if per_group is None:
        out = frozenset(rset.queries)
        queries = {q: rel - out for q, rel in rset.queries.items() if rel - out}
    else:
        if per_group < 1:
            raise ValueError(f"leave-out needs at least one query per group, got {per_group}")
        members: dict[str, list[str]] = {}
        for image, group in rset.groups.items():
            members.setdefault(group, []).append(image)
        queries = {}
        for group_members in members.values():
            ordered = sorted(group_members)
            if len(ordered) <= per_group:
                continue
            rest = frozenset(ordered[per_group:])
            queries.update({q: rest for q in ordered[:per_group]})
        out = frozenset(queries)
    if not queries:
        raise ValueError(f"{rset.name}: no query has a relevant image left in the index")
    return replace(
        rset,
        queries=queries,
        junk={q: frozenset({q}) for q in queries},
        splits={q: s for q, s in rset.splits.items() if q in queries}
        if per_group is None
        else _group_splits(rset.groups, queries),
        left_out=out,
    )


def _group_splits(group_of: dict[str, str], queries: Iterable[str]) -> dict[str, str]:
    """The halves of a groups folder's `queries`: the groups that ask, in sorted order,
    alternately validation and test."""
    order = {g: i for i, g in enumerate(sorted({group_of[q] for q in queries}))}
    return {q: SPLITS[order[group_of[q]] % 2] for q in queries}


def fingerprints(set_name: str, root: Path | None = None) -> RetrievalSet:
    """One FVC set (e.g. ``"fvc2002_db1"``): each impression queries the other 79.

    ``root`` is the folder holding the sets (default ``data_root() / "fingerprints"``).
    Groups are finger folders (``"101"``); 7 relevant impressions per query.
    """
    root = require_data(root if root is not None else data_root() / "fingerprints")
    folder = root / set_name
    if not folder.is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise ValueError(
            f"unknown fingerprint set {set_name!r} under {root}; available: {available}"
        )
    return groups(folder, name=set_name)


def corel(root: Path | None = None) -> RetrievalSet:
    """Corel, 80 categories: category-level retrieval, one folder per category.

    ``root`` defaults to ``data_root() / "corel"``.
    """
    return groups(root if root is not None else data_root() / "corel", name="corel")


DATASETS: dict[str, Callable[[], RetrievalSet]] = {
    "holidays": holidays,
    "corel": corel,
    **{s: partial(fingerprints, s) for s in FINGERPRINT_SETS},
}
"""Every benchmark set by name, loaded from :func:`data_root`."""


def load_dataset(name: str) -> RetrievalSet:
    """Load a set of :data:`DATASETS` by name from :func:`data_root`."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None
    return loader()
