"""Self-supervised objectives: dense contrastive matching of local descriptors between two
views with known correspondences, a reliability target for the strength head, and a global
contrastive loss between views of the same image."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_at(feature_map: torch.Tensor, points: torch.Tensor, stride: float) -> torch.Tensor:
    """Bilinear read of `feature_map: (C, h, w)` at pixel `points: (N, 2)` (x, y) of the image
    the map was computed from (`stride` pixels per cell, cell centres at (i + 0.5) * stride)
    -> `(N, C)`."""
    if feature_map.ndim != 3 or points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"need (C, h, w) and (N, 2), got {feature_map.shape}, {points.shape}")
    _, h, w = feature_map.shape
    # pixel -> cell coordinate -> [-1, 1] with align_corners=False
    gx = (points[:, 0] / stride) / w * 2 - 1
    gy = (points[:, 1] / stride) / h * 2 - 1
    grid = torch.stack([gx, gy], dim=1).view(1, 1, -1, 2).to(feature_map.dtype)
    out = F.grid_sample(feature_map[None], grid, mode="bilinear", align_corners=False)
    return out[0, :, 0].T


def dense_info_nce(
    desc_a: torch.Tensor,
    desc_b: torch.Tensor,
    temperature: float,
    ignore: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over corresponding rows: `desc_a[i]` matches `desc_b[i]`, every other row of
    `desc_b` (other points, other images) is a negative, and symmetrically.

    desc_a, desc_b: (N, D), L2-normalised. `ignore: (N, N) bool`, optional, marks pairs that
    are neither positive nor negative (points too close to the positive to be told apart);
    the diagonal is never ignored. Returns (per-row loss `(N,)`, per-row
    `correct: (N,) bool` — the positive is the nearest neighbour in both directions).
    """
    if desc_a.shape != desc_b.shape or desc_a.ndim != 2:
        raise ValueError(f"descriptor sets disagree: {desc_a.shape} vs {desc_b.shape}")
    logits = desc_a @ desc_b.T / temperature
    if ignore is not None:
        if ignore.shape != logits.shape:
            raise ValueError(f"ignore must be {tuple(logits.shape)}, got {tuple(ignore.shape)}")
        eye = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(ignore & ~eye, float("-inf"))
    target = torch.arange(len(desc_a), device=desc_a.device)
    loss = 0.5 * (
        F.cross_entropy(logits, target, reduction="none")
        + F.cross_entropy(logits.T, target, reduction="none")
    )
    correct = (logits.argmax(dim=1) == target) & (logits.argmax(dim=0) == target)
    return loss, correct


def reliability_loss(strength_logits: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """The strength head learns to predict which locations match correctly across views:
    binary cross-entropy of `strength_logits: (N,)` against `correct: (N,) bool`."""
    return F.binary_cross_entropy_with_logits(strength_logits, correct.float())


def global_info_nce(
    global_a: torch.Tensor, global_b: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Views of one image together, other images apart: `(B, G)` unit vectors each."""
    loss, _ = dense_info_nce(global_a, global_b, temperature)
    return loss.mean()
