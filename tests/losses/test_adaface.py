"""AdaFace (Kim, Jain & Liu, CVPR 2022): s·(cos(θ_y − m·ẑ) − m·(1 + ẑ)) at the target, ẑ the sample's feature norm
normalised by running batch statistics, against a transcription of the authors' code, its special cases, and the
cosine-input cases of test_common.py run with ``norms=``.

The reference is ``AdaFace.forward`` of mk-minchul/AdaFace ``head.py`` (last changed in
7f0dbbf2ba0ec68e48005151434d1926da70b11c, August 2022; unchanged at the repository's HEAD
c60eaa786a42c03444f3df7096dbaf9d57ae010d, June 2024), transcribed below line by line. Its backbone (``net.py``)
hands it the normalised features and their norms ‖x‖ as an (N, 1) column; ``train_val.py`` applies
``CrossEntropyLoss()`` (the mean) to its output. Nothing of the repository is vendored.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arclib.losses import AdaFace, ArcFace, CosFace, NormFace, make

DTYPE = torch.float64


class ReferenceAdaFace:
    """mk-minchul/AdaFace head.py ``AdaFace`` (its ``__init__`` buffers and ``forward``), transcribed. Changes: the
    kernel is passed in (arclib's W transposed, (d, C)); ``m_arc``/``m_cos`` get the cosines' dtype (the original
    builds them in the default dtype); ``update=False`` skips the statistics update, to compare with arclib's
    eval mode (the original always updates: it only runs in training)."""

    def __init__(self, m=0.4, h=0.333, s=64.0, t_alpha=1.0):
        self.m, self.eps, self.h, self.s, self.t_alpha = m, 1e-3, h, s, t_alpha
        self.batch_mean = torch.ones(1, dtype=DTYPE) * 20
        self.batch_std = torch.ones(1, dtype=DTYPE) * 100

    def __call__(self, embbedings, norms, label, kernel, update=True):
        kernel_norm = kernel / torch.norm(kernel, 2, 0, True)  # l2_norm(self.kernel, axis=0)
        cosine = torch.mm(embbedings, kernel_norm)
        cosine = cosine.clamp(-1 + self.eps, 1 - self.eps)  # for stability

        safe_norms = torch.clip(norms, min=0.001, max=100)  # for stability
        safe_norms = safe_norms.clone().detach()

        # update batchmean batchstd
        if update:
            with torch.no_grad():
                mean = safe_norms.mean().detach()
                std = safe_norms.std().detach()
                self.batch_mean = mean * self.t_alpha + (1 - self.t_alpha) * self.batch_mean
                self.batch_std = std * self.t_alpha + (1 - self.t_alpha) * self.batch_std

        margin_scaler = (safe_norms - self.batch_mean) / (self.batch_std + self.eps)  # 66% between -1, 1
        margin_scaler = margin_scaler * self.h  # 68% between -0.333 ,0.333 when h:0.333
        margin_scaler = torch.clip(margin_scaler, -1, 1)

        # g_angular
        m_arc = torch.zeros(label.size()[0], cosine.size()[1], device=cosine.device, dtype=cosine.dtype)
        m_arc.scatter_(1, label.reshape(-1, 1), 1.0)
        g_angular = self.m * margin_scaler * -1
        m_arc = m_arc * g_angular
        theta = cosine.acos()
        theta_m = torch.clip(theta + m_arc, min=self.eps, max=math.pi - self.eps)
        cosine = theta_m.cos()

        # g_additive
        m_cos = torch.zeros(label.size()[0], cosine.size()[1], device=cosine.device, dtype=cosine.dtype)
        m_cos.scatter_(1, label.reshape(-1, 1), 1.0)
        g_add = self.m + (self.m * margin_scaler)
        m_cos = m_cos * g_add
        cosine = cosine - m_cos

        # scale
        scaled_cosine_m = cosine * self.s
        return scaled_cosine_m


def batch(step, n=24, c=9, d=8, spread=(0.5, 40.0)):
    """Features of very different norms (the quality signal) and labels; step seeds the draw."""
    gen = torch.Generator().manual_seed(100 + step)
    scale = spread[0] + torch.rand(n, 1, generator=gen, dtype=DTYPE) * (spread[1] - spread[0])
    x = torch.randn(n, d, generator=gen, dtype=DTYPE)
    return x / x.norm(dim=1, keepdim=True) * scale, torch.randint(0, c, (n,), generator=gen)


def both(ours, reference, x, labels, update=True):
    """(loss, ∂/∂x, ∂/∂W) of arclib and of the reference fed as its training step is (backbone output x/‖x‖ and
    ‖x‖, then CrossEntropyLoss), with the same W."""
    kernel = ours.head.weight.detach().T.clone().requires_grad_()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours.head.weight.grad = None
    a = ours(x1, labels)
    a.backward()
    norm = torch.norm(x2, 2, 1, True)
    b = F.cross_entropy(reference(torch.div(x2, norm), norm, labels, kernel, update=update), labels)
    b.backward()
    return (a.detach(), x1.grad, ours.head.weight.grad), (b.detach(), x2.grad, kernel.grad.T)


def assert_inside_the_clamps(ours, x, labels):
    """The region where arclib and the reference agree: |cos θ| ≤ 0.999 and θ_y − m·ẑ inside [10⁻³, π − 10⁻³]."""
    with torch.no_grad():
        cos = ours.head(x)
        theta = torch.acos(cos[torch.arange(len(labels)), labels])
        shifted = theta - ours.m * ours.quality(x.norm(dim=1))
    assert cos.abs().max() < 0.999
    assert shifted.min() > 1e-3 and shifted.max() < math.pi - 1e-3


@pytest.mark.parametrize(("t_alpha", "h", "m"), [(0.01, 0.333, 0.4), (1.0, 0.333, 0.4), (1.0, 2.0, 0.5),
                                                 (0.3, 1.0, 0.2)])
def test_training_steps_equal_the_reference(t_alpha, h, m):
    """Several training steps: the same running statistics, loss, and gradients of x and W at every step. h = 2
    clips ẑ at ±1 for many samples."""
    torch.manual_seed(0)
    ours = AdaFace(s=64.0, m=m, h=h, t_alpha=t_alpha, num_classes=9, embedding_dim=8).double().train()
    reference = ReferenceAdaFace(m=m, h=h, s=64.0, t_alpha=t_alpha)
    clipped = 0
    for step in range(4):
        x, labels = batch(step)
        got, want = both(ours, reference, x, labels)
        assert_inside_the_clamps(ours, x, labels)  # with the statistics this step used
        torch.testing.assert_close(ours.norm_mean, reference.batch_mean[0], rtol=1e-12, atol=0)
        torch.testing.assert_close(ours.norm_std, reference.batch_std[0], rtol=1e-12, atol=0)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)
        clipped += int((ours.quality(x.norm(dim=1)).abs() == 1).sum())
    assert (clipped > 0) == (h == 2.0)


def test_eval_mode_equals_the_reference_margin_and_keeps_the_statistics():
    torch.manual_seed(1)
    ours = AdaFace(s=32.0, m=0.4, h=0.5, t_alpha=0.5, num_classes=9, embedding_dim=8).double()
    reference = ReferenceAdaFace(m=0.4, h=0.5, s=32.0, t_alpha=0.5)
    for step in range(2):  # move the statistics away from 20 / 100 first
        both(ours, reference, *batch(step))
    ours.eval()
    mean, std = ours.norm_mean.clone(), ours.norm_std.clone()
    for step in range(2, 4):
        x, labels = batch(step)
        got, want = both(ours, reference, x, labels, update=False)
        assert_inside_the_clamps(ours, x, labels)
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)
        assert torch.equal(ours.norm_mean, mean) and torch.equal(ours.norm_std, std)


def test_where_arclib_departs_from_the_reference_clamps():
    """Documented in the docstring: the reference clamps cos θ to ±(1 − 10⁻³) (there its gradient is 0, arclib's
    is not) and θ_y − m·ẑ to [10⁻³, π − 10⁻³] (values differ by at most s·(1 − cos 10⁻³) ≈ s·5·10⁻⁷)."""
    ours = AdaFace(s=64.0, m=0.4, h=2.0, t_alpha=1.0).eval()
    reference = ReferenceAdaFace(m=0.4, h=2.0, s=64.0, t_alpha=1.0)
    eye = torch.eye(3, dtype=DTYPE)  # the reference's matmul with the identity: cosines in, cosines out
    # ẑ = 0, 0, +1: μ = 20, σ = 100, h = 2, and 200 capped at 100 gives 2·0.8 = 1.6, clipped to 1
    norms = torch.tensor([20.0, 20.0, 200.0], dtype=DTYPE)
    torch.testing.assert_close(ours.quality(norms), torch.tensor([0.0, 0.0, 1.0], dtype=DTYPE))
    labels = torch.tensor([0, 1, 2])
    cos = torch.tensor([[0.9995, 0.1, 0.2], [0.3, -0.9995, 0.1], [0.1, 0.2, math.cos(0.1)]], dtype=DTYPE,
                       requires_grad=True)
    z_ours = ours.logits(cos, labels, norms=norms)
    z_ref = reference(cos, norms[:, None], labels, eye, update=False)
    # beyond ±0.999: the values differ and the reference has no gradient for those cosines
    assert abs(z_ours[0, 0] - z_ref[0, 0]) > 1e-3 and abs(z_ours[1, 1] - z_ref[1, 1]) > 1e-3
    (grad_ref,) = torch.autograd.grad(z_ref[0, 0] + z_ref[1, 1], cos, retain_graph=True)
    (grad_ours,) = torch.autograd.grad(z_ours[0, 0] + z_ours[1, 1], cos, retain_graph=True)
    assert grad_ref[0, 0] == 0 and grad_ref[1, 1] == 0 and grad_ours[0, 0] != 0 and grad_ours[1, 1] != 0
    # θ − m·ẑ = 0.1 − 0.4 < 0: arclib clips at 0 (cos = 1), the reference at 10⁻³; both are flat there
    gap = float((z_ours[2, 2] - z_ref[2, 2]).detach())
    assert 0 < gap <= 64 * (1 - math.cos(1e-3)) + 1e-12
    torch.testing.assert_close(z_ours[2, 2].detach(), torch.tensor(64 * (1 - 2 * 0.4), dtype=DTYPE))
    # elsewhere the non-target logits agree
    off = ~torch.eye(3, dtype=torch.bool)
    torch.testing.assert_close(z_ours[off], z_ref[off], rtol=1e-12, atol=1e-12)


# ---- the margin as a function of θ and ẑ -------------------------------------------------------------------

THETA = torch.linspace(0, math.pi, 721, dtype=DTYPE)


@pytest.mark.parametrize("m", [0.2, 0.4, 0.7])
def test_low_norm_is_arcface_and_zero_is_cosface(m):
    loss = AdaFace(s=30.0, m=m)
    inside = THETA <= math.pi - m
    arc = ArcFace(s=30.0, m=m, tail="none").target_logit(THETA)
    torch.testing.assert_close(loss.target_logit(THETA, quality=-1.0)[inside], arc[inside])  # ẑ = −1: ArcFace
    # past θ = π − m the angle is clipped at π: flat at −s, where ArcFace's cos(θ + m) would turn back up
    torch.testing.assert_close(loss.target_logit(THETA, quality=-1.0)[~inside],
                               torch.full_like(THETA[~inside], -30.0))
    torch.testing.assert_close(loss.target_logit(THETA, quality=0.0), CosFace(s=30.0, m=m).target_logit(THETA))
    # ẑ = +1: cos(θ − m) − 2m, flat at 1 − 2m for θ < m
    high = loss.target_logit(THETA, quality=1.0)
    torch.testing.assert_close(high, 30.0 * (torch.cos((THETA - m).clamp_min(0)) - 2 * m))


def test_target_logit_is_a_family_in_quality():
    loss = AdaFace(s=16.0, m=0.4)
    theta = THETA[:, None].clone().requires_grad_()
    quality = torch.tensor([[-1.0, -0.5, 0.0, 0.3, 1.0]], dtype=DTYPE)
    out = loss.target_logit(theta, quality=quality)
    assert out.shape == (721, 5) and out.dtype == DTYPE
    th, q = theta.detach().numpy(), quality.numpy()
    want = 16.0 * (np.cos(np.clip(th - 0.4 * q, 0, math.pi)) - 0.4 * (1 + q))
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out.sum(), theta)
    assert torch.isfinite(grad).all()
    assert (out.diff(dim=0) <= 1e-12).all()  # non-increasing in θ for every ẑ
    assert (out.diff(dim=1) <= 1e-12).all()  # a higher norm: a larger margin at every θ
    for z in (-1.0, 0.0, 0.3, 1.0):  # a number, one curve
        torch.testing.assert_close(loss.target_logit(THETA, quality=z), out.detach()[:, q[0].tolist().index(z)])
    for bad in (1.5, -1.01, math.nan, "low", torch.tensor([0.0, 2.0]), torch.tensor([math.nan])):
        with pytest.raises(ValueError, match="^quality must be"):
            loss.target_logit(THETA, quality=bad)


def test_h_zero_is_cosface_whatever_the_norms():
    torch.manual_seed(2)
    ours = AdaFace(s=30.0, m=0.35, h=0.0, num_classes=9, embedding_dim=8).double()
    cosface = CosFace(s=30.0, m=0.35, num_classes=9, embedding_dim=8).double()
    cosface.head.load_state_dict(ours.head.state_dict())
    for step in range(2):
        x, labels = batch(step)
        torch.testing.assert_close(ours(x, labels, "none"), cosface(x, labels, "none"), rtol=1e-12, atol=1e-12)


def test_quality_is_the_clipped_normalised_norm():
    loss = AdaFace(h=0.5)
    with torch.no_grad():
        loss.norm_mean.fill_(10.0)
        loss.norm_std.fill_(4.0)
    norms = torch.tensor([0.0, 2.0, 10.0, 14.0, 30.0, 500.0])
    want = (0.5 * (norms.clamp(1e-3, 100) - 10.0) / (4.0 + 1e-3)).clamp(-1, 1)
    torch.testing.assert_close(loss.quality(norms), want)
    assert loss.quality(norms)[[0, -1]].tolist() == [-1.0, 1.0]


def test_margin_fraction_zero_is_normface():
    x, labels = batch(0)
    loss = AdaFace(s=20.0, m=0.4, num_classes=9, embedding_dim=8).double().eval()
    normface = NormFace(s=20.0, num_classes=9, embedding_dim=8).double()
    normface.head.load_state_dict(loss.head.state_dict())
    with loss.margin_fraction(0.0):
        torch.testing.assert_close(loss(x, labels), normface(x, labels))
    assert loss.m == 0.4


# ---- the running statistics ---------------------------------------------------------------------------------

def test_statistics_move_in_training_mode_only():
    x, labels = batch(0)
    loss = AdaFace(t_alpha=0.25, num_classes=9, embedding_dim=8).double()
    assert loss.training and loss.norm_mean.item() == 20.0 and loss.norm_std.item() == 100.0  # the reference's start
    loss(x, labels)
    norms = x.norm(dim=1)
    assert loss.norm_mean.item() == pytest.approx(0.25 * norms.mean().item() + 0.75 * 20.0, rel=1e-12)
    assert loss.norm_std.item() == pytest.approx(0.25 * norms.std().item() + 0.75 * 100.0, rel=1e-12)
    state = loss.norm_mean.clone(), loss.norm_std.clone()
    loss.eval()
    loss(x, labels)
    loss.logits(x, labels)  # logits never update, in either mode
    assert torch.equal(loss.norm_mean, state[0]) and torch.equal(loss.norm_std, state[1])


def test_a_batch_of_one_leaves_the_statistics():
    """One sample has no standard deviation (the reference's ``std()`` would make σ NaN for good)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "degrees of freedom is <= 0"
        assert torch.ones(1).std().isnan()
    loss = AdaFace(t_alpha=1.0, num_classes=9, embedding_dim=8).double()
    x, labels = batch(0, n=1)
    value = loss(x, labels)
    assert torch.isfinite(value) and loss.norm_mean.item() == 20.0 and loss.norm_std.item() == 100.0
    torch.testing.assert_close(value, loss.eval()(x, labels))  # the same ẑ as without an update


@pytest.mark.parametrize("bad", ["nan", "inf", "labels"])
def test_a_refused_batch_leaves_the_statistics(bad):
    """A training batch that raises (non-finite features, bad labels) must not move μ and σ."""
    loss = AdaFace(t_alpha=0.5, num_classes=9, embedding_dim=8).double()
    x, labels = batch(0)
    if bad == "labels":
        labels = labels + 9
    else:
        x[3, 2] = math.nan if bad == "nan" else math.inf
    with pytest.raises(ValueError, match="labels must be in" if bad == "labels" else "^features must be finite"):
        loss(x, labels)
    assert loss.norm_mean.item() == 20.0 and loss.norm_std.item() == 100.0


def test_state_dict_holds_the_running_statistics():
    x, labels = batch(0)
    loss = AdaFace(s=32.0, m=0.3, h=0.5, t_alpha=0.1, num_classes=9, embedding_dim=8).double()
    for step in range(3):
        loss(*batch(step))
    state = loss.state_dict()
    assert set(state) == {"norm_mean", "norm_std", "head.weight"}
    assert state["norm_mean"].item() != 20.0 and state["norm_std"].item() != 100.0
    again = make("adaface", **loss.hparams()).double()
    again.load_state_dict(state)
    assert torch.equal(again.norm_mean, loss.norm_mean) and torch.equal(again.norm_std, loss.norm_std)
    torch.testing.assert_close(again.eval()(x, labels), loss.eval()(x, labels))
    torch.testing.assert_close(again.train()(x, labels), loss.train()(x, labels))  # and the next update


# ---- norms ------------------------------------------------------------------------------------------------

def cosine_input(n=5, c=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cos = torch.rand(n, c, generator=gen) * 2 - 1
    return cos, torch.rand(n, generator=gen) * 30, torch.randint(0, c, (n,), generator=gen)


def test_cosines_with_norms_equal_features_through_the_head():
    torch.manual_seed(3)
    x, labels = batch(0)
    with_head = AdaFace(num_classes=9, embedding_dim=8, t_alpha=0.2).double()
    without = AdaFace(t_alpha=0.2).double()
    cos = with_head.head(x).detach()
    torch.testing.assert_close(without(cos, labels, norms=x.norm(dim=1)), with_head(x, labels).detach())
    assert torch.equal(without.norm_mean, with_head.norm_mean)
    z = without.logits(cos, labels, norms=x.norm(dim=1))
    rows = torch.arange(len(labels))
    quality = without.quality(x.norm(dim=1))
    torch.testing.assert_close(z[rows, labels], without.target_logit(torch.acos(cos[rows, labels]), quality))
    off = torch.ones_like(z, dtype=torch.bool)
    off[rows, labels] = False
    torch.testing.assert_close(z[off], without.other_logit(torch.acos(cos))[off])


def test_norms_input_errors():
    cos, norms, labels = cosine_input()
    loss = AdaFace()
    cases = [
        (lambda: loss(cos, labels), r"^norms must be given with cos_theta input: the features' norms, a tensor of "
                                    r"shape \(5,\)"),
        (lambda: loss.logits(cos, labels), r"^norms must be given"),
        (lambda: loss.logits_from_cos(cos, labels), r"^norms must be given: AdaFace's margin"),
        (lambda: loss(cos, labels, norms=norms[1:]), r"^norms must have shape \(5,\) to match the batch, got \(4,\)"),
        (lambda: loss(cos, labels, norms=norms[:, None]), r"^norms must have shape \(5,\)"),
        (lambda: loss(cos, labels, norms=norms.numpy()), r"^norms must be a torch.Tensor of shape \(5,\)"),
        (lambda: loss(cos, labels, norms=norms.tolist()), r"^norms must be a torch.Tensor"),
        (lambda: loss(cos, labels, norms=torch.full((5,), math.nan)), r"^norms must be finite"),
        (lambda: loss(cos, labels, norms=torch.full((5,), math.inf)), r"^norms must be finite"),
        (lambda: loss(cos, labels, norms=-norms), r"^norms must be >= 0"),
    ]
    with_head = AdaFace(num_classes=4, embedding_dim=3)
    x = torch.randn(5, 3)
    cases.append((lambda: with_head(x, labels, norms=norms), r"^norms must not be given when the loss owns a head"))
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
    assert loss.norm_mean.item() == 20.0  # none of them moved the statistics


# ---- test_common.py's cosine-input cases, with norms ----------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_finite_on_cosine_grid_with_norms(dtype):
    grid = torch.arange(-10, 11, dtype=DTYPE) / 10
    t, o = torch.meshgrid(grid, grid, indexing="ij")
    n = t.numel()
    cos = torch.stack([t.reshape(-1), o.reshape(-1), torch.ones(n, dtype=DTYPE), -torch.ones(n, dtype=DTYPE)], 1)
    cos = cos.to(dtype).requires_grad_()
    y = torch.zeros(n, dtype=torch.long)
    norms = torch.linspace(0, 200, n)  # ẑ from −1 to +1, the floor 10⁻³ and cap 100 included
    loss = AdaFace(h=1.0)
    values = loss(cos, y, reduction="none", norms=norms)
    assert values.dtype == torch.promote_types(dtype, torch.float32) and torch.isfinite(values).all()
    values.sum().backward()
    assert torch.isfinite(cos.grad).all()
    cos2 = cos.detach()[:, [1, 0, 2, 3]].clone().requires_grad_()
    loss(cos2, torch.ones_like(y), norms=norms).backward()
    assert torch.isfinite(cos2.grad).all()


def test_gradcheck_with_norms():
    gen = torch.Generator().manual_seed(5)
    cos = (torch.rand(4, 5, generator=gen, dtype=DTYPE) * 1.7 - 0.8).requires_grad_()
    y = torch.tensor([0, 4, 2, 1])
    norms = torch.tensor([5.0, 20.0, 60.0, 150.0], dtype=DTYPE)
    # eval(): in training mode every call would move μ and σ, and gradcheck needs one function
    loss = AdaFace(s=16.0, h=1.0).eval()
    assert torch.autograd.gradcheck(lambda c: loss(c, y, reduction="none", norms=norms), (cos,))
    # gradients of cos θ only: ẑ is taken without gradient, as the reference's clone().detach()
    norms_leaf = norms.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(cos, y, norms=norms_leaf), norms_leaf, allow_unused=True)
    assert grad is None or (grad == 0).all()


BAD_LABELS = {
    "too large": lambda y: torch.full_like(y, 4), "negative": lambda y: torch.full_like(y, -1),
    "float": lambda y: y.float(), "bool": lambda y: y > 0, "column": lambda y: y[:, None],
    "too long": lambda y: torch.cat([y, y[:1]]), "too short": lambda y: y[1:], "list": lambda y: y.tolist(),
}


@pytest.mark.parametrize("bad", list(BAD_LABELS))
def test_bad_labels_with_norms(bad):
    cos, norms, labels = cosine_input()
    with pytest.raises(ValueError, match="labels"):
        AdaFace()(cos, BAD_LABELS[bad](labels), norms=norms)


@pytest.mark.parametrize("shape", [(5,), (5, 1), (5, 4, 1)])
def test_bad_cosine_shape_with_norms(shape):
    _, norms, labels = cosine_input()
    with pytest.raises(ValueError, match="cos_theta"):
        AdaFace()(torch.zeros(*shape), labels, norms=norms)


def test_cosine_columns_must_match_num_classes_with_norms():
    with pytest.raises(ValueError, match="cos_theta must have 4 columns"):
        AdaFace(num_classes=4)(torch.zeros(3, 5), torch.tensor([0, 4, 1]), norms=torch.ones(3))


@pytest.mark.parametrize("value", [1.5, -1.01, 7.0])
def test_cosines_outside_unit_interval_with_norms(value):
    cos, norms, labels = cosine_input()
    cos[2, 1] = value
    with pytest.raises(ValueError, match=r"cos_theta must lie in \[-1, 1\]"):
        AdaFace()(cos, labels, norms=norms)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_cosines_with_norms(value):
    cos, norms, labels = cosine_input()
    cos[1, 0] = value
    with pytest.raises(ValueError, match="cos_theta must be finite"):
        AdaFace()(cos, labels, norms=norms)


def test_cosines_a_rounding_step_outside_are_tolerated_with_norms():
    cos = torch.tensor([[1.0 + 2e-4, -1.0 - 2e-4, 0.0], [-1.0 - 2e-4, 1.0 + 2e-4, 0.5]], requires_grad=True)
    value = AdaFace()(cos, torch.tensor([0, 0]), norms=torch.tensor([3.0, 40.0]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(cos.grad).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_is_refused_with_norms(reduction):
    cos, norms, labels = cosine_input()
    with pytest.raises(ValueError, match="cos_theta must hold at least one sample"):
        AdaFace()(cos[:0], labels[:0], reduction=reduction, norms=norms[:0])


@pytest.mark.parametrize("kind", ["numpy", "list"])
def test_array_likes_are_refused_by_name_with_norms(kind):
    cos, norms, labels = cosine_input()
    loss = AdaFace()
    bad = cos.numpy() if kind == "numpy" else cos.tolist()
    for call in (lambda v: loss(v, labels, norms=norms), loss.predict, loss.probabilities):
        with pytest.raises(ValueError, match=r"^cos_theta must be a torch.Tensor of shape .*torch.as_tensor"):
            call(bad)


def test_make_roundtrips_hparams_without_head():
    kw = {"s": 32.0, "m": 0.3, "h": 0.5, "t_alpha": 0.1}
    loss = make("adaface", **kw)
    hp = loss.hparams()
    assert hp == {**kw, "criterion": "softmax", "num_classes": None, "embedding_dim": None}
    again = make("adaface", **hp)
    assert repr(again) == repr(loss) == "AdaFace(s=32, m=0.3, h=0.5, t_alpha=0.1)"
    cos, norms, labels = cosine_input(n=7, c=5, seed=2)
    torch.testing.assert_close(again(cos, labels, norms=norms), loss(cos, labels, norms=norms))
