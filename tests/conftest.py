"""Shared fixtures: an indexed demo collection (built once per session), data-set guards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lookalike.collection import Collection
from lookalike.demo import DemoCollection, build_demo_collection


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
