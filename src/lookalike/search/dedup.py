"""Near-duplicate groups: exact copies by content hash, near copies by verified matches.

Two images are near duplicates when spatial verification finds at least `threshold` local
features of one at the places the fitted model predicts in the other. Groups are the
connected components of that relation (and of equal content hashes).

Nothing here grows with the square of the collection: the pairs worth verifying are each
image's `k` nearest neighbours in the global index whose similarity passes a gate
(`candidate_pairs`, O(N k) memory, searched in batches), and groups come from union-find over
the verified pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.index.global_index import EXACT, GlobalSearch

CANDIDATE_BATCH = 1024
"""Images whose neighbours one batched search of an exact global index looks up together: the
similarities it holds at once are `CANDIDATE_BATCH x k`, never `N x N`."""


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are copies of one another.

    kind: 'exact' (same bytes) or 'near' (at least one pair is only a verified near copy)
    ids, paths: the members, by path
    inliers: the fewest inliers among its verified pairs (None for exact copies)
    """

    kind: str
    ids: tuple[int, ...]
    paths: tuple[str, ...]
    inliers: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "size": len(self.ids),
            "inliers": self.inliers,
            "images": [{"id": i, "path": p} for i, p in zip(self.ids, self.paths, strict=True)],
        }


def connected_groups(nodes: Sequence[int], edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components of more than one node (union-find), each sorted, ordered by their
    smallest node."""
    parent = {n: n for n in nodes}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    components: dict[int, list[int]] = {}
    for n in nodes:
        components.setdefault(root(n), []).append(n)
    groups = [sorted(c) for c in components.values() if len(c) > 1]
    return sorted(groups, key=lambda g: g[0])


def supported_pairs(near: dict[tuple[int, int], int], sure: int) -> dict[tuple[int, int], int]:
    """The pairs of `near` (`(a, b) -> inliers`) that may join groups: a pair with at least
    `sure` inliers; one whose two images are both near copies of a third image (a triangle);
    or the strongest pair of either image (its best evidence). What is left out is a weak link
    between two images that each have stronger copies elsewhere, with no copy in common: one
    such false link is all it takes to chain two groups of copies into one."""
    neighbours: dict[int, set[int]] = {}
    best: dict[int, int] = {}
    for (a, b), inliers in near.items():
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
        best[a] = max(best.get(a, 0), inliers)
        best[b] = max(best.get(b, 0), inliers)
    return {
        (a, b): inliers
        for (a, b), inliers in near.items()
        if inliers >= sure or inliers >= min(best[a], best[b]) or neighbours[a] & neighbours[b]
    }


def build_groups(
    paths: dict[int, str],
    hashes: dict[int, str | None],
    near: dict[tuple[int, int], int],
    sure: int | None = None,
) -> list[DuplicateGroup]:
    """Groups from content hashes and `near` verified pairs (`(a, b) -> inliers`, a < b);
    with `sure`, only the pairs `supported_pairs` keeps join groups.

    Members are listed by path; groups by their first path.
    """
    if sure is not None:
        near = supported_pairs(near, sure)
    by_hash: dict[str, list[int]] = {}
    for image_id, digest in hashes.items():
        if digest:
            by_hash.setdefault(digest, []).append(image_id)
    exact = [(g[0], other) for g in by_hash.values() for other in g[1:]]
    nodes = sorted(paths)
    out = []
    for members in connected_groups(nodes, [*exact, *near]):
        inside = set(members)
        links = [n for (a, b), n in near.items() if a in inside and b in inside]
        same_bytes = len({hashes.get(m) for m in members}) == 1 and hashes.get(members[0])
        ordered = sorted(members, key=lambda m: paths[m])
        out.append(
            DuplicateGroup(
                kind="exact" if same_bytes else "near",
                ids=tuple(ordered),
                paths=tuple(paths[m] for m in ordered),
                inliers=min(links) if links and not same_bytes else None,
            )
        )
    return sorted(out, key=lambda g: g.paths[0])


def candidate_pairs(
    global_: GlobalSearch,
    k: int,
    gate: float,
    *,
    batch: int = CANDIDATE_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of rows worth verifying: each row's `k` nearest other rows in `global_` whose
    similarity is at least `gate`.

    Returns `pairs: (P, 2)` int64 rows `(a, b)` with `a < b`, each pair once, sorted, and
    `sims: (P,)` float32 their global similarity (the larger of the two directions, which
    differ only with a compressed index). Memory is O(N k): an exact index is searched
    `batch` rows at a time, a compressed one a row at a time; no N x N array is made.
    `progress(done, total)` is called after each batch.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    n = global_.n_images
    found_a: list[np.ndarray] = []
    found_b: list[np.ndarray] = []
    found_s: list[np.ndarray] = []
    for start in range(0, n, batch):
        rows = np.arange(start, min(start + batch, n), dtype=np.int64)
        neighbours, sims = _nearest(global_, rows, k + 1)  # (B, k + 1): the row itself too
        a = np.repeat(rows, neighbours.shape[1])
        b, s = neighbours.ravel(), sims.ravel()
        keep = (b >= 0) & (b != a) & (s >= gate)
        found_a.append(np.minimum(a[keep], b[keep]))
        found_b.append(np.maximum(a[keep], b[keep]))
        found_s.append(s[keep].astype(np.float32))
        if progress is not None:
            progress(int(rows[-1]) + 1, n)
    if not found_a:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    a, b, s = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_s)
    # each pair once, with its larger similarity: sort by pair, then by similarity descending
    order = np.lexsort((-s, b, a))
    a, b, s = a[order], b[order], s[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return np.stack([a[first], b[first]], axis=1), s[first]


def _nearest(global_: GlobalSearch, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest rows of each of `rows: (B,)` -> `(B, k)` int64 rows (-1 where fewer)
    and `(B, k)` float32 similarities."""
    index = getattr(global_, "index", None)
    if global_.kind == EXACT and index is not None:  # FAISS IndexFlatIP: one blocked search
        queries = global_.vectors(rows)
        sims, found = index.search(np.ascontiguousarray(queries, np.float32), k)
        return found.astype(np.int64), sims.astype(np.float32)
    out_rows = np.full((len(rows), k), -1, np.int64)
    out_sims = np.full((len(rows), k), -np.inf, np.float32)
    for i, vector in enumerate(global_.vectors(rows)):
        found, sims = global_.search(vector, k)
        out_rows[i, : len(found)] = found
        out_sims[i, : len(found)] = sims
    return out_rows, out_sims
