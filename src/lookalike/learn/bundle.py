"""A model bundle from trained weights: the collection is described with the new network and
whitening and codebook are fitted on those descriptors (no labels)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from lookalike.features.batch import iter_extract
from lookalike.learn.fit import fit_model_on
from lookalike.learn.model import Model
from lookalike.settings import FeatureSettings, LearnSettings

logger = logging.getLogger("lookalike")


def make_bundle(
    root: Path,
    paths: Sequence[str],
    weights: Path,
    features: FeatureSettings,
    learn: LearnSettings,
    out_dir: Path,
    *,
    max_images: int = 600,
    seed: int = 0,
    meta: dict[str, object] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Model:
    """Extract a seeded sample of `paths` (relative to `root`) with `weights`, fit the model,
    and save the bundle (weights included) to `out_dir`."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(list(paths), min(max_images, len(paths)), replace=False).tolist())
    per_image = max(1, learn.sample_features // max(len(chosen), 1))
    local, global_ = [], []
    for i, item in enumerate(iter_extract(root, chosen, features, weights=weights)):
        if progress is not None:
            progress(i + 1, len(chosen))
        if item.features is None:
            continue
        desc = np.asarray(item.features.local.desc, dtype=np.float32)
        take = rng.permutation(len(desc))[:per_image]
        local.append(desc[take])
        global_.append(item.features.global_)
    if len(global_) < 2:
        raise ValueError("too few images could be described to fit a model bundle")
    model = fit_model_on(np.concatenate(local), np.stack(global_), features, learn)
    model = replace(
        model, meta={**model.meta, **(meta or {}), "origin": "trained"}, weights=weights
    )
    model.save(out_dir)
    return Model.load(out_dir)
