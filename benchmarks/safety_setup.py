"""What the parts of `benchmarks/safety.py` share: the Holidays photographs a collection is
made of, a collection folder copied from them, the real `lookalike` command run in a
subprocess, and the checks that nothing was lost (every image file indexed and found first by
a search with itself)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.settings import LearnSettings, Settings

SUBSET = 60
"""Images in the collections the safety benchmark writes to, kills, damages and serves."""

SETTINGS = Settings(learn=LearnSettings(min_images=40))
"""The default settings, but a collection of `SUBSET` images learns its own whitening and
codebook (the default waits for 300 images): so `--refit` runs the learn stage."""

INDEX = ".lookalike"


def holidays_photos() -> list[Path]:
    """The 811 Holidays photographs (`lookalike.evaluate.holidays`), sorted."""
    from lookalike.evaluate import holidays

    rset = holidays()
    return [rset.path(p) for p in rset.images]


def split_photos(seed: int, n: int = SUBSET) -> tuple[list[Path], list[Path]]:
    """A seeded random `n` of the Holidays photographs, and the others (in a seeded order)."""
    photos = holidays_photos()
    order = np.random.default_rng(seed).permutation(len(photos))
    return [photos[i] for i in order[:n]], [photos[i] for i in order[n:]]


def copy_collection(photos: Sequence[Path], root: Path) -> Path:
    """A collection folder `root` holding a copy of each of `photos` (by its file name)."""
    root.mkdir(parents=True)
    for photo in photos:
        shutil.copyfile(photo, root / photo.name)
    return root


def image_files(root: Path) -> set[str]:
    """The image files of the collection at `root`, relative to it (the index excluded)."""
    from lookalike.images import find_images

    return {p.relative_to(root).as_posix() for p in find_images(root, exclude_dirs=(INDEX,))}


def cli_env() -> dict[str, str]:
    """The environment of a `lookalike` subprocess: this one, with lines long enough that no
    message is wrapped (so that what it names can be read back)."""
    return {**os.environ, "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}


def lookalike(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, `python -m lookalike.cli ARGS`, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "lookalike.cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
    )


def not_found_first(root: Path, paths: Sequence[str], **options: Any) -> list[str]:
    """Those of `paths` (files of the collection at `root`) that a search with the file does
    not give first (`options`: the search's, such as `verify=0`), or that fail to search."""
    from lookalike.collection import Collection

    collection = Collection.open(root)
    missed = []
    for path in paths:
        try:
            hits = collection.search(root / path, k=1, **options)
        except Exception as e:  # a lost image, whatever the reason: recorded as such
            missed.append(f"{path} ({type(e).__name__}: {e})")
            continue
        if not hits or hits[0].path != path:
            missed.append(f"{path} (first: {hits[0].path if hits else None})")
    return missed


def last_line(text: str) -> str:
    """The last non-blank line of `text` (what a command said last), or ''."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
