"""A registry of feature extractors: name -> builder(layers) returning an `nn.Module`.

Each module maps `x: (B, 3, H, W) float32 RGB 0..255` to a dict of named feature maps, and
exposes `channels: dict[str, int]`. Nothing is built or read at import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn

from lookalike.backbones import efficientnet

Builder = Callable[..., nn.Module]

BACKBONES: dict[str, Builder] = {
    "efficientnet_lite0": partial(efficientnet.build, "lite0"),
    "efficientnet_lite1": partial(efficientnet.build, "lite1"),
    "efficientnet_lite2": partial(efficientnet.build, "lite2"),
}


def build_backbone(
    name: str, layers: Sequence[str], *, weights: str | Path | None = None, pretrained: bool = True
) -> nn.Module:
    """Build backbone `name` tapping `layers`; `weights`: a state dict file (from training)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; allowed: {sorted(BACKBONES)}")
    model = BACKBONES[name](layers, pretrained=pretrained and weights is None)
    if weights is not None:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        layer = checkpoint.get("strength_layer") if isinstance(checkpoint, dict) else None
        if layer:
            model.add_strength_head(layer)  # type: ignore[operator]
        model.load_state_dict(checkpoint.get("model", checkpoint))
    return model.eval()
