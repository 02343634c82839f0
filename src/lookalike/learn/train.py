"""Self-supervised training of the backbone on the collection's own images (no labels).

Each step draws a few images, makes two views of each related by a known homography
(`pairs.make_pair`), and trains: local descriptors at corresponding points to match (dense
InfoNCE, negatives are other points and other images), a strength head to predict which
locations match reliably, and global descriptors of the two views to agree (InfoNCE over the
batch). Training runs for a time budget, checkpoints regularly and resumes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lookalike.backbones import build_backbone
from lookalike.backbones.efficientnet import LAYER_STRIDES
from lookalike.features.global_ import gem
from lookalike.images import ImageError, load_image
from lookalike.learn.losses import dense_info_nce, global_info_nce, reliability_loss, sample_at
from lookalike.learn.pairs import PairSettings, make_pair, transform_points, warp
from lookalike.settings import FeatureSettings

logger = logging.getLogger("lookalike")

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
STARTS = ("imagenet", "scratch")


@dataclass(frozen=True)
class TrainSettings:
    """How the network is trained; `start` is 'imagenet' (fine-tune) or 'scratch'.

    `global_keep`: weight of a term that keeps each view's pooled global descriptor near the
    one the ImageNet network gives it (1 - cosine; fine-tuning only): the local objective
    adapts the layers the global descriptor is read from too, and its own contrastive loss,
    over a handful of images a batch, cannot hold what ImageNet taught it about whole images.
    `upper_learning_rate`: the learning rate of the layers above the local layer, as a
    fraction of the others' (fine-tuning only)."""

    start: str = "imagenet"
    minutes: float = 30.0
    batch_images: int = 4
    view_size: int = 256
    points_per_image: int = 96
    temperature: float = 0.05
    global_temperature: float = 0.1
    global_weight: float = 0.5
    global_keep: float = 1.0
    reliability_weight: float = 0.2
    upper_learning_rate: float = 1.0
    learning_rate: float = 1e-4
    scratch_learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    checkpoint_seconds: float = 120.0
    max_steps: int | None = None  # stop earlier than the time budget (reproducible runs)
    decode_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise ValueError(f"unknown start {self.start!r}; allowed: {', '.join(STARTS)}")
        if self.minutes <= 0 or self.batch_images < 2:
            raise ValueError("minutes must be positive and batch_images at least 2")
        if self.global_keep < 0 or not 0 <= self.upper_learning_rate <= 1:
            raise ValueError("need global_keep >= 0 and 0 <= upper_learning_rate <= 1")


@dataclass(frozen=True)
class StepLosses:
    total: float
    local: float
    global_: float
    reliability: float
    matched: float  # fraction of points whose correspondence is the mutual nearest neighbour
    keep: float = 0.0  # 1 - cosine of the global descriptors to the ImageNet network's


def _near(points: torch.Tensor, image: torch.Tensor, radius: float) -> torch.Tensor:
    """`(N, N) bool`: points of the same image closer than `radius` pixels to each other."""
    return (torch.cdist(points, points) < radius) & (image[:, None] == image[None, :])


def build_model(features: FeatureSettings, start: str) -> torch.nn.Module:
    """The trainable network: backbone taps plus a strength head on the local layer."""
    layers = sorted({features.local_layer, features.global_layer})
    model = build_backbone(features.backbone, layers, pretrained=start == "imagenet")
    model.add_strength_head(features.local_layer)  # type: ignore[operator]
    return model


def freeze_batch_norm(model: torch.nn.Module) -> None:
    """Batch statistics as ImageNet left them (a fine-tuning batch is a handful of views)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()


@dataclass(frozen=True)
class Batch:
    """One training batch: two views per image and the points that correspond between them.

    views: (2B, S, S, 3) uint8 — the B first views, then the B second views
    points_a, points_b: per image, (P_i, 2) float — pixel (x, y) in view A and its
        correspondence in view B
    """

    views: np.ndarray
    points_a: list[np.ndarray]
    points_b: list[np.ndarray]


def make_batch(
    images: Sequence[np.ndarray], settings: TrainSettings, stride: float, rng: np.random.Generator
) -> Batch:
    """Pairs of views of `images` (each `(H, W, 3) uint8`) and up to
    `settings.points_per_image` corresponding points per pair, kept `stride` pixels (one
    feature-map cell) inside both views."""
    size = settings.view_size
    pairs = [make_pair(image, rng, PairSettings(size=size)) for image in images]
    points_a, points_b = [], []
    for image, pair in zip(images, pairs, strict=True):
        valid_b = warp(np.ones(image.shape[:2], np.float32), pair.to_b, size)[..., 0] > 0.99
        p = rng.uniform(stride, size - stride, size=(settings.points_per_image * 4, 2))
        q = transform_points(pair.homography, p)
        inside = np.all((q >= stride) & (q <= size - 1 - stride), axis=1)
        qi = np.clip(np.round(q), 0, size - 1).astype(int)
        keep = inside & valid_b[qi[:, 1], qi[:, 0]]
        points_a.append(p[keep][: settings.points_per_image])
        points_b.append(q[keep][: settings.points_per_image])
    views = np.stack([p.view_a for p in pairs] + [p.view_b for p in pairs])
    return Batch(views=views, points_a=points_a, points_b=points_b)


def build_teacher(features: FeatureSettings) -> torch.nn.Module:
    """The ImageNet network's global layer, frozen: what `TrainSettings.global_keep` keeps
    the global descriptor near."""
    teacher = build_backbone(features.backbone, [features.global_layer], pretrained=True)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _upper_parameters(model: torch.nn.Module, features: FeatureSettings) -> set[int]:
    """Ids of the parameters of the layers above the local layer (the blocks after it and the
    head), which only the global descriptor reads."""
    net: Any = model.net
    last = model._taps[features.local_layer]  # type: ignore[index]
    upper = [b for i, b in enumerate(net._blocks) if i > last] + [net._conv_head, net._bn1]
    return {id(p) for module in upper for p in module.parameters()}


def parameter_groups(
    model: torch.nn.Module, features: FeatureSettings, settings: TrainSettings, lr: float
) -> list[dict[str, Any]]:
    """The optimiser's parameter groups: the layers above the local layer at
    `settings.upper_learning_rate` times `lr` when fine-tuning, the rest at `lr`."""
    if settings.start != "imagenet" or settings.upper_learning_rate == 1.0:
        return [{"params": list(model.parameters()), "lr": lr}]
    upper = _upper_parameters(model, features)
    params = list(model.parameters())
    return [
        {"params": [p for p in params if id(p) not in upper], "lr": lr},
        {"params": [p for p in params if id(p) in upper], "lr": lr * settings.upper_learning_rate},
    ]


def training_step(
    model: torch.nn.Module,
    batch: Batch,
    features: FeatureSettings,
    settings: TrainSettings,
    teacher: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, StepLosses]:
    """The loss of one batch, ready for `backward()`; `teacher` (`build_teacher`) adds the
    `global_keep` term."""
    device = next(model.parameters()).device
    x = torch.from_numpy(batch.views).to(device).permute(0, 3, 1, 2).float()
    maps = model(x)
    local = maps[features.local_layer]
    strength = maps["strength"]
    stride = settings.view_size / local.shape[-1]
    n = len(batch.points_a)
    desc_a, desc_b, rel_a, rel_b, points_a, points_b, owner = [], [], [], [], [], [], []
    for i, (p, q) in enumerate(zip(batch.points_a, batch.points_b, strict=True)):
        if len(p) == 0:
            continue
        pa = torch.from_numpy(p).float().to(device)
        qb = torch.from_numpy(q).float().to(device)
        points_a.append(pa)
        points_b.append(qb)
        owner.append(torch.full((len(p),), i, device=device))
        desc_a.append(sample_at(local[i], pa, stride))
        desc_b.append(sample_at(local[n + i], qb, stride))
        rel_a.append(sample_at(strength[i], pa, stride)[:, 0])
        rel_b.append(sample_at(strength[n + i], qb, stride)[:, 0])
    da = F.normalize(torch.cat(desc_a), dim=1)
    db = F.normalize(torch.cat(desc_b), dim=1)
    # a point within a cell of the positive is not a negative: the map cannot tell them apart
    image = torch.cat(owner)
    ignore = _near(torch.cat(points_a), image, stride) | _near(torch.cat(points_b), image, stride)
    local_loss, correct = dense_info_nce(da, db, settings.temperature, ignore)
    rel = reliability_loss(torch.cat(rel_a), correct) + reliability_loss(torch.cat(rel_b), correct)
    pooled = F.normalize(gem(maps[features.global_layer], features.gem_p), dim=1)
    global_loss = global_info_nce(pooled[:n], pooled[n:], settings.global_temperature)
    keep = torch.zeros((), device=device)
    if teacher is not None:
        with torch.no_grad():
            taught = F.normalize(gem(teacher(x)[features.global_layer], features.gem_p), dim=1)
        keep = (1.0 - (pooled * taught).sum(dim=1)).mean()
    total = (
        local_loss.mean()
        + settings.global_weight * global_loss
        + settings.reliability_weight * rel / 2
        + settings.global_keep * keep
    )
    return total, StepLosses(
        total=float(total.detach()),
        local=float(local_loss.detach().mean()),
        global_=float(global_loss.detach()),
        reliability=float(rel.detach() / 2),
        matched=float(correct.float().mean()),
        keep=float(keep.detach()),
    )


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _resume(
    checkpoint_path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    meta: dict[str, Any],
    device: str,
    minutes: float,
) -> tuple[int, float, list[dict[str, Any]]]:
    """Load `checkpoint_path` into `model`, `optimizer` and `rng` when it was made with `meta`;
    return the step, elapsed training seconds and history to go on from (0, 0.0, [] afresh)."""
    if not checkpoint_path.is_file():
        return 0, 0.0, []
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    if state.get("meta") != json.loads(json.dumps(meta)):
        logger.warning("%s was made with other settings: starting afresh", checkpoint_path)
        return 0, 0.0, []
    model.load_state_dict(state["model"])
    model.to(device)
    optimizer.load_state_dict(state["optimizer"])
    step, elapsed, history = state["step"], state["elapsed"], state["history"]
    rng.bit_generator.state = state["rng"]
    logger.info("resuming at step %d (%.1f of %.1f minutes)", step, elapsed / 60, minutes)
    return step, elapsed, history


def _save_weights(
    model: torch.nn.Module, features: FeatureSettings, meta: dict[str, Any], path: Path
) -> None:
    """The network's weights alone (on the CPU), with the settings that made them."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_atomic({"model": state, "strength_layer": features.local_layer, "meta": meta}, path)


def _snapshot_path(out_dir: Path, minutes: float) -> Path:
    return out_dir / "snapshots" / f"weights-{minutes:g}min.pt"


def _save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    elapsed: float,
    history: list[dict[str, Any]],
    rng: np.random.Generator,
    meta: dict[str, Any],
) -> None:
    """Everything `_resume` needs to go on: weights, optimizer, step, time, history, rng."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "history": history,
        "rng": rng.bit_generator.state,
        "meta": json.loads(json.dumps(meta)),
    }
    _save_atomic(state, path)


def _next_batch(
    image_paths: Sequence[Path], settings: TrainSettings, stride: float, rng: np.random.Generator
) -> Batch | None:
    """A batch from `settings.batch_images` random images; unreadable ones are skipped (with a
    warning), and None when fewer than two could be read."""
    images = []
    for index in rng.choice(len(image_paths), settings.batch_images, replace=False):
        try:
            images.append(load_image(image_paths[index], max_side=settings.decode_size))
        except ImageError as exc:
            logger.warning("skipping %s", exc)
    return make_batch(images, settings, stride, rng) if len(images) >= 2 else None


def train(
    image_paths: Sequence[Path],
    out_dir: Path,
    features: FeatureSettings,
    settings: TrainSettings,
    *,
    progress: Callable[[float, float, StepLosses], None] | None = None,
    device: str = "cpu",
    snapshots: Sequence[float] = (),
) -> Path:
    """Train for `settings.minutes` (resuming from `out_dir/checkpoint.pt` when its settings
    match) and return the path of the weights file (`out_dir/weights.pt`). `device` is a
    torch device; the CPU is the default and all a user needs. `snapshots` lists training
    minutes at which to also keep the weights (`out_dir/snapshots/weights-<M>min.pt`), to
    follow accuracy along training."""
    if len(image_paths) < settings.batch_images:
        raise ValueError(
            f"{len(image_paths)} images; training needs at least {settings.batch_images}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    model = build_model(features, settings.start).to(device)
    lr = settings.learning_rate if settings.start == "imagenet" else settings.scratch_learning_rate
    optimizer = torch.optim.AdamW(
        parameter_groups(model, features, settings, lr), weight_decay=settings.weight_decay
    )
    fine_tune = settings.start == "imagenet"
    teacher = build_teacher(features).to(device) if fine_tune and settings.global_keep else None
    meta = {"train": dataclasses.asdict(settings), "features": dataclasses.asdict(features)}
    checkpoint_path = out_dir / CHECKPOINT
    rng = np.random.default_rng(settings.seed)
    step, elapsed, history = _resume(
        checkpoint_path, model, optimizer, rng, meta, device, settings.minutes
    )

    if step == 0:  # a fresh run: snapshots of an earlier one would be mistaken for its own
        shutil.rmtree(out_dir / "snapshots", ignore_errors=True)
    due = sorted(m for m in snapshots if not _snapshot_path(out_dir, m).is_file())
    if due and due[0] == 0 and step == 0:
        _save_weights(model, features, meta, _snapshot_path(out_dir, 0))

    model.train()
    if settings.start == "imagenet":
        freeze_batch_norm(model)
    budget = settings.minutes * 60
    last_save = time.monotonic()
    stride = float(LAYER_STRIDES[features.local_layer])

    # the next batch is decoded and warped in a thread while the network trains on this one
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lookalike-batches")
    pending = prefetch.submit(_next_batch, image_paths, settings, stride, rng)
    while elapsed < budget and (settings.max_steps is None or step < settings.max_steps):
        t0 = time.monotonic()
        batch = pending.result()
        pending = prefetch.submit(_next_batch, image_paths, settings, stride, rng)
        if batch is None:
            continue
        loss, parts = training_step(model, batch, features, settings, teacher)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        elapsed += time.monotonic() - t0
        history.append({"step": step, "seconds": round(elapsed, 2), **dataclasses.asdict(parts)})
        if progress is not None:
            progress(elapsed, budget, parts)
        for minutes in [m for m in due if 0 < m * 60 <= elapsed]:
            _save_weights(model, features, meta, _snapshot_path(out_dir, minutes))
            due.remove(minutes)
        if time.monotonic() - last_save > settings.checkpoint_seconds:
            _save_checkpoint(checkpoint_path, model, optimizer, step, elapsed, history, rng, meta)
            last_save = time.monotonic()
    prefetch.shutdown(wait=True, cancel_futures=True)
    _save_checkpoint(checkpoint_path, model, optimizer, step, elapsed, history, rng, meta)
    weights = out_dir / "weights.pt"
    _save_weights(model, features, meta, weights)
    (out_dir / HISTORY).write_text(json.dumps(history))
    return weights
