"""Angular SparseMax (seed 002 eq. 9): z = s·cos φ, φ_i = θ_i + m on the target, θ_i elsewhere; sparsemax loss."""

from __future__ import annotations

import math

import entmax
import numpy as np
import pytest
import torch

from arclib.losses import TAILS, AngularSparsemax, Sparsemax


def eq9_logits(s, m, tail="none"):
    def logits(cos, y):
        phi = np.arccos(np.clip(cos, -1, 1))
        rows = np.arange(len(y))
        phi[rows, y] += m
        z = s * np.cos(phi)
        if tail == "continuous":  # arclib's default past θ + m > π: s(cos θ + cos m − 1)
            theta_y = phi[rows, y] - m
            past = theta_y > math.pi - m
            z[rows[past], y[past]] = s * (np.cos(theta_y[past]) + math.cos(m) - 1)
        return z
    return logits


@pytest.mark.parametrize(("s", "m"), [(1.9, 0.2), (1.9, 0.1), (1.0, 0.5), (6.0, 1.0)])
def test_matches_eq9(ref, s, m):
    ref.check_formula(lambda **kw: AngularSparsemax(s=s, m=m, tail="none", **kw), eq9_logits(s, m),
                      crit="sparsemax")


@pytest.mark.parametrize(("s", "m"), [(1.9, 0.2), (3.0, 0.8)])
def test_matches_eq9_with_default_tail(ref, s, m):
    ref.check_formula(lambda **kw: AngularSparsemax(s=s, m=m, **kw), eq9_logits(s, m, "continuous"),
                      crit="sparsemax")


@pytest.mark.parametrize("tail", TAILS)
def test_m0_is_sparsemax(tail):
    rng = np.random.default_rng(1)
    cos = torch.from_numpy(rng.uniform(-1, 1, (30, 8)))
    y = torch.from_numpy(rng.integers(0, 8, 30))
    torch.testing.assert_close(AngularSparsemax(s=1.9, m=0.0, tail=tail)(cos, y, reduction="none"),
                               Sparsemax(s=1.9)(cos, y, reduction="none"), rtol=1e-10, atol=1e-10)


def test_agrees_with_entmax_on_margin_logits(ref):
    gen = torch.Generator().manual_seed(2)
    s, m = 1.9, 0.2
    loss = AngularSparsemax(s=s, m=m, num_classes=15, embedding_dim=8)
    x = torch.randn(24, 8, generator=gen)
    y = torch.randint(0, 15, (24,), generator=gen)

    def eq9(x, y):
        theta = torch.acos(loss.head(x).clamp(-1, 1))
        phi = theta + m * torch.nn.functional.one_hot(y, 15)  # eq. 9 as written: θ + m on the target
        return entmax.SparsemaxLoss()(s * torch.cos(phi), y)

    ref.check_oracle(loss, eq9, x, y, lambda: loss.head.weight.grad)


def test_margin_raises_the_loss():
    """With the target pushed by m, samples the sparsemax loss calls solved under Sparsemax become unsolved."""
    rng = np.random.default_rng(3)
    cos = torch.from_numpy(rng.uniform(-1, 1, (200, 4)))
    y = torch.from_numpy(rng.integers(0, 4, 200))
    plain = Sparsemax(s=1.9)(cos, y, reduction="none")
    margin = AngularSparsemax(s=1.9, m=0.2, tail="none")(cos, y, reduction="none")
    # for θ_y ≤ π − m, cos(θ_y + m) < cos θ_y lowers z_y, and the loss never falls as z_y falls (∂L/∂z_y = p_y − 1)
    theta_y = torch.acos(cos.gather(1, y[:, None]).squeeze(1))
    inside = theta_y < math.pi - 0.2
    assert (margin[inside] >= plain[inside] - 1e-12).all()
    assert (margin[inside] > plain[inside]).any()


def test_target_logit(ref):
    s, m = 1.9, 0.2
    loss = AngularSparsemax(s=s, m=m)
    ref.check_target_logit(loss, lambda t: np.where(t > math.pi - m, np.cos(t) + math.cos(m) - 1, np.cos(t + m)),
                           lambda t: np.where(t > math.pi - m, -np.sin(t), -np.sin(t + m)), s=s)
    assert loss.criterion == "sparsemax" and "criterion" not in loss.hparams()
