"""Training without labels: a step lowers the loss, checkpoints resume, bundles load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from lookalike.backbones import build_backbone
from lookalike.collection import Collection
from lookalike.demo import DemoCollection
from lookalike.features.global_ import gem
from lookalike.learn.train import (
    TrainSettings,
    build_model,
    build_teacher,
    freeze_batch_norm,
    make_batch,
    parameter_groups,
    train,
    training_step,
)
from lookalike.settings import FeatureSettings

pytestmark = pytest.mark.slow

FEATURES = FeatureSettings()
# A fixed number of steps, not a time budget: the same run on any machine.
SMALL = TrainSettings(batch_images=2, view_size=128, points_per_image=32, minutes=60, max_steps=4)


def _images() -> list[np.ndarray]:
    return [data.astronaut()[::2, ::2].copy(), data.chelsea().copy(), data.coffee().copy()]


def test_one_step_lowers_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = build_model(FEATURES, "imagenet")
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    images = _images()[:2]

    batch = make_batch(images, SMALL, 16.0, np.random.default_rng(1))

    def loss_at() -> torch.Tensor:
        loss, _ = training_step(model, batch, FEATURES, SMALL)
        return loss

    before = float(loss_at().detach())
    for _ in range(3):
        optimizer.zero_grad()
        loss_at().backward()
        optimizer.step()
    assert float(loss_at().detach()) < before


def test_training_checkpoints_resumes_and_writes_loadable_weights(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = []
    for i, image in enumerate(_images()):
        path = folder / f"im {i}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    out = tmp_path / "run"
    weights = train(paths, out, FEATURES, SMALL, snapshots=[0, 1e-6, 1e3])
    kept = sorted(p.name for p in (out / "snapshots").iterdir())
    assert kept == ["weights-0min.pt", "weights-1e-06min.pt"]  # 1000 minutes never came
    untrained = torch.load(out / "snapshots" / "weights-0min.pt", weights_only=True)["model"]
    start = build_model(FEATURES, "imagenet").state_dict()
    assert all(torch.equal(untrained[k], start[k]) for k in start)
    history = json.loads((out / "history.json").read_text())
    assert history and all(np.isfinite(h["total"]) for h in history)
    first_steps = len(history)

    longer = TrainSettings(**{**SMALL.__dict__, "max_steps": 8})
    train(paths, out, FEATURES, longer)  # other settings: starts afresh, still completes
    assert not (out / "snapshots").exists()  # the earlier run's snapshots are gone
    assert len(json.loads((out / "history.json").read_text())) == 8
    resumed = train(paths, out, FEATURES, longer)  # same settings: resumes at its end
    assert len(json.loads((out / "history.json").read_text())) == 8
    assert first_steps == 4
    model = build_backbone(FEATURES.backbone, ["head", "s16"], weights=resumed)
    with torch.inference_mode():
        maps = model(torch.rand(1, 3, 64, 64) * 255)
    assert set(maps) == {"s16", "head", "strength"}
    assert weights == resumed


def test_a_trained_bundle_indexes_and_searches_the_demo_collection(
    demo: DemoCollection, demo_collection: Collection, tmp_path: Path
) -> None:
    from lookalike.learn.bundle import make_bundle
    from lookalike.settings import LearnSettings
    from test_collection import _first_hits_of_own_photograph

    originals = sorted((demo.root / "originals").iterdir())
    weights = train(originals, tmp_path / "run", FEATURES, SMALL)
    rel = [p.relative_to(demo.root).as_posix() for p in sorted(demo.root.rglob("*.jpg"))]
    bundle = make_bundle(
        demo.root, rel, weights, FEATURES, LearnSettings(codebook_size=512), tmp_path / "bundle"
    )
    assert bundle.weights is not None and bundle.origin == "trained"

    collection = Collection.create(demo.root, index=tmp_path / "index", model=tmp_path / "bundle")
    report = collection.index(workers=1)
    assert report.images == len(demo.images) and report.model.startswith("bundle")
    # Four steps on two 128-px views is no real training, and its whitening and codebook are
    # fitted on 72 images: a margin of 2 of the 60 copies (the ImageNet model finds all 60).
    assert len(_first_hits_of_own_photograph(demo, collection, "fused")) <= 2

    # the trained weights were used: features differ from the ImageNet ones
    image_id = collection.id_of(demo.query)
    assert image_id is not None
    plain = demo_collection
    trained_desc = collection.stored_features(image_id).global_
    plain_desc = plain.stored_features(plain.id_of(demo.query) or 0).global_
    assert not np.allclose(trained_desc, plain_desc)


def _global(model: torch.nn.Module, views: np.ndarray) -> torch.Tensor:
    """`(len(views), G)` unit global descriptors of `views: (N, S, S, 3)`."""
    x = torch.from_numpy(views).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        pooled = gem(model(x)[FEATURES.global_layer], FEATURES.gem_p)
    return torch.nn.functional.normalize(pooled, dim=1)


def test_the_keep_term_holds_the_global_descriptor_near_imagenets() -> None:
    """Eight steps on two images: the local loss falls; two views of one image stay more
    alike than two images; and with `global_keep` the views' global descriptors end nearer
    the ImageNet network's than without it."""
    images = _images()[:2]
    teacher = build_teacher(FEATURES)
    kept: dict[float, float] = {}
    for keep in (0.0, 5.0):
        torch.manual_seed(0)
        settings = TrainSettings(**{**SMALL.__dict__, "global_keep": keep})
        model = build_model(FEATURES, "imagenet")
        model.train()
        freeze_batch_norm(model)  # as fine-tuning does
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = make_batch(images, settings, 16.0, np.random.default_rng(1))
        local = []
        for _ in range(8):
            loss, parts = training_step(model, batch, FEATURES, settings, teacher)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            local.append(parts.local)
        assert local[-1] < local[0], (keep, local)
        model.eval()
        views = _global(model, batch.views)  # image 0, image 1, image 0, image 1
        assert float(views[0] @ views[2]) > float(views[0] @ views[1]), keep
        assert float(views[1] @ views[3]) > float(views[1] @ views[2]), keep
        kept[keep] = float((views * _global(teacher, batch.views)).sum(dim=1).mean())
    assert kept[5.0] > kept[0.0], kept


def test_the_layers_above_the_local_layer_learn_slower_when_asked() -> None:
    model = build_model(FEATURES, "imagenet")
    settings = TrainSettings(upper_learning_rate=0.1)
    lower, upper = parameter_groups(model, FEATURES, settings, 1e-4)
    assert upper["lr"] == pytest.approx(1e-5) and lower["lr"] == 1e-4
    head = {id(p) for p in model.net._conv_head.parameters()}  # type: ignore[union-attr]
    assert head <= {id(p) for p in upper["params"]}
    assert not head & {id(p) for p in lower["params"]}
    assert len(lower["params"]) + len(upper["params"]) == len(list(model.parameters()))
    assert len(parameter_groups(model, FEATURES, TrainSettings(), 1e-4)) == 1
    with pytest.raises(ValueError, match="upper_learning_rate"):
        TrainSettings(upper_learning_rate=2.0)
