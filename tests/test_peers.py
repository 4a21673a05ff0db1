"""Which arclib setting reproduces which library: one test per row of the README's "arclib and the other
libraries" table.

InsightFace is not a package one can install for this, so its margin formulas are transcribed below, a few lines
each, from deepinsight/insightface, read at commit 7fadd420c2351d0ffa8cac403421c1a3ed733365 (July 2026):
``recognition/arcface_torch/losses.py`` (last changed in 9097cd7ba3449d2ec0e567bf7b4178e7ebdbd281, June 2023),
its earlier versions ede87b4a49e10a1ac243bb460e7a2d9156d977a1 (March 2021) and
2e2e8c97c7bc3e79a4d5403ae12cd5dd2bd69658 (January 2022), ``recognition/arcface_torch/partial_fc_v2.py``
(4f227ba5b4157df0a995a33bbd25c2e4036a82d5) and the original mxnet margin (``easy_margin`` false). Nothing of the
library is vendored. pytorch-metric-learning (the test extra) is called directly.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import ArcFaceLoss, CosFaceLoss, SphereFaceLoss

from arclib.distributed import ShardedMarginLoss
from arclib.losses import ArcFace, Combined, CosFace, SphereFace

DTYPE = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cosines(n: int = 40, c: int = 7, theta_max: float = math.pi, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random cosines (N, C) kept 0.02 rad away from 0 and π, with target angles spread over [0.02, theta_max]."""
    gen = torch.Generator().manual_seed(seed)
    theta = 0.02 + torch.rand(n, c, generator=gen, dtype=DTYPE) * (math.pi - 0.04)
    labels = torch.randint(0, c, (n,), generator=gen)
    rows = torch.arange(n)
    theta[rows, labels] = 0.02 + torch.rand(n, generator=gen, dtype=DTYPE) * (theta_max - 0.04)
    return torch.cos(theta), labels


def value_and_grad(fn, cos: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample loss, ∂ mean loss / ∂ cos θ) of ``fn(cos, labels)``, which returns the logits or the loss."""
    leaf = cos.clone().requires_grad_()
    out = fn(leaf, labels)
    per_sample = F.cross_entropy(out, labels, reduction="none") if out.dim() == 2 else out
    (grad,) = torch.autograd.grad(per_sample.mean(), leaf)
    return per_sample.detach(), grad


# ---- InsightFace, transcribed --------------------------------------------------------------------------------

def insightface_arcface(logits: torch.Tensor, labels: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """arcface_torch's ``ArcFace(s, m)`` and ``CombinedMarginLoss(s, 1, m, 0)`` (deepinsight/insightface
    recognition/arcface_torch/losses.py, transcribed from its public code). The margin is applied in place under
    ``torch.no_grad()``: the logits then hold cos(θ_y + m) at the target (and cos(arccos(cos θ)) elsewhere), but
    autograd still sees the cosines that came in, so the gradient is that of s·cos θ. That is the straight-through
    form t + (cos(arccos t + m) − t).detach()."""
    logits = logits.clone()  # the original modifies the matmul's output; here the test's leaf must stay intact
    index = torch.where(labels != -1)[0]
    target_logit = logits[index, labels[index].view(-1)]
    with torch.no_grad():
        target_logit.arccos_()
        logits.arccos_()
        final_target_logit = target_logit + m
        logits[index, labels[index].view(-1)] = final_target_logit
        logits.cos_()
    return logits * s


def insightface_combined(logits: torch.Tensor, labels: torch.Tensor, s: float, m1: float, m2: float,
                         m3: float) -> torch.Tensor:
    """arcface_torch's ``CombinedMarginLoss(s, m1, m2, m3).forward`` (same file, transcribed): ArcFace when
    m1 = 1 and m3 = 0, CosFace with m3 whenever m3 > 0 (m1 and m2 are then ignored), and a bare ``raise``
    otherwise."""
    if m1 == 1.0 and m3 == 0.0:
        return insightface_arcface(logits, labels, s, m2)
    if m3 > 0:
        logits = logits.clone()
        index = torch.where(labels != -1)[0]
        target_logit = logits[index, labels[index].view(-1)]
        logits[index, labels[index].view(-1)] = target_logit - m3
        return logits * s
    raise  # as in the original: outside an except block a bare raise is "RuntimeError: No active exception"


def insightface_arcface_2021(logits: torch.Tensor, labels: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """arcface_torch's ``ArcFace(s, m)`` of March 2021 (losses.py at ede87b4): ``cosine.acos_()``, m added at the
    target, ``cosine.cos_().mul_(s)``, all in place *with* autograd: cos(θ + m) everywhere, no tail, and its
    gradient."""
    cosine = logits.clone()
    index = torch.where(labels != -1)[0]
    m_hot = torch.zeros(index.size()[0], cosine.size()[1], dtype=cosine.dtype)
    m_hot.scatter_(1, labels[index, None], m)
    cosine.acos_()
    cosine[index] += m_hot
    return cosine.cos_().mul_(s)


def insightface_arcface_2022(logits: torch.Tensor, labels: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """arcface_torch's ``ArcFace(s, margin)`` of January 2022 (losses.py at 2e2e8c9): cos θ·cos m − sin θ·sin m
    where cos θ > cos(π − m), else cos θ − m·sin(π − m), with autograd: the original mxnet form."""
    logits = logits.clone()
    index = torch.where(labels != -1)[0]
    target_logit = logits[index, labels[index].view(-1)]
    sin_theta = torch.sqrt(1.0 - torch.pow(target_logit, 2))
    cos_theta_m = target_logit * math.cos(m) - sin_theta * math.sin(m)
    final_target_logit = torch.where(target_logit > math.cos(math.pi - m), cos_theta_m,
                                     target_logit - math.sin(math.pi - m) * m)
    logits[index, labels[index].view(-1)] = final_target_logit
    return logits * s


def mxnet_arcface(logits: torch.Tensor, labels: torch.Tensor, s: float, m: float) -> torch.Tensor:
    """The original mxnet ArcFace (insightface's train_softmax.py, easy_margin false): cos θ·cos m − sin θ·sin m
    where cos θ > cos(π − m), else cos θ − m·sin m, with the gradient of that expression."""
    rows = torch.arange(len(labels))
    cos_t = logits[rows, labels]
    new = cos_t * math.cos(m) - torch.sqrt(1.0 - cos_t * cos_t) * math.sin(m)
    keep = cos_t - math.sin(math.pi - m) * m
    target = torch.where(cos_t - math.cos(math.pi - m) > 0, new, keep)
    onehot = F.one_hot(labels, logits.shape[1]).bool()
    return s * torch.where(onehot, target[:, None], logits)


def test_insightface_arcface_today_is_tail_straight_through():
    """InsightFace arcface_torch today = ``ArcFace(tail="straight_through")``, value and gradient, also past
    θ* = π − m (where its value turns back up)."""
    cos, labels = cosines(theta_max=math.pi)
    theta_y = torch.acos(cos[torch.arange(len(labels)), labels])
    assert (theta_y > math.pi - 0.5).any()  # the comparison covers the tail
    want, want_grad = value_and_grad(lambda c, y: insightface_arcface(c, y, 64.0, 0.5), cos, labels)
    got, got_grad = value_and_grad(lambda c, y: ArcFace(s=64.0, m=0.5, tail="straight_through")(c, y, "none"),
                                   cos, labels)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("version, tail", [(insightface_arcface_2021, "none"), (insightface_arcface_2022, "fallback")])
def test_insightface_arcface_2021_and_2022(version, tail):
    """arcface_torch's earlier ArcFace: March 2021 = ``tail="none"`` (no treatment past θ*), January 2022 =
    ``tail="fallback"``; value and gradient on both sides of θ*."""
    cos, labels = cosines(theta_max=math.pi)
    want, want_grad = value_and_grad(lambda c, y: version(c, y, 64.0, 0.5), cos, labels)
    got, got_grad = value_and_grad(lambda c, y: ArcFace(s=64.0, m=0.5, tail=tail)(c, y, "none"), cos, labels)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-9)


def test_default_tail_continuous_differs_from_insightface_in_gradient_below_theta_star():
    """arclib's default ``tail="continuous"`` has InsightFace's value wherever θ_y < π − m, but the true
    gradient of cos(θ + m), not that of cos θ: the two differ on every target entry."""
    m = 0.5
    cos, labels = cosines(theta_max=math.pi - m - 0.05)
    want, want_grad = value_and_grad(lambda c, y: insightface_arcface(c, y, 8.0, m), cos, labels)
    got, got_grad = value_and_grad(lambda c, y: ArcFace(s=8.0, m=m)(c, y, "none"), cos, labels)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    rows = torch.arange(len(labels))
    target_ratio = got_grad[rows, labels] / want_grad[rows, labels]
    theta = torch.acos(cos[rows, labels])
    torch.testing.assert_close(target_ratio, torch.sin(theta + m) / torch.sin(theta))  # dψ/dcos θ vs 1
    assert ((target_ratio - 1).abs() > 1e-3).all()


def test_mxnet_original_arcface_is_tail_fallback():
    """The original mxnet ArcFace = ``ArcFace(tail="fallback")``, value and gradient, on both sides of θ*."""
    m = 0.5
    cos, labels = cosines(theta_max=math.pi)
    want, want_grad = value_and_grad(lambda c, y: mxnet_arcface(c, y, 64.0, m), cos, labels)
    got, got_grad = value_and_grad(lambda c, y: ArcFace(s=64.0, m=m, tail="fallback")(c, y, "none"), cos, labels)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-8, atol=1e-10)


def test_combined_follows_the_mxnet_formula_where_insightface_branches():
    """arclib's ``combined`` is cos(m1·θ + m2) − m3 for every (m1, m2, m3): (1, m2, 0) is ArcFace, (1, 0, m3)
    CosFace, and both agree with InsightFace's ``CombinedMarginLoss`` there. With m3 > 0 InsightFace drops m1 and
    m2 (it is CosFace with m3); with m1 ≠ 1 and m3 = 0 it raises."""
    s = 32.0
    cos, labels = cosines(theta_max=2.0)  # m1·θ + m2 stays below π for the margins used here
    rows = torch.arange(len(labels))

    def arclib(**margins):
        return value_and_grad(lambda c, y: Combined(s=s, **margins)(c, y, "none"), cos, labels)

    def insightface(*margins):
        return value_and_grad(lambda c, y: insightface_combined(c, y, s, *margins), cos, labels)

    for got, want in [(arclib(m1=1.0, m2=0.4, m3=0.0),
                       value_and_grad(lambda c, y: ArcFace(s=s, m=0.4)(c, y, "none"), cos, labels)),
                      (arclib(m1=1.0, m2=0.0, m3=0.3),
                       value_and_grad(lambda c, y: CosFace(s=s, m=0.3)(c, y, "none"), cos, labels)),
                      (arclib(m1=1.0, m2=0.0, m3=0.3), insightface(1.0, 0.0, 0.3)),
                      (value_and_grad(lambda c, y: Combined(s=s, m1=1.0, m2=0.4, m3=0.0, tail="straight_through")(
                          c, y, "none"), cos, labels), insightface(1.0, 0.4, 0.0))]:
        torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got[1], want[1], rtol=1e-8, atol=1e-10)

    # all three margins at once: the hand formula; InsightFace computes CosFace with m3 instead, or raises
    m1, m2, m3 = 1.2, 0.3, 0.2
    z = s * cos.clone()
    z[rows, labels] = s * (torch.cos(m1 * torch.acos(cos[rows, labels]) + m2) - m3)
    by_hand = F.cross_entropy(z, labels, reduction="none")
    got = arclib(m1=m1, m2=m2, m3=m3)[0]
    torch.testing.assert_close(got, by_hand, rtol=1e-10, atol=1e-10)
    ignored = insightface(m1, m2, m3)[0]
    torch.testing.assert_close(ignored, CosFace(s=s, m=m3)(cos, labels, "none"), rtol=1e-10, atol=1e-10)
    assert ((ignored - got).abs() > 1e-3).any()
    with pytest.raises(RuntimeError):
        insightface(m1, 0.0, 0.0)
    torch.testing.assert_close(arclib(m1=m1, m2=0.0, m3=0.0)[0],
                               F.cross_entropy(torch.where(F.one_hot(labels, cos.shape[1]).bool(),
                                                           s * torch.cos(m1 * torch.acos(cos)), s * cos),
                                               labels, reduction="none"), rtol=1e-10, atol=1e-10)


# ---- InsightFace's PartialFC_V2 against arclib's sampling ---------------------------------------------------

def sharded(sample_rate: float, rows: int = 10, dim: int = 4, s: float = 64.0) -> ShardedMarginLoss:
    """One process, torch.distributed not initialised: the shard is all of W."""
    torch.manual_seed(0)
    return ShardedMarginLoss(ArcFace(s=s, m=0.5), rows, dim, weight=torch.randn(rows, dim, dtype=DTYPE),
                             sample_rate=sample_rate)


def test_partialfc_budget_is_rounded_not_truncated():
    """arclib samples round(rate·C_local) centres (at least the positives); PartialFC_V2 takes
    int(rate·C_local): 3.9 centres are 4 here, 3 there."""
    loss = sharded(0.39)
    assert int(0.39 * 10) == 3 and round(0.39 * 10) == 4
    rows, sampled = loss.sample_centres(torch.tensor([2, 2, 7]))
    assert rows.shape[0] == 4 and set(sampled.tolist()) <= {0, 1, 2, 3}
    rows, _ = loss.sample_centres(torch.tensor([0, 1, 2, 3, 4, 5]))  # more positives than the budget: all of them
    assert rows.shape[0] == 6


def test_partialfc_samples_only_in_training():
    """PartialFC_V2 samples whenever sample_rate < 1, in eval mode too; arclib's eval mode scores every centre,
    so its loss there is the full loss whatever the random state."""
    x, labels = torch.randn(6, 4, dtype=DTYPE), torch.tensor([0, 3, 3, 5, 0, 5])  # 3 positives, 2 others drawn
    full = sharded(1.0)(x, labels)
    loss = sharded(0.5).eval()
    for seed in range(3):
        torch.manual_seed(seed)
        torch.testing.assert_close(loss(x, labels), full, rtol=1e-12, atol=1e-12)
    loss.train()
    torch.manual_seed(0)
    assert not torch.allclose(loss(x, labels), full)  # training does sample


def test_partialfc_loss_is_not_capped():
    """PartialFC_V2's DistCrossEntropy returns −mean(log(clamp_min(p_y, 1e-30))): no sample counts more than
    −log 1e-30 = 69.08. arclib keeps the exact loss of a sample far from its centre."""
    loss = sharded(1.0)
    w = loss.weight.detach()
    x = torch.stack([-w[3], w[5]])  # sample 0 points away from its own centre 3
    labels = torch.tensor([3, 5])
    got = loss(x, labels, reduction="none")
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    z = 64.0 * cos
    z[torch.arange(2), labels] = ArcFace(s=64.0, m=0.5).target_logit_from_cos(cos[torch.arange(2), labels])
    want = F.cross_entropy(z, labels, reduction="none")
    cap = -math.log(1e-30)
    assert cap == pytest.approx(69.0776, abs=1e-4) and want[0] > cap
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# ---- pytorch-metric-learning ---------------------------------------------------------------------------------

def features(n: int, d: int, c: int, seed: int, unit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=DTYPE) * 3
    return (F.normalize(x, dim=1) if unit else x), torch.randint(0, c, (n,), generator=gen)


def pml_pair(ours, pml, x: torch.Tensor, labels: torch.Tensor):
    """(loss, ∂/∂x, ∂/∂W as (C, d)) of ours and of pml, with the same W (PML stores it transposed, (d, C))."""
    with torch.no_grad():
        pml.W.copy_(ours.head.weight.T)
    out = []
    for module in (ours, pml):
        module.zero_grad(set_to_none=True)
        leaf = x.clone().requires_grad_()
        value = module(leaf, labels)
        value.backward()
        out.append((value.detach(), leaf.grad, ours.head.weight.grad if module is ours else pml.W.grad.T))
    return out


def assert_same(a, b, tol=1e-10):
    for got, want in zip(a, b, strict=True):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


def test_pml_arcface_margin_is_in_degrees():
    """PML's ``ArcFaceLoss(margin=28.6, scale=64)`` (its defaults) = ``ArcFace(s=64, m=math.radians(28.6),
    tail="fallback")``: the margin is in degrees (0.49916 rad, not 0.5), and PML applies the original fallback.
    The batch mean, with W transposed; value and gradients with respect to x and W."""
    assert ArcFaceLoss(num_classes=5, embedding_size=3).margin == pytest.approx(0.49916, abs=1e-5)
    torch.manual_seed(0)
    ours = ArcFace(s=64.0, m=math.radians(28.6), tail="fallback", num_classes=9, embedding_dim=2).double()
    x, labels = features(48, 2, 9, seed=0)
    with torch.no_grad():  # leave out targets within 0.05 rad of 0 and π, where arccos's slope blows up
        theta = torch.acos(ours.scores(x)[torch.arange(len(labels)), labels])
    keep = (theta > 0.05) & (theta < math.pi - 0.05)
    x, labels, theta = x[keep], labels[keep], theta[keep]
    assert (theta > math.pi - 0.5).any()  # some samples are past θ*: the fallback is compared too
    got, want = pml_pair(ours, ArcFaceLoss(num_classes=9, embedding_size=2).double(), x, labels)
    assert_same(got, want)
    torch.manual_seed(0)
    half = ArcFace(s=64.0, m=0.5, tail="fallback", num_classes=9, embedding_dim=2).double()
    assert not torch.allclose(half(x, labels), want[0])  # m = 0.5 rad is another loss


def test_pml_cosface_is_cosface():
    """PML's ``CosFaceLoss(margin=0.35, scale=64)`` (its defaults) = ``CosFace(s=64, m=0.35)``; PML reduces by
    the mean over the batch."""
    torch.manual_seed(1)
    ours = CosFace(num_classes=7, embedding_dim=16).double()
    x, labels = features(24, 16, 7, seed=1)
    got, want = pml_pair(ours, CosFaceLoss(num_classes=7, embedding_size=16).double(), x, labels)
    assert_same(got, want)
    torch.testing.assert_close(want[0], ours(x, labels, reduction="none").mean().detach())


def test_pml_sphereface_scales_by_the_feature_norm():
    """PML's ``SphereFaceLoss(margin=m, scale=s)`` multiplies the logits by ‖x‖·scale, arclib's
    ``SphereFace(s, m)`` by s alone: for unit-norm features the values and W's gradient agree, and arclib's
    feature gradient is PML's without its radial part (PML's ‖x‖ also pulls on the feature norm)."""
    torch.manual_seed(2)
    ours = SphereFace(s=8.0, m=4, num_classes=6, embedding_dim=5).double()
    pml = SphereFaceLoss(num_classes=6, embedding_size=5, margin=4, scale=8.0).double()
    x, labels = features(24, 5, 6, seed=2, unit=True)
    got, want = pml_pair(ours, pml, x, labels)
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got[2], want[2], rtol=1e-8, atol=1e-10)
    radial = (want[1] * x).sum(1, keepdim=True)
    torch.testing.assert_close(got[1], want[1] - radial * x, rtol=1e-8, atol=1e-10)
    assert (radial.abs() > 1e-6).any()  # PML's radial part is really there
    got, want = pml_pair(ours, pml, 3 * x, labels)  # ‖x‖ = 3: PML's logits are three times as large
    assert not torch.allclose(got[0], want[0])
