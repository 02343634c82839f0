"""Shared fixtures: an indexed demo collection (built once per session), a copy of it to
serve, data-set guards."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from lookalike.collection import Collection
from lookalike.demo import DemoCollection, build_demo_collection
from lookalike.features import ImageFeatures

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

LOCAL_URL = "http://127.0.0.1:8000"
"""Where a test client reaches the server: a name it answers to (not httpx's 'testserver')."""


def require_dataset(path: Path) -> Path:
    """Skip (or fail under CI=true) when a benchmark data folder is absent."""
    if path.is_dir():
        return path
    message = f"benchmark data missing at {path}; set LOOKALIKE_DATA to the shared data folder"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoCollection:
    """The demo collection, in a folder whose name has a space, a comma and unicode."""
    return build_demo_collection(tmp_path_factory.mktemp("demo") / "démo, photos")


@pytest.fixture(scope="session")
def demo_collection(demo: DemoCollection) -> Collection:
    collection = Collection.create(demo.root)
    collection.index(workers=1)
    return collection


@pytest.fixture(scope="module")
def served(
    demo: DemoCollection, demo_collection: Collection, tmp_path_factory: pytest.TempPathFactory
) -> Collection:
    """A copy of the indexed demo collection (index inside), which a module's tests may
    change."""
    root = tmp_path_factory.mktemp("served") / "demo copy"
    shutil.copytree(demo.root, root, symlinks=True)
    return Collection.open(root)


def local_client(app: FastAPI, **options: Any) -> TestClient:
    """A test client of `app` that names the server as a browser on this machine would."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=LOCAL_URL, **options)


TINY_COPIES = {
    "chelsea": ("a.jpg", "b, c.jpg", "é.jpg"),
    "coffee": ("d.jpg", "e.jpg"),
    "astronaut": ("f.jpg",),
}
"""The tiny folder: scikit-image photographs, each written once and copied byte for byte."""


def write_tiny_folder(root: Path) -> Path:
    """`TINY_COPIES` under `root` (made): chelsea three times, coffee twice (exact copies) and
    the astronaut once, as JPEGs; not indexed."""
    import io

    import skimage.data
    from PIL import Image

    root.mkdir(parents=True)
    for name, copies in TINY_COPIES.items():
        buffer = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buffer, "JPEG", quality=90)
        for copy in copies:
            (root / copy).write_bytes(buffer.getvalue())
    return root


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(script: str) -> ModuleType:
    """The module of `benchmarks/<script>.py`, imported as `bench_<script>` (its siblings, such
    as `common`, import as they do when it runs)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        path = BENCHMARKS / f"{script}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{script}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def assert_features_agree(reference: ImageFeatures, other: ImageFeatures) -> None:
    """Two computations of one image's features (another precision, another engine): the
    same global descriptor within a cosine of 0.99, at least 85% of the strongest places in
    common, and their descriptors within a median cosine of 0.99."""
    assert float(reference.global_ @ other.global_) > 0.99

    def by_place(features: ImageFeatures) -> dict[tuple[float, ...], np.ndarray]:
        local = features.local
        places = np.column_stack([local.xy, local.scale]).round(2).tolist()
        return {tuple(p): d for p, d in zip(places, local.desc, strict=True)}

    ours, theirs = by_place(reference), by_place(other)
    shared = ours.keys() & theirs.keys()
    assert len(shared) >= 0.85 * len(ours)
    assert np.median([float(ours[p] @ theirs[p]) for p in shared]) > 0.99
