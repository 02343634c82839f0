"""Near-duplicate groups that people have: crops, rotations and mirrored copies of the demo's
photographs grouped at the default threshold, and candidate pairs found without an N x N
array."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lookalike.cli import app
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.index.global_index import GlobalIndex
from lookalike.search.dedup import build_groups, candidate_pairs, supported_pairs
from lookalike.search.mirror import flip_matrix, unmirror
from lookalike.search.pipeline import mirrored_look
from lookalike.search.rerank import verify_shortlist
from lookalike.search.verify import Verified
from lookalike.settings import DEDUP_SUPPORT, DEDUP_THRESHOLD


def _photo(path: str) -> str:
    """The photograph a demo file shows: `copies/coins-crop.jpg` -> 'coins'."""
    return Path(path).stem.split("-")[0]


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _planted(n: int, d: int, seed: int = 0) -> np.ndarray:
    """`(n, d)` unit rows: random ones, and every tenth row a near copy of the row before."""
    rng = np.random.default_rng(seed)
    vectors = _unit_rows(rng, n, d)
    copies = np.arange(1, n, 10)
    vectors[copies] = vectors[copies - 1] + 0.3 * _unit_rows(rng, len(copies), d)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _brute_force(vectors: np.ndarray, k: int, gate: float) -> set[tuple[int, int]]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    found = set()
    for a, row in enumerate(sims):
        for b in np.argsort(-row, kind="stable")[:k]:
            if row[b] >= gate:
                found.add((min(a, int(b)), max(a, int(b))))
    return found


def test_candidate_pairs_are_the_k_nearest_above_the_gate() -> None:
    """Batched FAISS neighbours give the brute-force pairs, each once, with its similarity."""
    vectors = _planted(600, 32)
    index = GlobalIndex.build(vectors)
    pairs, sims = candidate_pairs(index, 5, 0.3, batch=64)
    assert {(int(a), int(b)) for a, b in pairs} == _brute_force(vectors, 5, 0.3)
    assert len(pairs) == len({(int(a), int(b)) for a, b in pairs})
    assert (pairs[:, 0] < pairs[:, 1]).all()
    expected = np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])
    np.testing.assert_allclose(sims, expected, atol=1e-5)
    # every planted copy is found with its original, and the gate keeps random pairs out
    planted = {(int(c) - 1, int(c)) for c in np.arange(1, 600, 10)}
    assert planted <= {(int(a), int(b)) for a, b in pairs}
    strict, _ = candidate_pairs(index, 5, 0.8)
    assert {(int(a), int(b)) for a, b in strict} == planted


def test_candidate_pairs_never_hold_an_n_by_n_array() -> None:
    """At 4,000 images the Python side's peak allocation stays far below one N x N float32
    array (64 MB): memory grows with N x k, not N^2."""
    n = 4000
    vectors = _planted(n, 64, seed=1)
    index = GlobalIndex.build(vectors)
    tracemalloc.start()
    try:
        pairs, _ = candidate_pairs(index, 10, 0.5, batch=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    square = n * n * 4
    assert peak < square / 16, f"peak {peak} bytes against {square} for an N x N array"
    assert len(pairs) >= n // 10  # the planted copies at least


def test_candidate_pairs_reject_bad_arguments() -> None:
    index = GlobalIndex.build(_planted(20, 8))
    with pytest.raises(ValueError, match="k must be positive"):
        candidate_pairs(index, 0, 0.5)
    with pytest.raises(ValueError, match="batch must be positive"):
        candidate_pairs(index, 3, 0.5, batch=0)


def test_unmirror_maps_points_of_the_query_to_their_mirrored_place() -> None:
    """An outcome found on the flipped query (here the identity: the copy is the flipped
    query) maps each query point (x, y) to (width - x, y) once unmirrored."""
    width = 200.0
    flipped_xy = np.array([[10.0, 5.0], [150.0, 80.0], [199.0, 1.0], [40.0, 60.0]], np.float32)
    found = Verified(4, np.eye(3), flipped_xy, flipped_xy.copy())
    back = unmirror(found, width)
    assert back.inliers == 4
    np.testing.assert_allclose(back.query_xy[:, 0], width - flipped_xy[:, 0])
    points = np.c_[back.query_xy, np.ones(4)] @ back.matrix.T
    np.testing.assert_allclose(points[:, :2], back.image_xy, atol=1e-4)
    assert np.linalg.det(back.matrix[:2, :2]) < 0
    np.testing.assert_allclose(flip_matrix(width) @ flip_matrix(width), np.eye(3))
    assert unmirror(Verified.none(), width).inliers == 0


@pytest.mark.slow
def test_mirrored_look_verifies_a_mirrored_photograph(demo: DemoCollection, tmp_path: Path) -> None:
    """A scikit-image photograph and its mirror image: the plain look verifies nothing, the
    mirrored look verifies it for sure, with a matrix that sends a point (x, y) of the
    photograph near (width - x, y) of its mirror image; dedup groups the two and nothing
    else."""
    folder = tmp_path / "mirror, ü"
    folder.mkdir()
    original = demo.root / "originals" / "astronaut.jpg"
    shutil.copyfile(original, folder / "astronaut.jpg")
    picture = Image.open(original)
    picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "astronaut mirrored.jpg")
    for other in ("coffee", "camera", "clock"):
        shutil.copyfile(demo.root / "originals" / f"{other}.jpg", folder / f"{other}.jpg")
    collection = Collection.create(folder)
    collection.index(workers=1)
    snapshot = collection.snapshot()
    ids = {r.path: i for i, r in snapshot.records.items()}
    row = int(np.flatnonzero(snapshot.loaded.ids == ids["astronaut mirrored.jpg"])[0])
    searcher = collection.searcher
    rerank = collection.settings.rerank
    described = searcher.describe(folder / "astronaut.jpg", classic=(), sift=False)
    assert described.features is not None
    plain = verify_shortlist(
        snapshot.loaded, described.features.local, np.array([row]), snapshot.stored, rerank
    )[row]
    assert plain.inliers < DEDUP_THRESHOLD
    look = mirrored_look(searcher, described)
    assert look is not None
    found = verify_shortlist(snapshot.loaded, look.local, np.array([row]), snapshot.stored, rerank)[
        row
    ]
    assert found.inliers >= DEDUP_THRESHOLD
    width, height = picture.size
    back = unmirror(found, width)
    assert back.matrix is not None
    points = np.array([[0.25 * width, 0.3 * height], [0.7 * width, 0.8 * height], [0.5, 0.5]])
    mapped = np.c_[points, np.ones(3)] @ back.matrix.T
    mapped = mapped[:, :2] / mapped[:, 2:]
    expected = np.c_[width - points[:, 0], points[:, 1]]
    assert np.abs(mapped - expected).max() < 0.05 * width

    groups = collection.dedup()
    assert [set(g.paths) for g in groups] == [{"astronaut mirrored.jpg", "astronaut.jpg"}]
    assert groups[0].kind == "near" and (groups[0].inliers or 0) >= DEDUP_THRESHOLD
    assert collection.dedup(looks=False) == []  # stored features alone miss the mirror image


@pytest.mark.slow
def test_dedup_groups_every_demo_copy_and_a_mirrored_one(
    demo: DemoCollection, tmp_path: Path
) -> None:
    """The demo collection (crops, rotations, rescaled, relit and noisy copies of twelve
    photographs) with a mirrored copy added: at the default threshold each photograph's
    files make one group, and no group mixes two photographs."""
    root = tmp_path / "demo plus mirror"
    for rel in demo.images:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(demo.root / rel, root / rel)
    mirrored = "copies/chelsea-mirror.jpg"
    Image.open(demo.root / "originals" / "chelsea.jpg").transpose(
        Image.Transpose.FLIP_LEFT_RIGHT
    ).save(root / mirrored, quality=92)
    families: dict[str, set[str]] = {}
    for rel in [*demo.images, mirrored]:
        families.setdefault(_photo(rel), set()).add(rel)
    collection = Collection.create(root)
    collection.index(workers=1)
    stages: set[str] = set()
    groups = collection.dedup(progress=lambda stage, done, total: stages.add(stage))
    assert {"candidates", "dedup"} <= stages
    found = {_photo(g.paths[0]): set(g.paths) for g in groups}
    for group in groups:  # no group mixes two photographs
        assert {_photo(p) for p in group.paths} == {_photo(group.paths[0])}, group.paths
    assert found == families
    assert all(g.kind == "near" and (g.inliers or 0) >= DEDUP_THRESHOLD for g in groups)


@pytest.mark.slow
def test_dedup_cli_looks_and_gate_options(demo: DemoCollection, tmp_path: Path) -> None:
    """`lookalike dedup` groups a mirrored copy by default; `--no-looks` compares stored
    features only and misses it; a gate no pair reaches leaves nothing to verify."""
    folder = tmp_path / "cli mirror"
    folder.mkdir()
    original = demo.root / "originals" / "coffee.jpg"
    shutil.copyfile(original, folder / "coffee.jpg")
    Image.open(original).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "eeffoc.jpg")
    shutil.copyfile(demo.root / "originals" / "moon.jpg", folder / "moon.jpg")

    def groups(*options: str) -> list[list[str]]:
        result = CliRunner().invoke(app, ["dedup", str(folder), "--json", "-q", *options])
        assert result.exit_code == 0, (result.stdout, result.stderr)
        data = json.loads(result.stdout)
        return [[i["path"] for i in g["images"]] for g in data["groups"]]

    assert groups() == [["coffee.jpg", "eeffoc.jpg"]]
    assert groups("--no-looks") == []
    assert groups("--gate", "1.0", "--no-looks") == []
    result = CliRunner().invoke(app, ["dedup", str(folder), "--gate", "2"])
    assert result.exit_code == 2  # a usage error: the gate is a cosine, -1 to 1


def test_a_weak_link_between_two_groups_of_copies_does_not_chain_them() -> None:
    """Two groups of copies (0-3 and 10-12) and one weak false link between them (3-10):
    without support the two become one group; with it the link is left out, while a weak
    pair inside a group (a triangle), a lone pair (each image's best) and a strong link stay."""
    paths = {i: f"{i:02d}.jpg" for i in [*range(4), *range(10, 13), 20, 21, 30, 31, 32, 33]}
    hashes: dict[int, str | None] = dict.fromkeys(paths)
    near = {
        (0, 1): 200, (0, 2): 180, (1, 2): 30, (0, 3): 150, (1, 3): 120,  # copies of 0
        (10, 11): 160, (10, 12): 140, (11, 12): 90,  # copies of 10
        (3, 10): 25,  # a false link: both have stronger copies, none in common
        (20, 21): 22,  # a lone weak pair: its images' best evidence
        (30, 31): 300, (32, 33): 250, (31, 32): 120,  # a strong link between two pairs
    }  # fmt: skip
    chained = {g.ids for g in build_groups(paths, hashes, near)}
    assert (0, 1, 2, 3, 10, 11, 12) in chained
    kept = supported_pairs(near, sure=100)
    assert set(near) - set(kept) == {(3, 10)}
    grouped = {g.ids for g in build_groups(paths, hashes, near, sure=100)}
    assert grouped == {(0, 1, 2, 3), (10, 11, 12), (20, 21), (30, 31, 32, 33)}
    # a higher bar for a sure link leaves the strong bridge to the triangle and best rules
    assert (31, 32) not in supported_pairs(near, sure=500)


def test_collection_dedup_leaves_out_a_weak_link_between_two_groups(
    demo_collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Collection.dedup` (what the CLI, the server and the groups view call) groups with
    support: a pair below `DEDUP_SUPPORT` times the threshold between two groups of copies,
    with no copy in common, does not chain them; a sure link still does."""
    ids = [i for i, _ in demo_collection.images()][:8]
    strong, weak = DEDUP_SUPPORT * DEDUP_THRESHOLD, DEDUP_THRESHOLD
    a, b, c, d, e, f, g, h = ids
    near = {
        (a, b): strong + 50, (a, c): strong + 40, (b, c): weak + 5,  # copies of a
        (d, e): strong + 30, (d, f): strong + 20,  # copies of d
        (c, d): weak,  # a weak false link: both have stronger copies, none in common
        (g, h): weak,  # a lone pair: its images' best evidence
    }  # fmt: skip
    near = {(min(x, y), max(x, y)): n for (x, y), n in near.items()}
    monkeypatch.setattr(demo_collection, "verified_pairs", lambda **_: near)
    grouped = {frozenset(group.ids) for group in demo_collection.dedup()}
    assert grouped == {frozenset({a, b, c}), frozenset({d, e, f}), frozenset({g, h})}
    near[(min(c, d), max(c, d))] = strong  # a sure link joins the two
    grouped = {frozenset(group.ids) for group in demo_collection.dedup()}
    assert frozenset({a, b, c, d, e, f}) in grouped
