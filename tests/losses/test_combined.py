"""Combined margin (ArcFace paper eq. 4, InsightFace): ψ(θ) = cos(m1·θ + m2) − m3."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib.losses import TAILS, ArcFace, Combined, CosFace, SphereFace


def psi_ref(m1, m2, m3, tail="none"):
    def psi(theta):
        raw = np.cos(m1 * theta + m2) - m3
        theta_star = (math.pi - m2) / m1  # where m1·θ + m2 reaches π
        if tail == "continuous":  # past θ*: cos θ − cos θ* − 1 − m3, meeting the curve at −1 − m3
            return np.where(theta > theta_star, np.cos(theta) - math.cos(theta_star) - 1 - m3, raw)
        if tail == "none":
            return raw
        raise AssertionError(tail)
    return psi


def logits_ref(s, m1, m2, m3, tail="none"):
    def logits(cos, y):
        z = s * cos
        rows = np.arange(len(y))
        z[rows, y] = s * psi_ref(m1, m2, m3, tail)(np.arccos(np.clip(cos[rows, y], -1, 1)))
        return z
    return logits


PARAMS = [(64.0, 1.0, 0.3, 0.2), (30.0, 1.0, 0.5, 0.0), (30.0, 1.0, 0.0, 0.35), (20.0, 2.0, 0.2, 0.1),
          (16.0, 1.35, 0.0, 0.0), (10.0, 0.9, 0.4, 0.5)]


@pytest.mark.parametrize(("s", "m1", "m2", "m3"), PARAMS)
@pytest.mark.parametrize("tail", ["none", "continuous"])
def test_matches_formula(ref, s, m1, m2, m3, tail):
    ref.check_formula(lambda **kw: Combined(s=s, m1=m1, m2=m2, m3=m3, tail=tail, **kw),
                      logits_ref(s, m1, m2, m3, tail))


def _cos_labels(seed, n=40, c=9):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-1, 1, (n, c))), torch.from_numpy(rng.integers(0, c, n))


@pytest.mark.parametrize("tail", TAILS)
def test_1_m_0_is_arcface(tail):
    cos, y = _cos_labels(0)
    torch.testing.assert_close(Combined(s=32.0, m1=1.0, m2=0.45, m3=0.0, tail=tail)(cos, y, reduction="none"),
                               ArcFace(s=32.0, m=0.45, tail=tail)(cos, y, reduction="none"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m", [0.0, 0.35, 1.0])
def test_1_0_m_is_cosface(m):
    cos, y = _cos_labels(1)
    torch.testing.assert_close(Combined(s=32.0, m1=1.0, m2=0.0, m3=m)(cos, y, reduction="none"),
                               CosFace(s=32.0, m=m)(cos, y, reduction="none"), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_m_0_0_is_sphereface_cos_m_theta_below_pi_over_m(m):
    cos, y = _cos_labels(m)
    rows = torch.arange(len(y))
    cos[rows, y] = torch.cos(torch.rand(len(y), dtype=torch.float64, generator=torch.Generator().manual_seed(m))
                             * math.pi / m)  # θ_y ≤ π/m, where SphereFace's ψ is cos(mθ)
    torch.testing.assert_close(Combined(s=16.0, m1=float(m), m2=0.0, m3=0.0)(cos, y, reduction="none"),
                               SphereFace(s=16.0, m=m)(cos, y, reduction="none"), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("m1", "m2", "m3"), [(1.0, 0.3, 0.2), (2.0, 0.2, 0.1), (4.0, 0.0, 0.0), (1.5, 1.0, 1.0)])
def test_continuous_tail_is_continuous_and_monotone(m1, m2, m3):
    loss = Combined(s=1.0, m1=m1, m2=m2, m3=m3, tail="continuous")
    theta = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    psi = loss.psi(theta)
    step = psi.diff()
    assert (step <= 1e-12).all()
    assert step.abs().max().item() < 1e-2
    theta_star = (math.pi - m2) / m1
    if theta_star < math.pi:
        at = torch.tensor([theta_star - 1e-9, theta_star + 1e-9], dtype=torch.float64)
        torch.testing.assert_close(loss.psi(at), torch.full((2,), -1.0 - m3, dtype=torch.float64),
                                   rtol=0, atol=1e-7)


def test_fallback_needs_m1_equal_1():
    with pytest.raises(ValueError, match="m1"):
        Combined(m1=2.0, tail="fallback")
    Combined(m1=1.0, tail="fallback")


@pytest.mark.parametrize(("m1", "m2", "m3"), [(1.0, 0.3, 0.2), (2.0, 0.2, 0.1)])
def test_target_logit(ref, m1, m2, m3):
    s = 10.0
    theta_star = (math.pi - m2) / m1

    def dpsi(t):
        return np.where(t > theta_star, -np.sin(t), -m1 * np.sin(m1 * t + m2))

    ref.check_target_logit(Combined(s=s, m1=m1, m2=m2, m3=m3), psi_ref(m1, m2, m3, "continuous"), dpsi, s=s)
