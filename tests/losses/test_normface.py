"""NormFace, L2 (seed 000 eq. 2): −log e^{s cos θ_y} / (e^{s cos θ_y} + Σ_{j≠y} e^{s cos θ_j})."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib.losses import NormFace


def l2_logits(s):
    def logits(cos, y):
        return s * cos  # target and non-target alike: W_jᵀx = s·cos θ_j
    return logits


@pytest.mark.parametrize("s", [16.0, 1.0, 30.5])
def test_matches_l2(ref, s):
    ref.check_formula(lambda **kw: NormFace(s=s, **kw), l2_logits(s))


def test_matches_l2_with_angles_taken_explicitly(ref):
    """The same formula written through θ = arccos(W_jᵀx), as the seed's pipeline computes it."""
    rng = np.random.default_rng(11)
    n, c = 10, 7
    cos = rng.uniform(-1, 1, (n, c))
    y = rng.integers(0, c, n)
    z = 8.0 * np.cos(ref.angles(cos))
    got = NormFace(s=8.0)(torch.from_numpy(cos), torch.from_numpy(y), reduction="none")
    np.testing.assert_allclose(got.numpy(), ref.cross_entropy(z, y), rtol=1e-9)


def test_gradient_wrt_cosines():
    """∂L/∂cos θ_j = s·(p_j − [j = y]) with p the softmax of s·cos θ."""
    rng = np.random.default_rng(5)
    cos = torch.from_numpy(rng.uniform(-1, 1, (6, 5))).requires_grad_()
    y = torch.from_numpy(rng.integers(0, 5, 6))
    NormFace(s=4.0)(cos, y, reduction="sum").backward()
    want = 4.0 * (torch.softmax(4.0 * cos.detach(), 1) - torch.nn.functional.one_hot(y, 5))
    torch.testing.assert_close(cos.grad, want)


def test_scale_of_features_and_weights_does_not_matter():
    torch.manual_seed(0)
    loss = NormFace(num_classes=6, embedding_dim=4).double()
    x = torch.randn(9, 4, dtype=torch.float64)
    y = torch.randint(0, 6, (9,))
    before = loss(x, y)
    with torch.no_grad():
        loss.head.weight.mul_(torch.rand(6, 1, dtype=torch.float64) * 10 + 0.1)
    after = loss(x * 17.0, y)
    torch.testing.assert_close(before, after)


def test_target_logit(ref):
    loss = NormFace(s=16.0)
    ref.check_target_logit(loss, np.cos, lambda t: -np.sin(t), s=16.0)
    theta = torch.linspace(0, math.pi, 7, dtype=torch.float64)
    torch.testing.assert_close(loss.other_logit(theta), 16.0 * torch.cos(theta))
