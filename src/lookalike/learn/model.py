"""The learned model bundle: feature settings, whitening and codebook, with a `meta.json`.

Folder layout: `meta.json` (every parameter, what it was fitted on, content hash),
`local_whitening.npz`, `global_whitening.npz`, `codebook.npy`, and optionally `weights.pt`
(a fine-tuned backbone).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.index.atomic import atomic_dir
from lookalike.learn.whitening import Whitening
from lookalike.settings import FeatureSettings, from_dict

GENERIC_DIR = Path(__file__).resolve().parent.parent / "data" / "generic"


@dataclass(frozen=True)
class Model:
    """Everything learned without labels that turns raw features into searchable codes."""

    features: FeatureSettings
    local_whitening: Whitening
    global_whitening: Whitening
    codebook: np.ndarray  # (K, d) float32
    meta: dict[str, Any] = field(default_factory=dict)
    weights: Path | None = None

    @cached_property
    def id(self) -> str:
        """Content hash: changes whenever anything learned changes (computed once: it reads
        the weights file, and every encoded shard asks for it)."""
        h = hashlib.blake2b(digest_size=8)
        h.update(json.dumps(self.features.__dict__, sort_keys=True, default=list).encode())
        for w in (self.local_whitening, self.global_whitening):
            h.update(w.mean.tobytes())
            h.update(w.projection.tobytes())
        h.update(self.codebook.tobytes())
        if self.weights is not None:
            h.update(self.weights.read_bytes())
        return h.hexdigest()

    @property
    def origin(self) -> str:
        """'collection' when fitted on the indexed images, else where it came from."""
        return str(self.meta.get("origin", "unknown"))

    def save(self, folder: Path) -> None:
        """Write the bundle to `folder` (replaced atomically)."""
        folder = Path(folder)
        old = folder.with_name(folder.name + ".old")
        new = folder.with_name(folder.name + ".new")
        for leftover in (old, new):  # from a run killed in the middle of a save
            shutil.rmtree(leftover, ignore_errors=True)
        with atomic_dir(new) as tmp:
            for name, w in (("local", self.local_whitening), ("global", self.global_whitening)):
                np.savez(tmp / f"{name}_whitening.npz", mean=w.mean, projection=w.projection)
            np.save(tmp / "codebook.npy", self.codebook.astype(np.float32))
            if self.weights is not None:
                shutil.copyfile(self.weights, tmp / "weights.pt")
            meta = {
                **self.meta,
                "features": self.features.__dict__,
                "local_dim": self.local_whitening.output_dim,
                "global_dim": self.global_whitening.output_dim,
                "codebook_size": len(self.codebook),
                "model_id": self.id,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=list))
        if folder.exists():
            folder.rename(old)
        new.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> Model:
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no model bundle in {folder} (meta.json missing)")
        meta = json.loads(meta_path.read_text())

        def whitening(name: str) -> Whitening:
            with np.load(folder / f"{name}_whitening.npz", allow_pickle=False) as z:
                return Whitening(mean=z["mean"], projection=z["projection"])

        weights = folder / "weights.pt"
        return cls(
            features=from_dict(FeatureSettings, meta["features"]),
            local_whitening=whitening("local"),
            global_whitening=whitening("global"),
            codebook=np.load(folder / "codebook.npy", allow_pickle=False),
            meta={k: v for k, v in meta.items() if k not in ("features", "model_id")},
            weights=weights if weights.is_file() else None,
        )


def generic_model() -> Model:
    """The whitening and codebook that ship with lookalike, learned from public images."""
    if not (GENERIC_DIR / "meta.json").is_file():
        raise FileNotFoundError(
            f"the generic model is missing from the installation ({GENERIC_DIR}); "
            "reinstall lookalike"
        )
    return Model.load(GENERIC_DIR)
