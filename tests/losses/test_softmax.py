"""Softmax L1 (seed 000 eq. L1, seed 004 eq. 1): −log e^{W_yᵀx + b_y} / Σ_j e^{W_jᵀx + b_j}."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib.head import LinearHead
from arclib.losses import NormFace, Softmax, make


def test_logits_in_matches_log_softmax(ref):
    for seed in ref.SEEDS:
        rng = np.random.default_rng(seed)
        n, c, _ = ref.random_shape(rng)
        y = rng.integers(0, c, n)
        z = rng.normal(scale=5.0, size=(n, c))  # without a head the input *is* the logits, any real values
        got = Softmax()(torch.from_numpy(z), torch.from_numpy(y), reduction="none")
        np.testing.assert_allclose(got.numpy(), ref.cross_entropy(z, y), rtol=1e-10, atol=1e-10)


def test_features_in_matches_l1(ref):
    for seed in ref.SEEDS:
        rng = np.random.default_rng(seed)
        n, c, d = ref.random_shape(rng)
        y = rng.integers(0, c, n)
        loss = Softmax(num_classes=c, embedding_dim=d).double()
        assert isinstance(loss.head, LinearHead)
        with torch.no_grad():
            loss.head.bias.normal_()  # a non-zero bias so b_j really enters the formula
        w = loss.head.weight.detach().numpy()
        b = loss.head.bias.detach().numpy()
        x = rng.normal(size=(n, d))
        want = ref.cross_entropy(x @ w.T + b, y)  # W_jᵀx_i + b_j, no normalisation, no scale
        got = loss(torch.from_numpy(x), torch.from_numpy(y), reduction="none")
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-9, atol=1e-9)
        assert loss(torch.from_numpy(x), torch.from_numpy(y)).item() == pytest.approx(want.mean(), rel=1e-9)


def test_l1_with_zero_bias_unit_norms_is_normface_s1(ref):
    """Seed 000: "set bias = 0, ‖W‖ = 1, ‖x‖ = 1" turns L1 into L2 (with s = 1)."""
    rng = np.random.default_rng(7)
    n, c, d = 12, 9, 6
    y = torch.from_numpy(rng.integers(0, c, n))
    softmax = Softmax(num_classes=c, embedding_dim=d).double()
    with torch.no_grad():
        softmax.head.bias.zero_()
        softmax.head.weight.copy_(torch.nn.functional.normalize(softmax.head.weight, dim=1))
    normface = NormFace(s=1.0, num_classes=c, embedding_dim=d).double()
    with torch.no_grad():
        normface.head.weight.copy_(softmax.head.weight * 3.0)  # NormFace normalises W itself
    x = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(n, d))), dim=1)
    got = softmax(x, y, reduction="none")
    want = normface(x, y, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # and both are the L2 formula with s = 1
    cos = ref.normalise(x.numpy()) @ ref.normalise(softmax.head.weight.detach().numpy()).T
    np.testing.assert_allclose(got.detach().numpy(), ref.cross_entropy(cos, y.numpy()), rtol=1e-10)


def test_gradient_is_softmax_minus_onehot():
    rng = np.random.default_rng(3)
    z = torch.from_numpy(rng.normal(size=(5, 4))).requires_grad_()
    y = torch.tensor([0, 3, 1, 1, 2])
    Softmax()(z, y, reduction="sum").backward()
    want = torch.softmax(z.detach(), 1) - torch.nn.functional.one_hot(y, 4)
    torch.testing.assert_close(z.grad, want.double())


def test_target_logit_is_cos(ref):
    # for the curve plots: ‖W‖‖x‖cos θ + b with unit norms and b = 0
    loss = Softmax()
    ref.check_target_logit(loss, np.cos, lambda t: -np.sin(t), s=1.0)
    theta = torch.linspace(0, math.pi, 11, dtype=torch.float64)
    torch.testing.assert_close(loss.other_logit(theta), torch.cos(theta))


def test_hparams_have_no_scale():
    loss = Softmax(num_classes=4, embedding_dim=3)
    hp = loss.hparams()
    assert "s" not in hp and hp["num_classes"] == 4 and hp["embedding_dim"] == 3
    assert make("softmax", **hp).hparams() == hp
    with pytest.raises(ValueError, match="softmax"):
        make("softmax", s=2.0)  # no scale to set: the error names the loss
