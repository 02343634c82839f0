"""lookalike: find the images in a collection that show the same thing as a query image.

from lookalike import Collection
hits = Collection.open("photos").search("query.jpg", k=10)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
JSON_SCHEMA = 1
"""Version of the JSON that the CLI's --json, the HTTP API and the reports' `as_dict` give: the
`"schema"` field of each answer. Raised when a field is renamed or changes meaning."""
__all__ = ["JSON_SCHEMA", "Collection", "Hit", "IndexReport", "Settings", "__version__"]

logging.getLogger("lookalike").addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from lookalike.collection import Collection, Hit, IndexReport
    from lookalike.settings import Settings


def __getattr__(name: str) -> Any:
    # Lazy: importing lookalike must not import torch or faiss.
    if name in ("Collection", "Hit", "IndexReport"):
        from lookalike import collection

        return getattr(collection, name)
    if name == "Settings":
        from lookalike.settings import Settings

        return Settings
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
