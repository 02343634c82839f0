"""Local convolutional features: the strongest feature-map locations over several scales."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LocalFeatures:
    """Local features of one image, strongest first.

    xy: (N, 2) float32 — centre of the feature's receptive cell, in pixels of the decoded image
    scale: (N,) float32 — the image scale the feature was read at (1 = working size)
    strength: (N,) float32 — activation norm, the feature's attention weight
    desc: (N, D) float16 or float32 — descriptors (raw layer activations, L2-normalised)
    """

    xy: np.ndarray
    scale: np.ndarray
    strength: np.ndarray
    desc: np.ndarray

    def __post_init__(self) -> None:
        n = self.desc.shape[0]
        if self.desc.ndim != 2:
            raise ValueError(f"desc must be (N, D), got {self.desc.shape}")
        if self.xy.shape != (n, 2) or self.scale.shape != (n,) or self.strength.shape != (n,):
            raise ValueError(
                f"shapes disagree: xy {self.xy.shape}, scale {self.scale.shape}, "
                f"strength {self.strength.shape}, desc {self.desc.shape}"
            )

    def __len__(self) -> int:
        return int(self.desc.shape[0])


def select_strongest(
    feature_maps: list[torch.Tensor],
    scales: list[float],
    image_hw: tuple[int, int],
    k: int,
    strength_maps: list[torch.Tensor] | None = None,
) -> LocalFeatures:
    """The `k` strongest locations over all scales.

    feature_maps: one `(1, C, h_s, w_s)` map per scale, read from the image resized by `scales[s]`
    relative to `image_hw` (the decoded image's height and width). Strength is the activation
    norm, times the sigmoid of `strength_maps` (one `(1, 1, h_s, w_s)` map of logits per scale,
    from a learned strength head) when given. Returns float32 descriptors, L2-normalised, with
    positions in `image_hw` pixels.
    """
    if len(feature_maps) != len(scales):
        raise ValueError(f"{len(feature_maps)} feature maps but {len(scales)} scales")
    height, width = image_hw
    descs, xys, scale_ids = [], [], []
    for fm, s in zip(feature_maps, scales, strict=True):
        if fm.ndim != 4 or fm.shape[0] != 1:
            raise ValueError(f"feature map must be (1, C, h, w), got {tuple(fm.shape)}")
        _, c, h, w = fm.shape
        descs.append(fm[0].reshape(c, h * w).T)
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) * (height / h)
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) * (width / w)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        xys.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        scale_ids.append(torch.full((h * w,), s, dtype=torch.float32))
    desc = torch.cat(descs)
    norms = desc.norm(dim=1)
    strength = norms
    if strength_maps is not None:
        # modulated, not replaced: an untrained head (logits 0) keeps the norm's ranking
        strength = norms * torch.cat([torch.sigmoid(m[0, 0]).reshape(-1) for m in strength_maps])
    top = strength.topk(min(k, len(strength))).indices
    desc = desc[top] / norms[top, None].clamp(min=1e-12)
    return LocalFeatures(
        xy=torch.cat(xys)[top].numpy(),
        scale=torch.cat(scale_ids)[top].numpy(),
        strength=strength[top].numpy(),
        desc=desc.numpy(),
    )
