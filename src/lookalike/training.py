"""Train lookalike's network on a collection's own images (no labels) and make a model bundle.

What `lookalike train` runs, as two steps: `plan_training` says where the images come from and
where the bundle and its training run go; `train_collection` trains (resuming an interrupted
run), fits whitening and codebook on the collection described with the new weights, saves the
bundle, and, for a bundle kept inside the index, makes the collection index with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.collection import Collection
from lookalike.images import find_images
from lookalike.index.layout import INDEX_DIR_NAME, IndexLayout
from lookalike.learn.bundle import make_bundle
from lookalike.learn.train import StepLosses, TrainSettings, train
from lookalike.settings import FeatureSettings, LearnSettings

__all__ = ["TrainingPlan", "TrainingResult", "plan_training", "train_collection"]

"""The bundle's folder inside an index, when the bundle is the collection's own."""


@dataclass(frozen=True)
class TrainingPlan:
    """Where a training run reads and writes.

    root: the collection folder whose images are learnt from (its index folder left out).
    index_dir: the collection's index folder (made when the collection is first indexed).
    bundle: the model bundle's folder.
    in_place: the bundle is the index's own (`index_dir/trained`); the collection indexes with
        it once it is made.
    """

    root: Path
    index_dir: Path
    bundle: Path
    in_place: bool
    features: FeatureSettings = field(default_factory=FeatureSettings)
    """The network and how features are read off it: the collection's, when it has an index."""

    @property
    def run_dir(self) -> Path:
        """The run's checkpoints and weights, beside the bundle (`<bundle>.training`): a run
        interrupted there resumes where it stopped."""
        return self.bundle.with_name(self.bundle.name + ".training")


@dataclass(frozen=True)
class TrainingResult:
    """A model bundle made by `train_collection`, and what it was learnt from."""

    bundle: Path
    model_id: str
    images: int
    in_place: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "bundle": str(self.bundle),
            "model_id": self.model_id,
            "images": self.images,
            "in_place": self.in_place,
        }


def plan_training(folder: Path, out: Path | None = None) -> TrainingPlan:
    """Where training on `folder` reads and writes.

    `folder` is a folder of images, or an index folder (its collection's images are learnt
    from). The bundle goes to `out`, or, when `out` is None, into the collection's index
    (`IndexLayout.trained`), and the collection then uses it.

    Raises FileNotFoundError when `folder` is not a folder, `CatalogError` for an unreadable
    index folder.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of images")
    if IndexLayout(folder).catalog.is_file():  # an index folder: learn from its collection
        index_dir = folder.resolve()
        root = Collection.open(index_dir).root
    else:
        root = folder.resolve()
        index_dir = root / INDEX_DIR_NAME
    bundle = IndexLayout(index_dir).trained if out is None else out.resolve()
    features = (
        Collection.open(index_dir).settings.features
        if IndexLayout(index_dir).catalog.is_file()
        else FeatureSettings()
    )
    return TrainingPlan(root, index_dir, bundle, out is None, features)


def train_collection(
    plan: TrainingPlan,
    settings: TrainSettings,
    features: FeatureSettings | None = None,
    *,
    on_step: Callable[[float, float, StepLosses], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainingResult:
    """Train the network of `features` (default: the plan's) on the images under `plan.root`
    for `settings.minutes` (resuming from `plan.run_dir`), write the bundle to `plan.bundle`,
    and when `plan.in_place` make the collection index with it (its next `index` run
    describes the images again).

    `on_step(elapsed, budget, losses)` follows training (seconds); `progress("bundle", done,
    total)` the description of the sample the bundle's whitening and codebook are fitted on.
    Raises ValueError when there are too few images to train on or to fit the bundle.
    """
    paths = [p for p in find_images(plan.root) if plan.index_dir not in p.parents]
    rel = [p.relative_to(plan.root).as_posix() for p in paths]
    features = features or plan.features
    weights = train(paths, plan.run_dir, features, settings, progress=on_step)

    def on_extract(done: int, total: int) -> None:
        if progress is not None:
            progress("bundle", done, total)

    model = make_bundle(
        plan.root,
        rel,
        weights,
        features,
        LearnSettings(),
        plan.bundle,
        meta={"trained_on": str(plan.root), "train": settings.__dict__},
        progress=on_extract,
    )
    if plan.in_place:
        Collection.create(plan.root, index=plan.index_dir).use_model(plan.bundle)
    return TrainingResult(plan.bundle, model.id, len(paths), plan.in_place)
