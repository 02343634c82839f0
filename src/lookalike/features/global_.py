"""Global descriptors: generalised-mean (GeM) pooling of feature maps."""

from __future__ import annotations

import torch


def gem(feature_map: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """GeM pooling (Radenović et al.): `(B, C, H, W)` -> `(B, C)`; p=1 is average, p→∞ max."""
    if feature_map.ndim != 4:
        raise ValueError(f"feature_map must be (B, C, H, W), got {tuple(feature_map.shape)}")
    pooled = feature_map.clamp(min=eps).pow(p).mean(dim=(-2, -1))
    return pooled.pow(1.0 / p)


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Scale vectors along `dim` to unit L2 norm (zero vectors stay zero)."""
    return x / x.norm(dim=dim, keepdim=True).clamp(min=eps)


def multiscale_gem(feature_maps: list[torch.Tensor], p: float = 3.0) -> torch.Tensor:
    """Sum over scales of L2-normalised GeM vectors, normalised again.

    `feature_maps`: one `(1, C, H_s, W_s)` map per scale -> `(C,)` unit vector.
    """
    if not feature_maps:
        raise ValueError("multiscale_gem needs at least one feature map")
    pooled = torch.stack([l2_normalize(gem(fm, p))[0] for fm in feature_maps])
    return l2_normalize(pooled.sum(0))
