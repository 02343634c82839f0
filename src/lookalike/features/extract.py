"""Feature extraction: one image in, local features and a global descriptor out."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lookalike.backbones import build_backbone
from lookalike.features.engine import Network, build_network, chosen_engine
from lookalike.features.global_ import multiscale_gem
from lookalike.features.local import LocalFeatures, select_strongest
from lookalike.settings import FeatureSettings

logger = logging.getLogger("lookalike")

_MIN_SIDE = 32
"""Smallest side fed to the backbone: the EfficientNet-Lite 5x5 convolutions fail on the
feature maps of a narrower input (a 1x20000 strip would otherwise crash the extraction)."""


PRECISIONS = ("auto", "float32", "bfloat16")


def use_bfloat16(precision: str | None = None) -> bool:
    """Whether to run the network in bfloat16 for `precision` (None: `$LOOKALIKE_PRECISION`,
    else 'auto'); an unknown name is an error naming the allowed."""
    chosen = precision or os.environ.get("LOOKALIKE_PRECISION") or "auto"
    if chosen not in PRECISIONS:
        raise ValueError(f"unknown precision {chosen!r}; allowed: {', '.join(PRECISIONS)}")
    return chosen == "bfloat16" or (chosen == "auto" and native_bfloat16())


def native_bfloat16() -> bool:
    """Whether this processor computes in bfloat16 natively (AVX-512 BF16 or AMX), where the
    network runs about twice as fast in it as in float32."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


@dataclass(frozen=True)
class ImageFeatures:
    """What is read off one image: `local` features and `global_: (G,) float32` (unit norm)."""

    local: LocalFeatures
    global_: np.ndarray


class Extractor:
    """Holds the backbone (built on first use) and turns RGB arrays into `ImageFeatures`.

    `precision` of the network's arithmetic (default: `$LOOKALIKE_PRECISION`, else 'auto'):
    'bfloat16' halves the time where the processor computes in it natively (AVX-512 BF16 or
    AMX) and gives descriptors within a cosine of 0.99 of float32's; 'auto' uses it there and
    'float32' elsewhere. `engine` runs the network (`features.engine`: default
    `$LOOKALIKE_ENGINE`, else OpenVINO where it is installed, else PyTorch). Both are how
    features are computed, not what they are: an index and its queries may be computed either
    way.
    """

    def __init__(
        self,
        settings: FeatureSettings,
        *,
        weights: str | Path | None = None,
        threads: int = 0,
        precision: str | None = None,
        engine: str | None = None,
    ) -> None:
        self.settings = settings
        self.weights = weights
        self.threads = threads
        self._model: torch.nn.Module | None = None
        self._network: Network | None = None
        self.bfloat16 = use_bfloat16(precision)
        self.engine = chosen_engine(engine)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            if self.threads:
                torch.set_num_threads(self.threads)
            layers = sorted({self.settings.local_layer, self.settings.global_layer})
            model = build_backbone(self.settings.backbone, layers, weights=self.weights)
            optimize = getattr(model, "optimize_for_inference", None)
            model = optimize() if optimize else model
            self._model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return self._model

    @property
    def network(self) -> Network:
        """What runs `model` (`features.engine`), built on first use."""
        if self._network is None:
            self._network = build_network(
                self.model, engine=self.engine, threads=self.threads, bfloat16=self.bfloat16
            )
        return self._network

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the image at scale 1: longer side = `image_size`."""
        factor = self.settings.image_size / max(height, width)
        return max(1, round(height * factor)), max(1, round(width * factor))

    @torch.inference_mode()
    def extract(self, image: np.ndarray, scales: tuple[float, ...] | None = None) -> ImageFeatures:
        """`image: (H, W, 3) uint8` RGB -> features; positions are in pixels of `image`.
        `scales`: read it at these instead of the settings' scales."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        s = self.settings
        network = self.network  # built first: it sets the thread count the resizing runs on
        height, width = image.shape[:2]
        base_h, base_w = self.working_size(height, width)
        x0 = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        local_maps: list[torch.Tensor] = []
        global_maps: list[torch.Tensor] = []
        strength_maps: list[torch.Tensor] = []
        scales = s.scales if scales is None else scales
        for scale in scales:
            size = (max(_MIN_SIDE, round(base_h * scale)), max(_MIN_SIDE, round(base_w * scale)))
            shrink = size[0] < height
            x = F.interpolate(x0, size=size, mode="bilinear", antialias=shrink, align_corners=False)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
                maps = network(x.contiguous(memory_format=torch.channels_last))
            local_maps.append(maps[s.local_layer].float())
            global_maps.append(maps[s.global_layer].float())
            if "strength" in maps:
                strength_maps.append(maps["strength"].float())
        local = select_strongest(
            local_maps, list(scales), (height, width), s.max_features, strength_maps or None
        )
        global_ = multiscale_gem(global_maps, s.gem_p).numpy().astype(np.float32)
        return ImageFeatures(local=local, global_=global_)
