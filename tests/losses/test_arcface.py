"""ArcFace, L3 (seed 000 eq. 3): −log e^{s cos(θ_y + m)} / (e^{s cos(θ_y + m)} + Σ_{j≠y} e^{s cos θ_j}).

Past θ* = π − m, cos(θ + m) turns back up; ``tail`` picks what ψ does there (see arclib.losses.arcface).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import ArcFaceLoss

from arclib.losses import TAILS, ArcFace, NormFace


def psi_ref(m, tail):
    """ψ(θ) of L3, with each tail written from its definition."""
    def psi(theta):
        raw = np.cos(theta + m)
        beyond = theta > math.pi - m
        if tail == "none" or tail == "straight_through":
            return raw
        if tail == "continuous":  # CosFace-like tail through (θ*, −1): cos θ − cos θ* − 1, cos θ* = −cos m
            return np.where(beyond, np.cos(theta) + math.cos(m) - 1, raw)
        if tail == "fallback":  # InsightFace's original code
            return np.where(beyond, np.cos(theta) - m * math.sin(m), raw)
        if tail == "easy":
            return np.where(np.cos(theta) > 0, raw, np.cos(theta))
        raise AssertionError(tail)
    return psi


def l3_logits(s, m, tail="none"):
    def logits(cos, y):
        z = s * cos
        rows = np.arange(len(y))
        theta = np.arccos(np.clip(cos[rows, y], -1, 1))  # θ = arccos(cos θ), then θ + m, then cos
        z[rows, y] = s * psi_ref(m, tail)(theta)
        return z
    return logits


@pytest.mark.parametrize(("s", "m"), [(64.0, 0.5), (30.0, 0.2), (8.0, 1.2), (16.0, 0.0)])
def test_matches_l3(ref, s, m):
    """The textbook L3, with tail="none", on cosines over all of [−1, 1] and on features."""
    ref.check_formula(lambda **kw: ArcFace(s=s, m=m, tail="none", **kw), l3_logits(s, m))


@pytest.mark.parametrize("tail", TAILS)
def test_matches_l3_with_each_tail(ref, tail):
    ref.check_formula(lambda **kw: ArcFace(s=20.0, m=0.6, tail=tail, **kw), l3_logits(20.0, 0.6, tail))


def test_default_tail_agrees_with_l3_below_theta_star(ref):
    """Where θ_y ≤ π − m all tails are L3 itself; check the default on cosines kept there."""
    m = 0.5
    ref.check_formula(lambda **kw: ArcFace(s=64.0, m=m, **kw), l3_logits(64.0, m),
                      cos_low=-math.cos(m) + 1e-6, features=False)


@pytest.mark.parametrize("tail", TAILS)
def test_m0_is_normface(tail):
    rng = np.random.default_rng(4)
    cos = torch.from_numpy(rng.uniform(-1, 1, (30, 7)))
    y = torch.from_numpy(rng.integers(0, 7, 30))
    torch.testing.assert_close(ArcFace(s=30.0, m=0.0, tail=tail)(cos, y, reduction="none"),
                               NormFace(s=30.0)(cos, y, reduction="none"), rtol=1e-10, atol=1e-10)


# ---- the tails, each by its defining property ----------------------------------------------------------

THETA = torch.linspace(0, math.pi, 20001, dtype=torch.float64)


@pytest.mark.parametrize("m", [0.1, 0.5, 1.0, math.pi / 2])
def test_tail_continuous_is_continuous_and_monotone(m):
    loss = ArcFace(s=1.0, m=m, tail="continuous")
    psi = loss.psi(THETA)
    step = psi.diff()
    assert (step <= 1e-12).all(), "ψ must be non-increasing on [0, π]"
    assert step.abs().max().item() < 1e-3, "ψ must have no jump"
    theta_star = math.pi - m
    at = torch.tensor([theta_star - 1e-9, theta_star, theta_star + 1e-9], dtype=torch.float64)
    vals = loss.psi(at)
    torch.testing.assert_close(vals, torch.full_like(vals, -1.0), rtol=0, atol=1e-8)
    # its slope past θ* is NormFace's −sin θ, never 0 inside (θ*, π)
    theta = torch.linspace(theta_star + 1e-3, math.pi - 1e-3, 50, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss.psi(theta).sum(), theta)
    torch.testing.assert_close(grad, -torch.sin(theta.detach()))
    assert (grad < 0).all()


@pytest.mark.parametrize("m", [0.2, 0.5, 1.0])
def test_tail_fallback_past_theta_star(m):
    loss = ArcFace(s=1.0, m=m, tail="fallback")
    psi = loss.psi(THETA)
    beyond = THETA > math.pi - m
    torch.testing.assert_close(psi[beyond], torch.cos(THETA[beyond]) - m * math.sin(m))
    torch.testing.assert_close(psi[~beyond], torch.cos(THETA[~beyond] + m))
    assert (psi.diff() <= 1e-12).all()  # monotone, ...
    jump = psi[beyond][0] - psi[~beyond][-1]
    assert jump.item() == pytest.approx(-math.cos(m) - m * math.sin(m) + 1, abs=1e-3)  # ... with a jump down


@pytest.mark.parametrize("m", [0.3, 0.5])
def test_tail_straight_through_value_and_gradient(m):
    loss = ArcFace(s=1.0, m=m, tail="straight_through")
    theta = THETA[::100].clone().requires_grad_()
    psi = loss.psi(theta)
    torch.testing.assert_close(psi.detach(), torch.cos(theta.detach() + m))
    (grad,) = torch.autograd.grad(psi.sum(), theta)
    torch.testing.assert_close(grad, -torch.sin(theta.detach()))  # NormFace's slope, not −sin(θ + m)


def test_tail_straight_through_gradient_wrt_cosines_is_normface():
    rng = np.random.default_rng(9)
    cos = torch.from_numpy(rng.uniform(-0.99, 0.99, (12, 6)))
    y = torch.from_numpy(rng.integers(0, 6, 12))
    c1 = cos.clone().requires_grad_()
    ArcFace(s=10.0, m=0.5, tail="straight_through")(c1, y, reduction="sum").backward()
    # same value as L3, so the softmax p is L3's; the target column's slope is ∂cos θ/∂cos θ = 1
    z = 10.0 * cos.clone()
    rows = torch.arange(12)
    z[rows, y] = 10.0 * torch.cos(torch.acos(cos[rows, y]) + 0.5)
    want = 10.0 * (torch.softmax(z, 1) - torch.nn.functional.one_hot(y, 6))
    torch.testing.assert_close(c1.grad, want)


@pytest.mark.parametrize("m", [0.2, 0.5, 1.2])
def test_tail_easy_margin_only_where_cos_positive(m):
    loss = ArcFace(s=1.0, m=m, tail="easy")
    psi = loss.psi(THETA)
    pos = torch.cos(THETA) > 0
    torch.testing.assert_close(psi[pos], torch.cos(THETA[pos] + m))
    torch.testing.assert_close(psi[~pos], torch.cos(THETA[~pos]))


@pytest.mark.parametrize("m", [0.2, 0.5, 1.2])
def test_tail_none_is_raw_and_rises_past_theta_star(m):
    loss = ArcFace(s=1.0, m=m, tail="none")
    psi = loss.psi(THETA)
    torch.testing.assert_close(psi, torch.cos(THETA + m))
    assert (psi[THETA > math.pi - m + 1e-3].diff() > 0).all()  # the non-monotone part QAMFace Fig. 1 shows


@pytest.mark.parametrize("tail", TAILS)
def test_target_logit(ref, tail):
    m, s = 0.5, 64.0

    def dpsi(t):
        raw = -np.sin(t + m)
        if tail == "straight_through":
            return -np.sin(t)
        if tail in ("continuous", "fallback"):
            return np.where(t > math.pi - m, -np.sin(t), raw)
        if tail == "easy":
            return np.where(np.cos(t) > 0, raw, -np.sin(t))
        return raw

    ref.check_target_logit(ArcFace(s=s, m=m, tail=tail), psi_ref(m, tail), dpsi, s=s)


# ---- oracle: pytorch-metric-learning's ArcFaceLoss ------------------------------------------------------

def _pml_pair(c, d, s, m, tail, dtype):
    ours = ArcFace(s=s, m=m, tail=tail, num_classes=c, embedding_dim=d).to(dtype)
    with torch.no_grad():  # unit rows: the loss is the same, and the W-gradient carries no 1/‖W_j‖ blow-up
        ours.head.weight.copy_(torch.nn.functional.normalize(ours.head.weight, dim=1))
    # PML: margin in degrees, W of shape (embedding_size, num_classes), fallback cos θ − m·sin m past π − m
    pml = ArcFaceLoss(num_classes=c, embedding_size=d, margin=math.degrees(m), scale=s)
    with torch.no_grad():
        pml.W.copy_(ours.head.weight.detach().T)
    return ours, pml


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("seed", "d", "tail"), [(0, 2, "fallback"), (1, 3, "fallback"), (2, 64, "fallback"),
                                                 (3, 64, "none"), (4, 128, "none")])
def test_agrees_with_pytorch_metric_learning(ref, seed, d, tail, dtype):
    """Loss and gradients (features and W) match PML with the same W.

    PML applies the original fallback past θ* = π − m, so tail="fallback" matches it everywhere (d = 2, 3 put
    many samples past θ*); tail="none" is compared where every target angle stays below θ* (large d).
    """
    gen = torch.Generator().manual_seed(seed)
    n, c, s, m = 64, int(torch.randint(2, 60, (1,), generator=gen)), 32.0, 0.5
    ours, pml = _pml_pair(c, d, s, m, tail, dtype)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    y = torch.randint(0, c, (n,), generator=gen)
    with torch.no_grad():
        # Both libraries take θ = arccos(cos θ) and differentiate through it: ∂θ/∂cos θ = −1/sin θ, times a
        # tangent vector of length ~sin θ. For a target a few mrad from 0 or π (d = 2 has such samples) float32
        # then loses digits in arclib and PML alike; leave those samples out of the comparison.
        theta_y = torch.acos(ours.head(x).gather(1, y[:, None]).clamp(-1, 1)).squeeze(1)
        keep = (theta_y > 0.05) & (theta_y < math.pi - 0.05)
        x, y = x[keep], y[keep]
        cos_y = ours.head(x).gather(1, y[:, None])
    past = (torch.acos(cos_y.clamp(-1, 1)) > math.pi - m).sum().item()
    if tail == "none":
        assert past == 0
    elif d == 2:
        assert past > 0  # the comparison really covers the tail
    ref.check_oracle(ours, pml, x, y, lambda: pml.W.grad.T)
