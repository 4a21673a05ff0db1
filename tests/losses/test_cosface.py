"""CosFace / AM-Softmax (seed 000 eq. 4): −log e^{s(cos θ_y − m)} / (e^{s(cos θ_y − m)} + Σ_{j≠y} e^{s cos θ_j})."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import CosFaceLoss

from arclib.losses import CosFace, NormFace


def lmc_logits(s, m):
    def logits(cos, y):
        z = s * cos
        z[np.arange(len(y)), y] = s * (cos[np.arange(len(y)), y] - m)
        return z
    return logits


@pytest.mark.parametrize(("s", "m"), [(64.0, 0.35), (30.0, 0.1), (10.0, 0.0), (5.0, 1.5)])
def test_matches_eq4(ref, s, m):
    ref.check_formula(lambda **kw: CosFace(s=s, m=m, **kw), lmc_logits(s, m))


def test_m0_is_normface():
    rng = np.random.default_rng(2)
    cos = torch.from_numpy(rng.uniform(-1, 1, (10, 6)))
    y = torch.from_numpy(rng.integers(0, 6, 10))
    torch.testing.assert_close(CosFace(s=12.0, m=0.0)(cos, y), NormFace(s=12.0)(cos, y))


def test_target_logit(ref):
    loss = CosFace(s=64.0, m=0.35)
    ref.check_target_logit(loss, lambda t: np.cos(t) - 0.35, lambda t: -np.sin(t), s=64.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pytorch_metric_learning(ref, seed, dtype):
    """PML's CosFaceLoss (W stored as (embedding_size, num_classes), mean over the batch) with the same W."""
    gen = torch.Generator().manual_seed(seed)
    n, c, d = 32, int(torch.randint(2, 50, (1,), generator=gen)), 16
    ours = CosFace(s=30.0, m=0.25, num_classes=c, embedding_dim=d).to(dtype)
    pml = CosFaceLoss(num_classes=c, embedding_size=d, margin=0.25, scale=30.0)
    with torch.no_grad():
        pml.W.copy_(ours.head.weight.detach().T)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    y = torch.randint(0, c, (n,), generator=gen)
    ref.check_oracle(ours, pml, x, y, lambda: pml.W.grad.T)


def test_negative_margin_is_allowed_and_loosens_the_target():
    """m < 0 (Liu et al., "Negative Margin Matters", ECCV 2020): the target logit s(cos θ + |m|) is *above*
    NormFace's, so the loss is lower; the refusal bound is m >= -1."""
    cos = torch.tensor([[0.5, 0.1, -0.2]], dtype=torch.float64)
    labels = torch.tensor([0])
    negative = CosFace(s=16.0, m=-0.2)(cos, labels)
    expected = -torch.log_softmax(16.0 * torch.tensor([[0.7, 0.1, -0.2]], dtype=torch.float64), dim=1)[0, 0]
    torch.testing.assert_close(negative, expected)
    assert negative < CosFace(s=16.0, m=0.0)(cos, labels)
