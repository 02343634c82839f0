"""Evaluation: retrieval metrics and the benchmark sets with their protocols."""

from lookalike.evaluate.datasets import (
    DATASETS,
    FINGERPRINT_SETS,
    DataMissing,
    RetrievalSet,
    corel,
    data_root,
    fingerprints,
    groups,
    holidays,
    load_dataset,
    require_data,
)
from lookalike.evaluate.metrics import (
    RetrievalReport,
    average_precision,
    average_precision_inria,
    mean_average_precision,
    precision_at_k,
    recall_at_k,
    summarize,
    ukbench_score,
)

__all__ = [
    "DATASETS",
    "FINGERPRINT_SETS",
    "DataMissing",
    "RetrievalReport",
    "RetrievalSet",
    "average_precision",
    "average_precision_inria",
    "corel",
    "data_root",
    "fingerprints",
    "groups",
    "holidays",
    "load_dataset",
    "mean_average_precision",
    "precision_at_k",
    "recall_at_k",
    "require_data",
    "summarize",
    "ukbench_score",
]
