"""Feature extraction over a Ray cluster, with Ray Data.

`lookalike index FOLDER --ray ADDRESS` describes the images on the cluster's nodes and writes
the index on the machine it runs on, exactly as a run on one machine does: the files to
describe become a Ray Data dataset of paths; a pool of actors, each holding one network, runs
`features.batch.extract_file` on them (decoding included); the results come back in the order of the
paths, and `build.extract_into_shards` writes feature shards and catalog rows from them as it
does locally (so the on-disk index is the same, and a killed run carries on from what is
durable). A file that cannot be decoded is reported with its path and reason, as locally.

Contract with the cluster:
- every node reads the images at the same absolute path as this machine (a shared file system,
  e.g. NFS), and has the same version of lookalike installed;
- the network's weights travel with the job (the nodes need no copy of the index);
- the network runs in the arithmetic this machine resolves (`$LOOKALIKE_PRECISION`, else
  'auto': bfloat16 where this processor computes in it natively, else float32), on every node,
  on one thread per actor (as in the local process pool: the thread count changes the last
  bits of float32 sums). With float32 the features are the same bit for bit as a local run's
  with one thread per network; bfloat16 on a node whose processor lacks native bfloat16 is
  emulated (slow) and may differ in the last bits, so set `LOOKALIKE_PRECISION=float32` for a
  cluster of mixed processors.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.features.batch import Extracted, Extras, extract_file
from lookalike.features.engine import chosen_engine
from lookalike.features.extract import Extractor, use_bfloat16
from lookalike.scale import RAY_MISSING, connect, disconnect, import_ray
from lookalike.settings import FeatureSettings

BATCH_SIZE = 4
"""Images per actor call: small, so that results stream back to the writer steadily."""

MAX_BLOCKS = 2000
"""Upper bound on the dataset's blocks (a million paths make blocks of 500)."""


def resolved_precision(precision: str | None = None) -> str:
    """'bfloat16' or 'float32': the arithmetic `precision` (None: `$LOOKALIKE_PRECISION`, else
    'auto') means on this machine, to impose on every worker."""
    return "bfloat16" if use_bfloat16(precision) else "float32"


class ExtractBatch:
    """A Ray Data actor: holds one network and describes batches of paths.

    `weights`: the bytes of a weights file (written to a temporary file the network is built
    from, then removed), or None for the backbone's ImageNet weights.
    """

    def __init__(
        self,
        root: str,
        settings: FeatureSettings,
        weights: bytes | None,
        extras: Extras,
        precision: str,
        engine: str,
    ) -> None:
        self.root = Path(root)
        self.extras = extras
        path = None
        if weights is not None:
            handle, path = tempfile.mkstemp(prefix="lookalike-weights-", suffix=".pt")
            with os.fdopen(handle, "wb") as f:
                f.write(weights)
        try:
            self.extractor = Extractor(
                settings, weights=path, threads=1, precision=precision, engine=engine
            )
            self.extractor.network  # noqa: B018 - build the network now, while the file exists
        finally:
            if path is not None:
                os.unlink(path)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`batch['path']: (B,)` paths relative to the root -> the same paths and `result: (B,)`
        the pickled `Extracted` of each."""
        results = [
            pickle.dumps(extract_file(self.extractor, self.root, str(rel), self.extras))
            for rel in batch["path"]
        ]
        out = np.empty(len(results), dtype=object)
        out[:] = results
        return {"path": batch["path"], "result": out}


def actor_count(workers: int, paths: int, cluster_cpus: float, batch_size: int) -> int:
    """How many extraction actors: `workers` when given (> 0), else one per CPU of the cluster;
    never more than there are batches."""
    wanted = workers if workers > 0 else max(1, int(cluster_cpus))
    return max(1, min(wanted, math.ceil(paths / batch_size)))


def iter_extract_ray(
    root: Path,
    paths: Sequence[str],
    settings: FeatureSettings,
    *,
    address: str,
    weights: Path | None = None,
    workers: int = 0,
    extras: Extras = Extras(),
    precision: str | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Extracted]:
    """`features.batch.iter_extract` on the Ray cluster at `address`: `paths` (relative to `root`)
    described in `workers` actors (0: one per CPU of the cluster), yielded in the order of
    `paths`. `precision`: see `resolved_precision`."""
    if not paths:
        return
    ray = import_ray()
    try:
        import ray.data
    except ImportError as exc:
        raise RuntimeError(RAY_MISSING) from exc
    chosen = resolved_precision(precision)
    connected = connect(address)
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    try:
        context.execution_options.preserve_order = True  # rows in the order of `paths`
        context.enable_progress_bars = False  # the caller shows its own progress
        actors = actor_count(workers, len(paths), ray.cluster_resources().get("CPU", 1), batch_size)
        blocks = max(1, min(math.ceil(len(paths) / batch_size), MAX_BLOCKS))
        dataset = ray.data.from_items(
            [{"path": rel} for rel in paths], override_num_blocks=blocks
        ).map_batches(
            ExtractBatch,
            batch_size=batch_size,
            batch_format="numpy",
            fn_constructor_kwargs={
                "root": str(root),
                "settings": settings,
                "weights": None if weights is None else Path(weights).read_bytes(),
                "extras": extras,
                "precision": chosen,
                # the driver's engine on every node: a node without it fails, saying so
                "engine": chosen_engine(),
            },
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
        )
        for expected, row in zip(paths, _rows(dataset), strict=True):
            result: Extracted = pickle.loads(row["result"])
            if result.path != expected:  # preserve_order is the contract this relies on
                raise RuntimeError(f"Ray returned {result.path!r} where {expected!r} was due")
            yield result
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        disconnect(connected)


def _rows(dataset: Any) -> Iterator[dict[str, Any]]:
    yield from dataset.iter_rows()
