"""Near-duplicate groups: exact copies by content hash, near copies by verified matches.

Two images are near duplicates when spatial verification finds at least `threshold` local
features of one at the places the fitted model predicts in the other. Groups are the
connected components of that relation (and of equal content hashes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


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


def build_groups(
    paths: dict[int, str],
    hashes: dict[int, str | None],
    near: dict[tuple[int, int], int],
) -> list[DuplicateGroup]:
    """Groups from content hashes and `near` verified pairs (`(a, b) -> inliers`, a < b).

    Members are listed by path; groups by their first path.
    """
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
