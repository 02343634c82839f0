"""Whitening and codebook fitted on descriptors, without labels: the learned part of a model."""

from __future__ import annotations

import time

import numpy as np

from lookalike.learn.codebook import fit_codebook
from lookalike.learn.model import Model
from lookalike.learn.whitening import fit_whitening
from lookalike.settings import FeatureSettings, LearnSettings


def fit_model_on(
    local: np.ndarray, global_: np.ndarray, features: FeatureSettings, learn: LearnSettings
) -> Model:
    """Whitening and codebook from raw descriptors: `local: (N, C)`, `global_: (M, G)`."""
    local_w = fit_whitening(local, learn.local_dim)
    # Global whitening needs several images per dimension to be stable.
    global_dim = min(learn.global_dim, max(16, len(global_) // 3))
    shrinkage = learn.small_shrinkage if len(global_) < learn.min_images else 0.0
    global_w = fit_whitening(global_, global_dim, shrinkage=shrinkage)
    codebook = fit_codebook(
        local_w.apply(local),
        learn.codebook_size,
        iterations=learn.kmeans_iterations,
        seed=learn.seed,
    )
    meta = {
        "fitted_on_images": len(global_),
        "fitted_on_descriptors": len(local),
        "learn": learn.__dict__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return Model(features, local_w, global_w, codebook, meta)
