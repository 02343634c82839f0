"""The global index chosen by size: the compressed kind (IVF + 4-bit PQ, refined from float16
vectors memory-mapped from disk) against exact search on seeded synthetic clustered vectors,
its files and parameters, and the choice by size through a collection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.index.generation import Manifest
from lookalike.index.global_index import (
    COMPRESSED,
    EXACT,
    REFINE_FILE,
    CompressedGlobalIndex,
    GlobalIndex,
    build_global,
    load_global,
    pq_subquantizers,
    save_global,
)
from lookalike.settings import IndexSettings, Settings

DIM = 64
SETTINGS = IndexSettings(kind="compressed", pq_bytes=16, refine=200)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray, spread: float) -> np.ndarray:
    """`n` unit vectors, each a random centre of `centres: (c, d)` plus Gaussian noise."""
    picks = centres[rng.integers(0, len(centres), n)]
    return unit(picks + spread * rng.standard_normal(picks.shape) / np.sqrt(centres.shape[1]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """20,000 indexed vectors and 200 queries (not indexed) from 100 clusters in 64-D."""
    rng = np.random.default_rng(7)
    centres = unit(rng.standard_normal((100, DIM)))
    return clustered(rng, 20_000, centres, 1.0), clustered(rng, 200, centres, 1.0)


@pytest.fixture(scope="module")
def compressed(data: tuple[np.ndarray, np.ndarray]) -> CompressedGlobalIndex:
    index = build_global(data[0], SETTINGS)
    assert isinstance(index, CompressedGlobalIndex)
    return index


def test_compressed_recall_against_exact(
    data: tuple[np.ndarray, np.ndarray], compressed: CompressedGlobalIndex
) -> None:
    """1-recall@10 (the exact nearest row is in the top 10) >= 0.95, and the similarities
    returned are the true ones to float16 rounding."""
    vectors, queries = data
    exact = GlobalIndex.build(vectors)
    found = 0
    for query in queries:
        truth, _ = exact.search(query, 1)
        rows, sims = compressed.search(query, 10)
        assert len(rows) == 10 and rows.dtype == np.int64 and sims.dtype == np.float32
        assert np.all(np.diff(sims) <= 0)
        np.testing.assert_allclose(sims, vectors[rows] @ query, atol=2e-3)
        found += int(truth[0] in rows)
    assert found / len(queries) >= 0.95


def test_compressed_scores_contract(
    data: tuple[np.ndarray, np.ndarray], compressed: CompressedGlobalIndex
) -> None:
    """`scores`: refined similarities on the `refine` best rows, their minimum elsewhere."""
    vectors, queries = data
    query = queries[0]
    scores = compressed.scores(query)
    assert scores.shape == (len(vectors),) and scores.dtype == np.float32
    rows, sims = compressed.search(query, SETTINGS.refine)
    assert len(rows) == SETTINGS.refine
    np.testing.assert_array_equal(scores[rows], sims)
    others = np.setdiff1d(np.arange(len(vectors)), rows)
    assert np.all(scores[others] == sims.min())
    # the best rows by these scores are the search's, and near the exact top 10
    exact_top = np.argsort(-(vectors @ query))[:10]
    assert len(set(np.argsort(-scores, kind="stable")[:10]) & set(exact_top)) >= 8


def test_compressed_vectors_are_the_float16_copies(
    data: tuple[np.ndarray, np.ndarray], compressed: CompressedGlobalIndex
) -> None:
    vectors = data[0]
    rows = np.array([5, 0, 19_999, 5])
    got = compressed.vectors(rows)
    assert got.shape == (4, DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, vectors[rows], atol=1e-3)
    assert compressed.vectors(np.zeros(0, np.int64)).shape == (0, DIM)


def test_save_load_round_trip_memory_maps_the_refine_vectors(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray], compressed: CompressedGlobalIndex
) -> None:
    folder = tmp_path / "gén 1, ☃"
    folder.mkdir()
    recorded = save_global(compressed, folder)
    params = recorded["global_index"]
    assert params["kind"] == COMPRESSED and recorded["index"] == params["faiss"]
    assert params["faiss"] == f"IVF{params['nlist']},PQ32x4fs"
    assert params["pq_bytes"] == 16 and params["refine"] == 200
    assert params["nlist"] >= 16 and 1 <= params["nprobe"] <= params["nlist"]
    params_read = json.loads(json.dumps(recorded["global_index"]))  # as the manifest holds them
    loaded = load_global(folder, params_read)
    assert isinstance(loaded, CompressedGlobalIndex)
    assert loaded.params() == params
    assert isinstance(loaded.refine, np.memmap) and loaded.refine.mode == "r"
    assert loaded.refine.dtype == np.float16 and loaded.refine.shape == (len(data[0]), DIM)
    assert (folder / REFINE_FILE).stat().st_size >= len(data[0]) * DIM * 2
    for query in data[1][:20]:
        for a, b in zip(compressed.search(query, 10), loaded.search(query, 10), strict=True):
            np.testing.assert_array_equal(a, b)
    # RAM: codes (16 B) + row numbers (8 B) an image, plus centroids and each list's codes
    # padded to a block of 32; far below the float32 vectors (256 B)
    per_list = DIM * 4 + 32 * 16
    per_image = loaded.ram_bytes() / loaded.n_images
    assert 24 <= per_image < 24 + params["nlist"] * per_list / loaded.n_images + 1


def test_choice_by_size_and_old_metadata(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = unit(rng.standard_normal((300, 32)))
    small = IndexSettings(exact_below=300)
    assert build_global(vectors[:299], small).kind == EXACT
    assert build_global(vectors, small).kind == COMPRESSED
    assert build_global(vectors, IndexSettings(kind="exact", exact_below=1)).kind == EXACT
    assert build_global(vectors[:10], IndexSettings(kind="compressed")).kind == EXACT  # too few
    assert IndexSettings().compressed(99_999) is False
    assert IndexSettings().compressed(100_000) is True
    # generations written before the compressed kind record only "index": IndexFlatIP
    GlobalIndex.build(vectors).save(tmp_path / "global.faiss")
    old = load_global(tmp_path, {"index": "IndexFlatIP", "dim": 32})
    assert isinstance(old, GlobalIndex) and old.n_images == 300


def test_sub_quantisers_fit_the_dimension() -> None:
    assert pq_subquantizers(256, 32) == 64
    assert pq_subquantizers(20, 32) == 20
    assert pq_subquantizers(96, 20) == 32


def test_index_settings_are_checked_and_stored() -> None:
    with pytest.raises(ValueError, match="allowed: auto, exact, compressed"):
        IndexSettings(kind="hnsw")
    settings = Settings(index=IndexSettings(exact_below=5, refine=50))
    assert Settings.from_dict(json.loads(json.dumps(settings.as_dict()))) == settings
    older = settings.as_dict()
    del older["index"]  # settings stored by an index from before this section
    assert Settings.from_dict(older).index == IndexSettings()


def test_a_collection_switches_kind_by_size(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    """A copy of the demo index, opened with a threshold below its size: the next run builds
    a compressed generation (no image described again), which searches and reports its sizes;
    forced back to exact, it is rebuilt exact."""
    index_dir = tmp_path / "idx, copie"
    shutil.copytree(demo_collection.index_dir, index_dir)
    settings = Settings(index=IndexSettings(exact_below=16))
    collection = Collection.create(demo.root, index=index_dir, settings=settings)
    report = collection.index(workers=1)
    assert not report.added and not report.updated and report.generation > 1
    folder = index_dir / f"gen-{report.generation:06d}"
    manifest = Manifest.read(folder)
    assert manifest is not None and manifest.global_index["kind"] == COMPRESSED
    assert manifest.global_settings == settings.index.key
    loaded = collection.snapshot().loaded
    assert isinstance(loaded.global_, CompressedGlobalIndex)
    assert isinstance(loaded.global_.refine, np.memmap)

    # fewer images than `refine`: every row is refined, so the ranking is the exact one
    for copy in [c for c in demo.originals if c.startswith("copies/")][:6]:
        hits = collection.search(demo.root / copy, k=3, mode="global", verify=0)
        exact = demo_collection.search(demo.root / copy, k=3, mode="global", verify=0)
        assert [h.path for h in hits] == [h.path for h in exact]

    info = collection.info()
    n, dim = info["images"], info["model"]["global_dim"]
    assert info["global_index"]["kind"] == COMPRESSED
    assert info["bytes"]["global_refine"] >= n * dim * 2
    assert 0 < info["bytes"]["global_index"] <= info["bytes"]["indexes"]
    assert info["bytes_per_image"]["global_refine"] == pytest.approx(
        info["bytes"]["global_refine"] / n
    )

    collection.configure(Settings(index=IndexSettings(kind="exact")))
    again = collection.index(workers=1)
    assert again.generation == report.generation + 1
    assert collection.info()["global_index"]["kind"] == EXACT
    assert collection.info()["bytes"]["global_refine"] == 0
