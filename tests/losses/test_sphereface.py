"""SphereFace / A-Softmax (seed 000 eq. 6): target logit s·ψ(θ_y), others s·cos θ_j.

Eq. 6 writes cos(mθ); the piecewise ψ(θ) = (−1)^k cos(mθ) − 2k on [kπ/m, (k+1)π/m] (seed 004 §3.2) extends it
monotonically to [0, π]. arclib scales by s instead of ‖x‖ (as in the ArcFace paper's comparison).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib.losses import NormFace, SphereFace


def psi_ref(m, lam=0.0):
    def psi(theta):
        out = np.empty_like(theta)
        for i, t in enumerate(theta.flat):
            k = min(int(t * m / math.pi), m - 1)  # the interval [kπ/m, (k+1)π/m] that holds θ
            out.flat[i] = (-1) ** k * math.cos(m * t) - 2 * k
        return (lam * np.cos(theta) + out) / (1 + lam)
    return psi


def dpsi_ref(m, lam=0.0):
    def dpsi(theta):
        k = np.minimum(np.floor(theta * m / math.pi), m - 1)
        return (-lam * np.sin(theta) + (-1) ** k * (-m) * np.sin(m * theta)) / (1 + lam)
    return dpsi


def logits_ref(s, m, lam=0.0):
    def logits(cos, y):
        z = s * cos
        rows = np.arange(len(y))
        z[rows, y] = s * psi_ref(m, lam)(np.arccos(np.clip(cos[rows, y], -1, 1)))
        return z
    return logits


@pytest.mark.parametrize(("s", "m", "lam"), [(64.0, 4, 0.0), (30.0, 2, 0.0), (10.0, 3, 0.0), (16.0, 4, 5.0),
                                             (8.0, 1, 0.0), (20.0, 7, 0.5)])
def test_matches_eq6_piecewise(ref, s, m, lam):
    ref.check_formula(lambda **kw: SphereFace(s=s, m=m, lam=lam, **kw), logits_ref(s, m, lam))


@pytest.mark.parametrize("m", [2, 3, 4])
def test_is_cos_m_theta_below_pi_over_m(ref, m):
    """Eq. 6 as written, e^{s cos(mθ_y)}, wherever θ_y ≤ π/m."""
    rng = np.random.default_rng(m)
    n, c = 16, 5
    cos = rng.uniform(-1, 1, (n, c))
    y = rng.integers(0, c, n)
    rows = np.arange(n)
    cos[rows, y] = np.cos(rng.uniform(0, math.pi / m, n))
    z = 10.0 * cos
    z[rows, y] = 10.0 * np.cos(m * np.arccos(cos[rows, y]))
    got = SphereFace(s=10.0, m=m)(torch.from_numpy(cos), torch.from_numpy(y), reduction="none")
    np.testing.assert_allclose(got.numpy(), ref.cross_entropy(z, y), rtol=1e-9)


def test_m1_is_normface():
    rng = np.random.default_rng(0)
    cos = torch.from_numpy(rng.uniform(-1, 1, (20, 8)))
    y = torch.from_numpy(rng.integers(0, 8, 20))
    torch.testing.assert_close(SphereFace(s=16.0, m=1)(cos, y, reduction="none"),
                               NormFace(s=16.0)(cos, y, reduction="none"), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_psi_monotone_continuous_from_1_to_1_minus_2m(m):
    loss = SphereFace(s=1.0, m=m)
    theta = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    psi = loss.psi(theta)
    assert psi[0].item() == pytest.approx(1.0)
    assert psi[-1].item() == pytest.approx(1 - 2 * m)
    step = psi.diff()
    assert (step <= 1e-12).all()  # monotone non-increasing
    assert step.abs().max().item() < 1e-2  # no jump: the largest step is of the grid's size


@pytest.mark.parametrize(("m", "lam"), [(4, 0.0), (2, 0.0), (3, 2.0)])
def test_target_logit(ref, m, lam):
    loss = SphereFace(s=5.0, m=m, lam=lam)
    ref.check_target_logit(loss, psi_ref(m, lam), dpsi_ref(m, lam), s=5.0)


def test_annealing_weight_tends_to_normface():
    theta = torch.linspace(0, math.pi, 50, dtype=torch.float64)
    psi = SphereFace(s=1.0, m=4, lam=1e9).psi(theta)
    torch.testing.assert_close(psi, torch.cos(theta), rtol=0, atol=1e-7)
