"""sparsemax, sparsemax_loss (Martins & Astudillo 2016; seed 002 eq. 4, Algorithm 1) and the Sparsemax loss.

The loss class is z = s·cos θ followed by the sparsemax loss (seed 002: "Sparsemax s=1.9").
"""

from __future__ import annotations

import math

import entmax
import numpy as np
import pytest
import torch

from arclib import sparsemax, sparsemax_loss
from arclib.losses import Sparsemax


def _z(seed, shape, scale=2.0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


# ---- sparsemax ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_sparsemax_matches_projection_reference(ref, seed):
    n, c = 3 + seed * 5, 2 + seed * 7
    z = _z(seed, (n, c))
    np.testing.assert_allclose(sparsemax(z, dim=1).numpy(), ref.sparsemax(z.numpy()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_sparsemax_on_simplex_with_exact_zeros(seed):
    z = _z(seed, (50, 20), scale=3.0)
    p = sparsemax(z, dim=1)
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(50, dtype=torch.float64))
    assert (p == 0).sum() > 0, "sparsemax must give classes exactly zero probability"
    # the support is the top entries: every zero sits below every non-zero, row by row
    lowest_kept = z.masked_fill(p == 0, math.inf).min(1).values
    highest_dropped = z.masked_fill(p > 0, -math.inf).max(1).values
    assert (lowest_kept > highest_dropped).all()


def test_sparsemax_special_cases():
    # equal scores: the uniform distribution; one score far ahead: one-hot; shift invariance
    torch.testing.assert_close(sparsemax(torch.zeros(2, 5)), torch.full((2, 5), 0.2))
    torch.testing.assert_close(sparsemax(torch.tensor([[3.0, 1.0, 0.5]])), torch.tensor([[1.0, 0.0, 0.0]]))
    z = _z(0, (4, 6))
    torch.testing.assert_close(sparsemax(z + 123.0), sparsemax(z))
    # two classes: p_1 = clip((z_1 − z_2 + 1)/2, 0, 1)
    z2 = torch.tensor([[0.3, 0.1], [2.0, 0.0], [-0.5, 0.5]], dtype=torch.float64)
    want = ((z2[:, 0] - z2[:, 1] + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(sparsemax(z2)[:, 0], want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "dim"), [((7, 11), 1), ((7, 11), 0), ((7, 11), -1), ((3, 4, 9), 1), ((3, 4, 9), -1)])
def test_sparsemax_agrees_with_entmax(shape, dim, dtype):
    z = _z(sum(shape) + dim, shape, dtype=dtype)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    p1, p2 = sparsemax(z1, dim=dim), entmax.sparsemax(z2, dim=dim)
    torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-5)
    upstream = _z(99, shape, dtype=dtype)
    (p1 * upstream).sum().backward()
    (p2 * upstream).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-5)


def test_sparsemax_jacobian_is_projection_on_support():
    """∂p/∂z = diag(s) − s sᵀ/|S| with s the support indicator (Martins & Astudillo, Prop. 2)."""
    z = _z(5, (1, 8))[0]
    jac = torch.autograd.functional.jacobian(lambda v: sparsemax(v), z)
    supp = (sparsemax(z) > 0).double()
    want = torch.diag(supp) - torch.outer(supp, supp) / supp.sum()
    torch.testing.assert_close(jac, want)


# ---- sparsemax_loss -------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_loss_matches_reference(ref, seed):
    n, c = 4 + 3 * seed, 2 + 5 * seed
    z = _z(seed, (n, c))
    y = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))
    want = ref.sparsemax_loss(z.numpy(), y.numpy())
    np.testing.assert_allclose(sparsemax_loss(z, y, reduction="none").numpy(), want, rtol=1e-10, atol=1e-12)
    assert sparsemax_loss(z, y).item() == pytest.approx(want.mean(), rel=1e-10)
    assert sparsemax_loss(z, y, reduction="sum").item() == pytest.approx(want.sum(), rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("reduction", "entmax_reduction"), [("mean", "elementwise_mean"), ("sum", "sum"),
                                                             ("none", "none")])
def test_loss_agrees_with_entmax(reduction, entmax_reduction, dtype):
    z = _z(3, (16, 10), dtype=dtype)
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(3))
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    a = sparsemax_loss(z1, y, reduction=reduction)
    b = entmax.SparsemaxLoss(reduction=entmax_reduction)(z2, y)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    upstream = torch.rand_like(a)
    (a * upstream).sum().backward()
    (b * upstream).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-5)


def test_loss_gradient_is_p_minus_onehot():
    z = _z(7, (12, 9), scale=1.5).requires_grad_()
    y = torch.randint(0, 9, (12,), generator=torch.Generator().manual_seed(7))
    sparsemax_loss(z, y, reduction="sum").backward()
    want = sparsemax(z.detach(), dim=1) - torch.nn.functional.one_hot(y, 9)
    torch.testing.assert_close(z.grad, want.double())
    # and it is the true gradient of the loss's value
    assert torch.autograd.gradcheck(lambda v: sparsemax_loss(v, y, reduction="sum"), (z.detach().clone().requires_grad_(),))


@pytest.mark.parametrize("gap", [2.0, 1.5, 1.0 + 2**-20, 1.0])
def test_loss_zero_when_target_ahead_by_one(gap):
    z = torch.tensor([[0.25, -1.0, 0.25 + gap, 0.0]], dtype=torch.float64)
    y = torch.tensor([2])
    assert sparsemax_loss(z, y).item() == 0.0
    assert sparsemax(z)[0].tolist() == [0.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("gap", [1.0 - 2**-20, 0.5, 0.0, -3.0])
def test_loss_positive_when_target_not_ahead_by_one(gap):
    z = torch.tensor([[0.25, -1.0, 0.25 + gap, 0.0]], dtype=torch.float64)
    assert sparsemax_loss(z, torch.tensor([2])).item() > 0.0


def test_loss_zero_iff_margin_of_one_random():
    z = _z(11, (400, 6), scale=1.5)
    y = torch.randint(0, 6, (400,), generator=torch.Generator().manual_seed(11))
    losses = sparsemax_loss(z, y, reduction="none")
    z_y = z.gather(1, y[:, None]).squeeze(1)
    best_other = z.scatter(1, y[:, None], -math.inf).max(1).values
    ahead = z_y >= 1 + best_other
    assert ahead.any() and (~ahead).any()
    # zero up to rounding (p_y = z_y − τ may round to 1 − 1e-16) exactly where the target leads by one
    assert ((losses <= 1e-12) == ahead).all()
    assert (losses >= 0).all()


def test_loss_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        sparsemax_loss(torch.zeros(2, 3), torch.tensor([0, 1]), reduction="avg")


# ---- the Sparsemax loss: z = s·cos θ ----------------------------------------------------------------------

@pytest.mark.parametrize("s", [1.9, 1.0, 6.0])
def test_sparsemax_loss_class_matches_formula(ref, s):
    ref.check_formula(lambda **kw: Sparsemax(s=s, **kw), lambda cos, y: s * cos, crit="sparsemax")


def test_sparsemax_loss_class_agrees_with_entmax_on_scaled_cosines(ref):
    gen = torch.Generator().manual_seed(0)
    loss = Sparsemax(s=1.9, num_classes=12, embedding_dim=5)
    x = torch.randn(20, 5, generator=gen)
    y = torch.randint(0, 12, (20,), generator=gen)
    ref.check_oracle(loss, lambda x, y: entmax.SparsemaxLoss()(1.9 * loss.head(x), y), x, y,
                     lambda: loss.head.weight.grad)


def test_sparsemax_loss_class_probabilities_and_target_logit(ref):
    loss = Sparsemax(s=1.9)
    cos = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.49, 0.48]], dtype=torch.float64)
    p = loss.probabilities(cos)
    torch.testing.assert_close(p, sparsemax(1.9 * cos).float())
    assert p[0].tolist() == [1.0, 0.0, 0.0]
    ref.check_target_logit(loss, np.cos, lambda t: -np.sin(t), s=1.9)
    assert loss.criterion == "sparsemax" and "criterion" not in loss.hparams()


@pytest.mark.parametrize("z", [[[1e8, 0.0, 0.0]], [[2.0**24, 1.0, 0.0]], [[3e7, 3e7 - 4.0, 0.0]]])
def test_sparsemax_large_scores(z):
    """Scores past 2**24 (float32): 1 + z_(1) > z_(1) would round to False without a shift by the max, leaving
    no support at all; sparsemax is shift-invariant, so the answer is the one-hot of the largest score."""
    z = torch.tensor(z)
    torch.testing.assert_close(entmax.sparsemax(z, dim=1), torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(sparsemax(z, dim=1), torch.tensor([[1.0, 0.0, 0.0]]))
    assert sparsemax_loss(z, torch.tensor([0])).item() == 0.0


# ---- bad inputs to the functions: one ValueError naming the argument ------------------------------------

SPARSEMAX_BAD_LABELS = {
    "too large": lambda y: torch.full_like(y, 4),
    "negative": lambda y: torch.full_like(y, -1),
    "float": lambda y: y.double(),
    "too long": lambda y: torch.cat([y, y[:1]]),
    "list": lambda y: y.tolist(),
}


@pytest.mark.parametrize("bad", list(SPARSEMAX_BAD_LABELS))
def test_sparsemax_loss_checks_its_labels(bad):
    z, y = _z(0, (5, 4)), torch.tensor([0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match="^labels must"):
        sparsemax_loss(z, SPARSEMAX_BAD_LABELS[bad](y))


def test_sparsemax_functions_check_z():
    z, y = _z(0, (5, 4)), torch.tensor([0, 1, 2, 3, 0])
    with pytest.raises(ValueError, match=r"^z must be a torch.Tensor of shape \(N, C\), got a ndarray"):
        sparsemax_loss(z.numpy(), y)
    with pytest.raises(ValueError, match=r"^z must be a torch.Tensor"):
        sparsemax(z.tolist())
    with pytest.raises(ValueError, match=r"^z must be a floating tensor of shape \(N, C\)"):
        sparsemax_loss(z[0], y[:1])
    with pytest.raises(ValueError, match=r"^z must be a floating tensor"):
        sparsemax_loss(z.long(), y)
    with pytest.raises(ValueError, match=r"^z must hold at least one row"):  # its mean would be NaN
        sparsemax_loss(z[:0], y[:0])
