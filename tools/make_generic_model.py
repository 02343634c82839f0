"""Learn the generic whitening and codebook that ship with lookalike.

Small collections (under `LearnSettings.min_images` images) are too small to learn from, so
they use this model, learned here from a public image set: a seeded sample of the Corel
database in $LOOKALIKE_DATA/corel (80 categories of everyday photographs). The result is
written to src/lookalike/data/generic/.

    .venv/bin/python tools/make_generic_model.py [--per-category 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np

from lookalike.collection import Collection
from lookalike.evaluate import corel
from lookalike.learn.model import GENERIC_DIR, Model
from lookalike.settings import LearnSettings, Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rset = corel()
    rng = np.random.default_rng(args.seed)
    by_group: dict[str, list[str]] = {}
    for path, group in rset.groups.items():
        by_group.setdefault(group, []).append(path)
    chosen = [
        p
        for group in sorted(by_group)
        for p in rng.choice(sorted(by_group[group]), args.per_category, replace=False)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        view = Path(tmp) / "images"
        for rel in chosen:
            target = view / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(rset.path(rel).resolve())
        settings = Settings(learn=dataclasses.replace(LearnSettings(), min_images=0))
        collection = Collection.create(view, index=Path(tmp) / "index", settings=settings)
        report = collection.index()
        model = Model.load(Path(tmp) / "index" / "model")
    model = dataclasses.replace(
        model,
        meta={
            **model.meta,
            "origin": "generic",
            "learned_from": f"Corel, {args.per_category} images from each of 80 categories "
            f"(seed {args.seed}), {report.images} images",
        },
    )
    if GENERIC_DIR.exists():
        shutil.rmtree(GENERIC_DIR)
    model.save(GENERIC_DIR)
    print(f"generic model {model.id} from {report.images} images -> {GENERIC_DIR}")


if __name__ == "__main__":
    main()
