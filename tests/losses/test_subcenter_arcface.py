"""Sub-center ArcFace (Deng et al., ECCV 2020): ArcFace on cos θ_j = max_k cos θ_{j,k}, the nearest of each class's
K sub-centres, checked by hand (numpy), against pytorch-metric-learning's ``SubCenterArcFaceLoss`` (value and
gradients, ``get_outliers``), and its after-training helpers ``dominant_sub_centres``, ``outliers`` and
``single_centre_head``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import SubCenterArcFaceLoss

from arclib.head import CosineHead
from arclib.losses import ArcFace, SubCenterArcFace, SubCenterHead


def psi_ref(m, tail):
    """ψ(θ) of ArcFace, each tail from its definition (tests/losses/test_arcface.py)."""
    def psi(theta):
        raw = np.cos(theta + m)
        beyond = theta > math.pi - m
        if tail == "none":
            return raw
        if tail == "continuous":  # cos θ − cos θ* − 1 past θ* = π − m, cos θ* = −cos m
            return np.where(beyond, np.cos(theta) + math.cos(m) - 1, raw)
        if tail == "fallback":
            return np.where(beyond, np.cos(theta) - m * math.sin(m), raw)
        raise AssertionError(tail)
    return psi


def logits_ref(cos3, y, s, m, tail):
    """z (N, C) from the sub-centre cosines (N, C, K): the max over k, then ArcFace's s·ψ(θ_y) at the target."""
    cos = cos3.max(axis=2)
    z = s * cos
    rows = np.arange(len(y))
    z[rows, y] = s * psi_ref(m, tail)(np.arccos(np.clip(cos[rows, y], -1, 1)))
    return z


CASES = [(64.0, 0.5, 3, "none", "softmax"), (30.0, 0.3, 2, "continuous", "softmax"),
         (16.0, 1.0, 4, "fallback", "softmax"), (8.0, 0.4, 3, "continuous", "sparsemax"),
         (20.0, 0.5, 1, "continuous", "softmax")]


@pytest.mark.parametrize(("s", "m", "k", "tail", "crit"), CASES)
def test_matches_the_formula_on_3d_and_2d_cosines(ref, s, m, k, tail, crit):
    for seed in ref.SEEDS:
        rng = np.random.default_rng(seed)
        n, c, _ = ref.random_shape(rng)
        y = rng.integers(0, c, n)
        cos3 = rng.uniform(-1, 1, (n, c, k))
        want = ref.criterion(logits_ref(cos3, y, s, m, tail), y, crit)
        loss = SubCenterArcFace(s=s, m=m, sub_centres=k, tail=tail, criterion=crit)
        for cos in (cos3, cos3.max(axis=2)):  # the sub-centre cosines, or already reduced per class
            got = loss(torch.from_numpy(cos), torch.from_numpy(y), reduction="none")
            assert got.dtype == torch.float64 and got.shape == (n,)
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(loss(torch.from_numpy(cos3), torch.from_numpy(y)).item(), want.mean(),
                                   rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("s", "m", "k", "tail", "crit"), CASES)
def test_matches_the_formula_on_features(ref, s, m, k, tail, crit):
    """The head: normalise x and every sub-centre here, dot, reshape row j·K + k to (j, k), max over k."""
    for seed in ref.SEEDS:
        rng = np.random.default_rng(seed)
        n, c, d = ref.random_shape(rng)
        y = rng.integers(0, c, n)
        loss = SubCenterArcFace(s=s, m=m, sub_centres=k, tail=tail, criterion=crit, num_classes=c,
                                embedding_dim=d).double()
        assert isinstance(loss.head, SubCenterHead)
        w = loss.head.weight.detach().numpy()
        assert w.shape == (c * k, d)
        x = rng.normal(size=(n, d))
        cos3 = (ref.normalise(x) @ ref.normalise(w).T).reshape(n, c, k)
        want = ref.criterion(logits_ref(cos3, y, s, m, tail), y, crit)
        got = loss(torch.from_numpy(x), torch.from_numpy(y), reduction="none")
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(loss.head.sub_cosines(torch.from_numpy(x)), torch.from_numpy(cos3))


def test_one_sub_centre_is_arcface():
    torch.manual_seed(0)
    ours = SubCenterArcFace(s=30.0, m=0.4, sub_centres=1, num_classes=7, embedding_dim=5).double()
    arc = ArcFace(s=30.0, m=0.4, num_classes=7, embedding_dim=5).double()
    with torch.no_grad():
        arc.head.weight.copy_(ours.head.weight)
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randint(0, 7, (12,))
    torch.testing.assert_close(ours(x, y, reduction="none"), arc(x, y, reduction="none"), rtol=1e-12, atol=1e-12)


def test_only_the_nearest_sub_centre_of_each_class_gets_a_gradient():
    torch.manual_seed(1)
    loss = SubCenterArcFace(sub_centres=3, num_classes=5, embedding_dim=4).double()
    x, y = torch.randn(1, 4, dtype=torch.float64), torch.tensor([2])
    loss(x, y).backward()
    nearest = loss.head.sub_cosines(x)[0].argmax(dim=1)  # (C,)
    grad = loss.head.weight.grad.view(5, 3, 4)
    for j in range(5):
        for k in range(3):
            assert (grad[j, k].abs().sum() > 0) == (k == nearest[j]), (j, k)


def test_gradcheck_on_sub_centre_cosines():
    gen = torch.Generator().manual_seed(3)
    cos3 = (torch.rand(4, 5, 3, generator=gen, dtype=torch.float64) * 1.7 - 0.8).requires_grad_()
    y = torch.tensor([0, 4, 2, 1])
    loss = SubCenterArcFace(s=16.0, m=0.5, sub_centres=3)
    assert torch.autograd.gradcheck(lambda c: loss(c, y, reduction="none"), (cos3,))


# ---- pytorch-metric-learning ------------------------------------------------------------------------------

def pml_pair(ours, pml, x, labels):
    """(loss, ∂/∂x, ∂/∂W as (C·K, d)) of ours and of pml with the same sub-centres (pml's W is ours transposed)."""
    with torch.no_grad():
        pml.W.copy_(ours.head.weight.T)
    out = []
    for module in (ours, pml):
        leaf = x.clone().requires_grad_()
        value = module(leaf, labels)
        value.backward()
        out.append((value.detach(), leaf.grad, ours.head.weight.grad if module is ours else pml.W.grad.T))
    return out


def test_pml_sub_center_arcface_is_tail_fallback_in_degrees():
    """pml's ``SubCenterArcFaceLoss(margin=28.6, scale=64, sub_centers=3)`` (its defaults) = ``SubCenterArcFace(s=64,
    m=math.radians(28.6), sub_centres=3, tail="fallback")``: the margin is in degrees, W is (d, C·K) with the same
    class-major order, and past θ* = π − m pml uses cos θ − m·sin m, the original InsightFace fallback (as its
    ``ArcFaceLoss``, tests/test_peers.py). Value and gradients of x and W, with samples on both sides of θ*."""
    c, k, d = 6, 3, 4
    pml = SubCenterArcFaceLoss(num_classes=c, embedding_size=d).double()
    assert pml.margin == pytest.approx(math.radians(28.6)) and pml.scale == 64 and pml.sub_centers == k
    assert tuple(pml.W.shape) == (d, c * k)
    torch.manual_seed(4)
    ours = SubCenterArcFace(s=64.0, m=math.radians(28.6), sub_centres=k, tail="fallback", num_classes=c,
                            embedding_dim=d).double()
    x, labels = torch.randn(30, d, dtype=torch.float64), torch.randint(0, c, (30,))
    with torch.no_grad():  # class 0's sub-centres close together, and five samples of class 0 opposite them
        u = torch.nn.functional.normalize(torch.randn(d, dtype=torch.float64), dim=0)
        ours.head.weight[:k] = u + 0.05 * torch.randn(k, d, dtype=torch.float64)
        x[:5] = -u + 0.05 * torch.randn(5, d, dtype=torch.float64)
        labels[:5] = 0
    theta = torch.acos(ours.scores(x)[torch.arange(30), labels])
    assert (theta > math.pi - ours.m).any() and (theta < math.pi - ours.m).any()
    (got, got_x, got_w), (want, want_x, want_w) = pml_pair(ours, pml, x, labels)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_x, want_x, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(got_w, want_w, rtol=1e-8, atol=1e-10)
    # ... and not the default tail: past θ* arclib's continuous tail differs from pml
    ours.tail = "continuous"
    assert not torch.allclose(ours(x, labels), want)


def clustered(c=4, k=3, d=8, per_class=12, seed=5):
    """A SubCenterArcFace head and samples: most of class j near one sub-centre (not always sub-centre 0), a few
    near another, two far from all; class c − 1 has no samples."""
    torch.manual_seed(seed)
    loss = SubCenterArcFace(sub_centres=k, num_classes=c, embedding_dim=d).double()
    w = loss.head.weight.detach().view(c, k, d)
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for j in range(c - 1):
        main, other = (j + 1) % k, j % k
        for i in range(per_class):
            sub = other if i < 3 else main
            xs.append(w[j, sub] / w[j, sub].norm() + 0.3 * torch.randn(d, generator=gen, dtype=torch.float64))
            ys.append(j)
        for _ in range(2):  # outliers: opposite the class's main sub-centre
            xs.append(-w[j, main] + 0.3 * torch.randn(d, generator=gen, dtype=torch.float64))
            ys.append(j)
    return loss, torch.stack(xs), torch.tensor(ys)


def test_dominant_sub_centres_by_hand():
    loss, x, y = clustered()
    dominant = loss.dominant_sub_centres(x, y)
    assert dominant.dtype == torch.long and dominant.shape == (4,)
    sub = loss.head.sub_cosines(x).detach().numpy()
    for j in range(4):
        nearest = sub[y.numpy() == j, j].argmax(axis=1)
        want = np.bincount(nearest, minlength=3).argmax() if len(nearest) else 0  # no samples: 0
        assert dominant[j] == want, j
    assert dominant.tolist()[:3] == [1, 2, 0]  # clustered() put each class's main cluster there


@pytest.mark.parametrize("threshold", [75.0, 40.0, 100.0])
def test_outliers_and_dominant_centres_equal_pml_get_outliers(threshold):
    c, k, d = 4, 3, 8
    loss, x, y = clustered(c, k, d)
    pml = SubCenterArcFaceLoss(num_classes=c, embedding_size=d).double()
    with torch.no_grad():
        pml.W.copy_(loss.head.weight.T)
    pml_outliers, pml_dominant = pml.get_outliers(x, y, threshold=threshold)
    mask = loss.outliers(x, y, threshold_degrees=threshold)
    assert mask.dtype == torch.bool and mask.shape == (len(y),)
    assert sorted(mask.nonzero().squeeze(1).tolist()) == sorted(pml_outliers.tolist())
    if threshold == 75.0:
        assert mask.sum() >= 6  # the two planted outliers of each populated class at least
    # the dominant centres: pml returns them as W's columns (d, C); classes without samples hold garbage there
    head = loss.single_centre_head(loss.dominant_sub_centres(x, y))
    populated = y.unique()
    torch.testing.assert_close(head.weight[populated], pml_dominant.T[populated], rtol=0, atol=0)


def test_outliers_by_hand():
    loss, x, y = clustered()
    dominant = loss.dominant_sub_centres(x, y)
    cos = loss.head.sub_cosines(x)[torch.arange(len(y)), y, dominant[y]]
    torch.testing.assert_close(loss.outliers(x, y), torch.rad2deg(torch.acos(cos)) > 75)
    assert loss.outliers(x, y, threshold_degrees=180).sum() == 0
    assert loss.outliers(x, y, threshold_degrees=0).all()


def test_single_centre_head_cosines_are_the_dominant_sub_centres():
    loss, x, y = clustered()
    dominant = loss.dominant_sub_centres(x, y)
    state = torch.get_rng_state()
    head = loss.single_centre_head(dominant)
    assert torch.equal(torch.get_rng_state(), state)  # W is copied in, no random initialisation drawn
    assert type(head) is CosineHead and head.weight.shape == (4, 8) and head.weight.dtype == torch.float64
    want = loss.head.sub_cosines(x)[:, torch.arange(4), dominant]  # (N, C): class j's sub-centre dominant[j]
    torch.testing.assert_close(head(x), want, rtol=1e-12, atol=1e-12)
    # a copy: training the new head leaves the sub-centres alone
    with torch.no_grad():
        head.weight.zero_()
    assert loss.head.weight.abs().sum() > 0
    # ArcFace on the dominant centres only: the paper's second stage, started from the cleaned centres
    arc = ArcFace(s=64.0, m=0.5, num_classes=4, embedding_dim=8).double()
    arc.head.load_state_dict(loss.single_centre_head(dominant).state_dict())
    keep = ~loss.outliers(x, y)
    assert torch.isfinite(arc(x[keep], y[keep]))


def test_single_centre_head_in_two_dimensions_many_classes_is_quick():
    """d <= 3 with many classes: CosineHead would spread random centres first (seconds); the copy skips that."""
    loss = SubCenterArcFace(sub_centres=2, num_classes=4000, embedding_dim=2)
    head = loss.single_centre_head(torch.ones(4000, dtype=torch.long))
    torch.testing.assert_close(head.weight, loss.head.weight.detach().view(4000, 2, 2)[:, 1])


# ---- bad inputs -------------------------------------------------------------------------------------------

def test_zero_sub_centre_is_refused_naming_class_and_sub_centre():
    loss = SubCenterArcFace(sub_centres=3, num_classes=4, embedding_dim=5)
    with torch.no_grad():
        loss.head.weight[7] = 0  # row j·K + k = 7: class 2, sub-centre 1
    x, y = torch.randn(3, 5), torch.tensor([0, 1, 2])
    for call in (lambda: loss(x, y), lambda: loss.dominant_sub_centres(x, y), lambda: loss.predict(x)):
        with pytest.raises(ValueError, match=r"^weight rows \(class centres\) must have norm >= 1e-12.*"
                                             r"the row of class 2 \(sub-centre 1\) is shorter"):
            call()


@pytest.mark.parametrize(("shape", "match"), [((5, 4, 2), r"\(N, C\) or \(N, C, 3\)"),
                                              ((5, 1, 3), r"\(N, C\) or \(N, C, 3\)"),
                                              ((5, 4, 3, 1), r"cos_theta must have shape \(N, C\)")])
def test_bad_sub_centre_cosine_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        SubCenterArcFace(sub_centres=3)(torch.zeros(*shape), torch.zeros(5, dtype=torch.long))


def test_sub_centre_cosines_must_match_num_classes():
    with pytest.raises(ValueError, match="cos_theta must have 4 columns"):
        SubCenterArcFace(sub_centres=3, num_classes=4)(torch.zeros(2, 5, 3), torch.tensor([0, 1]))


@pytest.mark.parametrize(("value", "match"), [(-math.inf, "cos_theta must be finite"),
                                              (math.nan, "cos_theta must be finite"),
                                              (-1.5, r"cos_theta must lie in \[-1, 1\]"),
                                              (-7.0, r"cos_theta must lie in \[-1, 1\]")])
def test_a_bad_value_on_a_non_maximal_sub_centre_is_still_refused(value, match):
    """The max over k would hide −inf or −1.5 on a sub-centre that is not the nearest: checked before the max."""
    cos3 = torch.zeros(2, 4, 3)
    cos3[1, 2, 0] = value
    assert cos3.max(dim=2).values[1, 2] == 0 or math.isnan(value)
    with pytest.raises(ValueError, match=match):
        SubCenterArcFace(sub_centres=3)(cos3, torch.tensor([0, 1]))


def test_cleaning_helpers_refuse_bad_inputs():
    loss, x, y = clustered()
    for call in (lambda: SubCenterArcFace().dominant_sub_centres(x, y), lambda: SubCenterArcFace().outliers(x, y),
                 lambda: SubCenterArcFace().single_centre_head(torch.zeros(4, dtype=torch.long))):
        with pytest.raises(ValueError, match="need.* a loss built with embedding_dim"):
            call()
    for fn in (loss.dominant_sub_centres, loss.outliers):
        with pytest.raises(ValueError, match=r"^features must have shape \(N, 8\)"):
            fn(x[:, :3], y)
        with pytest.raises(ValueError, match=r"^features must be a torch.Tensor"):
            fn(x.numpy(), y)
        bad = x.clone()
        bad[3, 1] = math.nan
        with pytest.raises(ValueError, match=r"^features must be finite"):
            fn(bad, y)
        with pytest.raises(ValueError, match=r"^labels must be in \[0, 4\)"):
            fn(x, torch.full_like(y, 4))
        with pytest.raises(ValueError, match=r"^labels must have shape"):
            fn(x, y[1:])
    for threshold in (-1.0, 181.0, math.nan, "wide"):
        with pytest.raises(ValueError, match=r"^threshold_degrees must"):
            loss.outliers(x, y, threshold_degrees=threshold)
    for dominant in (torch.zeros(4), torch.zeros(4, dtype=torch.bool), torch.zeros(3, dtype=torch.long),
                     torch.full((4,), 3), torch.full((4,), -1), torch.zeros(4, 1, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"^dominant must be an integer tensor of shape \(4,\) with values in "
                                             r"\[0, 3\)"):
            loss.single_centre_head(dominant)
    with pytest.raises(ValueError, match=r"^dominant must be a torch.Tensor"):
        loss.single_centre_head([0, 0, 0, 0])


def test_hparams_name_the_sub_centres():
    loss = SubCenterArcFace(s=32.0, m=0.3, sub_centres=5, num_classes=3, embedding_dim=2)
    assert loss.hparams() == {"s": 32.0, "m": 0.3, "sub_centres": 5, "tail": "continuous", "criterion": "softmax",
                              "num_classes": 3, "embedding_dim": 2}
    assert "sub_centres=5" in repr(loss.head) and "sub_centres=5" in repr(loss)
    assert loss.head.weight.shape == (15, 2)


def test_outliers_keep_float64_precision_at_the_threshold():
    """Two float64 samples 1e-10 rad either side of 75° from the dominant sub-centre: one is an outlier, the other
    not (features rounded to float32 first would land both on the same side)."""
    loss = SubCenterArcFace(sub_centres=3, num_classes=2, embedding_dim=2).double()
    angles = torch.tensor([0.0, 2.0, 4.0, 0.5, 2.5, 4.5], dtype=torch.float64)  # class 0: rows 0-2, class 1: 3-5
    with torch.no_grad():
        loss.head.weight.copy_(torch.stack([torch.cos(angles), torch.sin(angles)], 1))
    phi = torch.tensor([0.1, -0.1, 0.05, math.radians(75) + 1e-10, math.radians(75) - 1e-10], dtype=torch.float64)
    x = torch.stack([torch.cos(phi), torch.sin(phi)], 1)
    y = torch.zeros(5, dtype=torch.long)
    assert loss.dominant_sub_centres(x, y)[0] == 0
    assert loss.outliers(x, y).tolist() == [False, False, False, True, False]
