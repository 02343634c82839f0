"""Self-supervised objectives on hand-built inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lookalike.learn.losses import dense_info_nce, global_info_nce, reliability_loss, sample_at


def test_sample_at_reads_cell_centres_exactly() -> None:
    fmap = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    stride = 16.0
    # the centre of cell (row 1, col 2) is pixel (2.5 * 16, 1.5 * 16)
    points = torch.tensor([[2.5 * stride, 1.5 * stride], [0.5 * stride, 0.5 * stride]])
    out = sample_at(fmap, points, stride)
    assert out.shape == (2, 2)
    torch.testing.assert_close(out[0], fmap[:, 1, 2])
    torch.testing.assert_close(out[1], fmap[:, 0, 0])
    # half way between two cells: their mean
    mid = sample_at(fmap, torch.tensor([[2.0 * stride, 1.5 * stride]]), stride)
    torch.testing.assert_close(mid[0], (fmap[:, 1, 1] + fmap[:, 1, 2]) / 2)


def test_info_nce_values_on_hand_built_sets() -> None:
    eye = torch.eye(4)
    loss, correct = dense_info_nce(eye, eye, temperature=1.0)
    # logits: 1 on the diagonal, 0 elsewhere -> loss = -log(e / (e + 3))
    expected = -math.log(math.e / (math.e + 3))
    torch.testing.assert_close(loss, torch.full((4,), expected))
    assert correct.all()
    shuffled = eye[[1, 0, 2, 3]]
    loss2, correct2 = dense_info_nce(eye, shuffled, temperature=1.0)
    assert correct2.tolist() == [False, False, True, True]
    assert (loss2[:2] > loss[:2]).all()


def test_info_nce_gradient_pulls_matches_together() -> None:
    torch.manual_seed(0)
    a = F.normalize(torch.randn(16, 8), dim=1).requires_grad_()
    b = F.normalize(torch.randn(16, 8), dim=1)
    before = (a * b).sum(1).mean().item()
    opt = torch.optim.SGD([a], lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        loss, _ = dense_info_nce(F.normalize(a, dim=1), b, temperature=0.1)
        loss.mean().backward()
        opt.step()
    after = (F.normalize(a, dim=1) * b).sum(1).mean().item()
    assert after > before + 0.3


def test_reliability_and_global_losses() -> None:
    logits = torch.tensor([5.0, -5.0])
    assert reliability_loss(logits, torch.tensor([True, False])) < 0.01
    assert reliability_loss(logits, torch.tensor([False, True])) > 4.9
    g = F.normalize(torch.randn(6, 32), dim=1)
    assert global_info_nce(g, g, 0.05) < global_info_nce(g, g.roll(1, 0), 0.05)
    with pytest.raises(ValueError):
        dense_info_nce(torch.zeros(3, 4), torch.zeros(2, 4), 0.1)


def test_info_nce_ignores_masked_pairs_but_never_the_positive() -> None:
    torch.manual_seed(0)
    a = F.normalize(torch.randn(4, 8), dim=1)
    b = F.normalize(torch.randn(4, 8), dim=1)
    b[1] = b[0]  # a near duplicate of row 0's positive: it would be a confusing negative
    ignore = torch.zeros(4, 4, dtype=torch.bool)
    ignore[0, 1] = ignore[1, 0] = True
    ignore[2, 2] = True  # the diagonal is never ignored
    loss, _ = dense_info_nce(a, b, 0.1, ignore)
    full, _ = dense_info_nce(a, b, 0.1)
    # rows 2 and 3 see all four columns in both directions: unchanged
    assert torch.allclose(loss[2:], full[2:])
    # row 0 without column 1: by hand, both directions
    logits = a @ b.T / 0.1
    keep = [0, 2, 3]
    row = -torch.log_softmax(logits[0, keep], 0)[0]
    col = -torch.log_softmax(logits[keep, 0], 0)[0]
    assert torch.isclose(loss[0], 0.5 * (row + col))
    assert loss[0] < full[0]
    with pytest.raises(ValueError, match="ignore"):
        dense_info_nce(a, b, 0.1, torch.zeros(3, 3, dtype=torch.bool))
