"""The query pipeline: features of a query -> scores over the collection -> ranked rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.features import ImageFeatures
from lookalike.index.asmk_index import AsmkIndex, Vocabulary
from lookalike.index.global_index import GlobalIndex
from lookalike.learn.model import Model
from lookalike.settings import SearchSettings


@dataclass(frozen=True)
class LoadedGeneration:
    """One generation of the indexes, opened for reading. Row i is catalog image `ids[i]`."""

    generation: int
    ids: np.ndarray  # (n,) int64
    asmk: AsmkIndex
    global_: GlobalIndex
    model: Model
    meta: dict[str, object]

    @property
    def n_images(self) -> int:
        return len(self.ids)


def load_generation(folder: Path, model: Model) -> LoadedGeneration:
    meta = json.loads((folder / "global.json").read_text())
    if meta.get("model_id") != model.id:
        raise RuntimeError(
            f"index {folder} was built with model {meta.get('model_id')}, but the model is "
            f"{model.id}; run `lookalike index` again"
        )
    vocabulary = Vocabulary(model.codebook)
    return LoadedGeneration(
        generation=int(meta["generation"]),
        ids=np.load(folder / "ids.npy"),
        asmk=AsmkIndex.load(folder / "asmk", vocabulary),
        global_=GlobalIndex.load(folder / "global.faiss"),
        model=model,
        meta=meta,
    )


@dataclass(frozen=True)
class QueryScores:
    """Per-row scores of one query: `asmk` and `global_` `(n,)` float32, `fused` as ranked."""

    asmk: np.ndarray | None
    global_: np.ndarray | None
    final: np.ndarray


def score(
    loaded: LoadedGeneration,
    features: ImageFeatures,
    settings: SearchSettings,
    self_rows: np.ndarray | None = None,
) -> QueryScores:
    """Score every indexed image against a query's raw features.

    `self_rows`: rows holding the query itself (a query by id), left out of score normalisation.
    """
    model = loaded.model
    asmk_scores = global_scores = None
    if settings.mode in ("asmk", "fused"):
        desc = model.local_whitening.apply(np.asarray(features.local.desc, dtype=np.float32))
        code = loaded.asmk.vocabulary.encode(desc, settings.query_assignments)
        asmk_scores = loaded.asmk.scores(
            code, alpha=settings.alpha, threshold=settings.similarity_threshold
        )
    if settings.mode in ("global", "fused"):
        query = model.global_whitening.apply(features.global_[None].astype(np.float32))[0]
        global_scores = loaded.global_.scores(query)
    if settings.mode == "asmk":
        assert asmk_scores is not None
        final = asmk_scores
    elif settings.mode == "global":
        assert global_scores is not None
        final = global_scores
    else:
        assert asmk_scores is not None and global_scores is not None
        final = fuse(asmk_scores, global_scores, settings.global_weight, self_rows)
    return QueryScores(asmk=asmk_scores, global_=global_scores, final=final)


def fuse(
    asmk: np.ndarray,
    global_: np.ndarray,
    weight: float,
    self_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Late fusion of `(n,)` score arrays: `asmk / max(asmk) + weight * max(global, 0)`.

    ASMK scores of one query share a scale that varies from query to query (with multiple
    assignment a query's self-similarity is well below 1), so they are divided by the best
    score over the collection, leaving out `self_rows` (the query itself, when it is indexed).
    Whitened global cosines are in [-1, 1]; negative ones carry no evidence of a match.
    """
    if asmk.shape != global_.shape:
        raise ValueError(f"score arrays disagree: {asmk.shape} vs {global_.shape}")
    others = asmk
    if self_rows is not None and len(self_rows):
        others = asmk.copy()
        others[self_rows] = 0.0
    best = float(others.max()) if len(others) else 0.0
    scaled = asmk / best if best > 0 else asmk
    return (scaled + weight * np.maximum(global_, 0.0)).astype(np.float32)


def top_rows(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Rows of the `k` highest scores, best first (ties broken by row), skipping `exclude`."""
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.zeros(0, np.int64)
    if k < len(scores):
        kth = np.partition(-scores, k - 1)[k - 1]
        part = np.flatnonzero(-scores <= kth)  # every row tied with the k-th too
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))][:k]
