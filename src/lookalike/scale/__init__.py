"""Beyond one machine, with Ray: feature extraction over a cluster (`ray_index`) and search
served from shards held by Ray actors (`shards`).

Ray is an optional dependency (`pip install 'lookalike[ray]'`); nothing here imports it until
a function that needs it is called (`connect`).
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("lookalike")

RAY_MISSING = (
    "Ray is not installed: install it with `pip install 'lookalike[ray]'` (Ray Data and its "
    "pandas/pyarrow), on the machine you run lookalike on and on every node of the cluster"
)


def import_ray() -> Any:
    """The `ray` module, or a `RuntimeError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError(RAY_MISSING) from exc
    return ray


def connect(address: str) -> bool:
    """Connect this process to the Ray cluster at `address` ('HOST:PORT', 'ray://HOST:PORT'
    or 'auto'), unless it is connected already. Returns whether it connected now (so that the
    caller disconnects when done)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as exc:
        raise RuntimeError(
            f"no Ray cluster at {address!r} ({exc}); start one with `ray start --head` "
            "and pass its address (HOST:PORT), or 'auto' on a node of the cluster"
        ) from exc
    logger.info("connected to the Ray cluster at %s", address)
    return True


def disconnect(connected: bool) -> None:
    """Undo `connect` when it connected (`connected` is what it returned)."""
    if connected:
        import_ray().shutdown()
