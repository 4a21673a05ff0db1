"""QAMFace (seed 004 eq. 4): target logit s(2π − (θ_y + m))², every other logit s(2π − θ_j)²."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib.losses import QAMFace


def qam_logits(s, m):
    def logits(cos, y):
        theta = np.arccos(np.clip(cos, -1, 1))  # θ = arccos(W_jᵀx_i), for every class
        z = s * (2 * math.pi - theta) ** 2
        rows = np.arange(len(y))
        z[rows, y] = s * (2 * math.pi - (theta[rows, y] + m)) ** 2
        return z
    return logits


@pytest.mark.parametrize(("s", "m"), [(6.0, 0.5), (1.0, 0.0), (3.0, 1.0), (10.0, math.pi)])
def test_matches_eq4(ref, s, m):
    ref.check_formula(lambda **kw: QAMFace(s=s, m=m, **kw), qam_logits(s, m))


def test_target_logit_and_other_logit(ref):
    s, m = 6.0, 0.5
    loss = QAMFace(s=s, m=m)
    ref.check_target_logit(loss, lambda t: (2 * math.pi - t - m) ** 2, lambda t: -2 * (2 * math.pi - t - m), s=s)
    theta = torch.linspace(0, math.pi, 91, dtype=torch.float64, requires_grad=True)
    other = loss.other_logit(theta)
    torch.testing.assert_close(other.detach(), s * (2 * math.pi - theta.detach()) ** 2)
    (grad,) = torch.autograd.grad(other.sum(), theta)
    torch.testing.assert_close(grad, -2 * s * (2 * math.pi - theta.detach()))


def test_target_logit_monotone_with_growing_slope():
    """Seed 004 §3.2: the target logit falls on [0, π] and |slope| grows as θ shrinks."""
    loss = QAMFace()
    theta = torch.linspace(0, math.pi, 1001, dtype=torch.float64, requires_grad=True)
    logit = loss.target_logit(theta)
    (grad,) = torch.autograd.grad(logit.sum(), theta)
    assert (logit.diff() < 0).all()
    assert (grad < 0).all() and (grad.abs().diff() < 0).all()


def test_binary_example_loss_decreases_with_target_angle():
    """Seed 004 Fig. 2/3: with the inter-class angle fixed at π/6, QAMFace's loss falls as θ_i falls."""
    loss = QAMFace(s=6.0, m=0.5)
    theta_i = torch.linspace(0.05, math.pi / 6 - 0.01, 50, dtype=torch.float64)
    theta_j = theta_i + math.pi / 6  # the other class's centre stays π/6 further away than the own centre
    cos = torch.stack([torch.cos(theta_i), torch.cos(theta_j)], 1)
    values = loss(cos, torch.zeros(50, dtype=torch.long), reduction="none")
    assert (values.diff() > 0).all()
