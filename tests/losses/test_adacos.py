"""AdaCos (Zhang et al., CVPR 2019): NormFace's s·cos θ_j with the fixed scale s̃_f = √2·ln(C − 1) to start from and
the dynamic scale s̃_d of the paper at every training step, against a plain numpy transcription of that
algorithm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib.losses import AdaCos, NormFace, make
from arclib.losses.adacos import fixed_scale


def algorithm_1_step(s_prev: float, cos: np.ndarray, y: np.ndarray, median=np.median) -> float:
    """One step of the paper's dynamic scale, written from its formula:

    B_avg = (1/N) Σ_i Σ_{k≠y_i} e^{s̃(t−1)·cos θ_ik}   (with the previous scale)
    θ_med = median_i θ_{i,y_i}                        (the target angles of the batch)
    s̃(t)  = log B_avg / cos(min(π/4, θ_med))
    """
    n = len(y)
    non_target = np.ones(cos.shape, dtype=bool)
    non_target[np.arange(n), y] = False
    b_avg = np.exp(s_prev * cos[non_target]).sum() / n
    theta_med = median(np.arccos(cos[np.arange(n), y]))
    return math.log(b_avg) / math.cos(min(math.pi / 4, theta_med))


def lower_median(a: np.ndarray) -> float:
    """torch.median's median: the lower of the two middle values for an even count."""
    return float(np.sort(a)[(len(a) - 1) // 2])


def cross_entropy(z, y):
    top = z.max(axis=1, keepdims=True)
    return np.log(np.exp(z - top).sum(axis=1)) + top[:, 0] - z[np.arange(len(y)), y]


# ---- the fixed scale ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c", [3, 10, 1000, 85742])
def test_fixed_scale_is_sqrt2_ln_c_minus_1(c):
    assert fixed_scale(c) == pytest.approx(math.sqrt(2) * math.log(c - 1), rel=1e-15)
    assert AdaCos(num_classes=c).s == fixed_scale(c)
    assert AdaCos(num_classes=c, embedding_dim=4).s == fixed_scale(c)


def test_without_num_classes_the_scale_is_set_at_the_first_call():
    loss = AdaCos().eval()
    assert loss.hparams()["s"] is None
    cos = torch.rand(6, 10, dtype=torch.float64) * 2 - 1
    y = torch.randint(0, 10, (6,))
    value = loss(cos, y)
    assert loss.s == fixed_scale(10)
    torch.testing.assert_close(value, NormFace(s=fixed_scale(10))(cos, y))


def test_two_classes_need_a_starting_s():
    with pytest.raises(ValueError, match=r"^num_classes must be in \[3, "):
        fixed_scale(2)
    with pytest.raises(ValueError, match=r"^num_classes must be >= 3 for AdaCos's starting scale"):
        AdaCos(num_classes=2)
    with pytest.raises(ValueError, match=r"^s must be given for AdaCos on two classes"):
        AdaCos()(torch.zeros(3, 2), torch.tensor([0, 1, 0]))
    assert AdaCos(s=4.0, num_classes=2).s == 4.0


# ---- the dynamic scale ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target_low", [-1.0, 0.8])  # θ_med above π/4 (min takes π/4), and below it
def test_training_steps_follow_algorithm_1(target_low):
    """Five training steps on odd batches (where every median is the middle angle): after each, s is the
    transcription's s̃(t), and the batch's loss is the cross-entropy of s̃(t)·cos θ (the new scale, as the
    algorithm computes the loss after the update)."""
    rng = np.random.default_rng(7)
    c = 12
    loss = AdaCos(num_classes=c)
    s = math.sqrt(2) * math.log(c - 1)
    clipped = []
    for _ in range(5):
        n = 2 * int(rng.integers(3, 12)) + 1
        cos = rng.uniform(-1, 1, (n, c))
        y = rng.integers(0, c, n)
        cos[np.arange(n), y] = rng.uniform(target_low, 1, n)
        s_new = algorithm_1_step(s, cos, y)
        got = loss(torch.from_numpy(cos), torch.from_numpy(y), reduction="none")
        assert loss.s == pytest.approx(s_new, rel=1e-12)
        np.testing.assert_allclose(got.numpy(), cross_entropy(s_new * cos, y), rtol=1e-10, atol=1e-10)
        clipped.append(np.median(np.arccos(cos[np.arange(n), y])) > math.pi / 4)
        s = s_new
    assert all(clipped) if target_low < 0 else not any(clipped)


def test_features_through_the_head_follow_algorithm_1(ref):
    torch.manual_seed(8)
    loss = AdaCos(num_classes=20, embedding_dim=6).double()
    s = fixed_scale(20)
    for step in range(3):
        rng = np.random.default_rng(step)
        x, y = rng.normal(size=(15, 6)), rng.integers(0, 20, 15)
        cos = ref.normalise(x) @ ref.normalise(loss.head.weight.detach().numpy()).T
        s = algorithm_1_step(s, cos, y)
        loss(torch.from_numpy(x), torch.from_numpy(y))
        assert loss.s == pytest.approx(s, rel=1e-10)


def test_an_even_batch_takes_the_lower_middle_angle():
    """For an even batch arclib's median is torch.median's, the lower of the two middle target angles (as
    4uiiurz1/pytorch-adacos); numpy's median, their mean, gives another s when θ_med < π/4."""
    cos = np.array([[0.95, 0.1, -0.2], [0.1, 0.75, 0.0], [-0.3, 0.2, 0.9], [0.8, 0.3, 0.1]])
    y = np.array([0, 1, 2, 0])
    s0 = 5.0
    loss = AdaCos(s=s0)
    new = loss.update_scale(torch.from_numpy(cos), torch.from_numpy(y))
    assert new == loss.s == pytest.approx(algorithm_1_step(s0, cos, y, median=lower_median), rel=1e-12)
    assert abs(new - algorithm_1_step(s0, cos, y)) > 1e-3


def test_s_changes_in_training_mode_only():
    gen = torch.Generator().manual_seed(9)
    cos = torch.rand(9, 8, generator=gen, dtype=torch.float64) * 2 - 1
    y = torch.randint(0, 8, (9,), generator=gen)
    loss = AdaCos(num_classes=8)
    start = loss.s
    loss.eval()
    first = loss(cos, y)
    loss.logits(cos, y)
    loss.probabilities(cos)
    assert loss.s == start
    torch.testing.assert_close(loss(cos, y), first)
    torch.testing.assert_close(first, NormFace(s=start)(cos, y))  # eval: NormFace at the current s
    loss.train()
    loss(cos, y)
    assert loss.s != start
    after = loss.s
    loss.logits(cos, y)  # logits never update
    assert loss.s == after


def test_the_update_runs_without_gradient():
    cos = (torch.rand(7, 6, dtype=torch.float64) * 2 - 1).requires_grad_()
    y = torch.randint(0, 6, (7,))
    loss = AdaCos(num_classes=6)
    value = loss(cos, y)
    assert isinstance(loss.s, float)
    (grad,) = torch.autograd.grad(value, cos)
    # the gradient of CE(s·cos θ) with s a constant
    leaf = cos.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad(NormFace(s=loss.s)(leaf, y), leaf)
    torch.testing.assert_close(grad, want)


# ---- when the update is not taken -----------------------------------------------------------------------------

def test_keeps_the_previous_s_when_the_update_is_not_positive():
    """B_avg ≤ 1 gives log B_avg ≤ 0, a scale that is no scale: the previous s stays (possible with few classes)."""
    loss = AdaCos(s=1.0, num_classes=2)
    cos = torch.tensor([[0.9, -1.0], [-1.0, 0.8], [0.7, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0])
    assert math.exp(-1.0) < 1  # B_avg = e^{−1}: log B_avg = −1
    value = loss(cos, y)
    assert loss.s == 1.0
    torch.testing.assert_close(value, NormFace(s=1.0)(cos, y))
    # B_avg = 1 exactly: s̃ = 0, not taken either
    zero = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64)
    assert loss.update_scale(zero, torch.tensor([0, 1])) == 1.0
    # and a positive update is taken (B_avg = e^{0.5} > 1)
    half = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    assert loss.update_scale(half, torch.tensor([0, 1])) == pytest.approx(0.5 / math.cos(math.pi / 4))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_refused_batch_keeps_s(value):
    loss = AdaCos(num_classes=5, embedding_dim=3)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    start = loss.s
    bad = x.clone()
    bad[2, 1] = value
    with pytest.raises(ValueError, match="^features must be finite"):
        loss(bad, y)
    with pytest.raises(ValueError, match="labels must be in"):
        loss(x, y + 5)
    with pytest.raises(ValueError, match="features must hold at least one sample"):
        loss(x[:0], y[:0])
    assert loss.s == start


# ---- checkpoints and hparams ---------------------------------------------------------------------------------

def test_state_dict_round_trip_keeps_the_current_s():
    torch.manual_seed(10)
    loss = AdaCos(num_classes=7, embedding_dim=4)
    for _ in range(3):
        loss(torch.randn(9, 4), torch.randint(0, 7, (9,)))
    assert loss.s != fixed_scale(7)
    state = loss.state_dict()
    assert "_extra_state" in state and state["_extra_state"]["s"] == loss.s
    again = make("adacos", **loss.hparams())
    assert again.s == fixed_scale(7)  # hparams hold the starting value ...
    again.load_state_dict(state)
    assert again.s == loss.s  # ... the checkpoint the current one
    x, y = torch.randn(5, 4), torch.randint(0, 7, (5,))
    torch.testing.assert_close(again.eval()(x, y), loss.eval()(x, y))
    torch.testing.assert_close(again.train()(x, y), loss.train()(x, y))  # and the next update alike
    assert again.s == loss.s


def test_a_loaded_scale_is_not_replaced_by_the_first_call():
    loss = AdaCos()
    loss(torch.rand(5, 9, dtype=torch.float64) * 2 - 1, torch.randint(0, 9, (5,)))
    fresh = AdaCos()
    fresh.load_state_dict(loss.state_dict())
    fresh.eval()(torch.zeros(2, 9), torch.tensor([0, 1]))
    assert fresh.s == loss.s != fixed_scale(9)


@pytest.mark.parametrize("kw", [{}, {"s": 5.0}, {"num_classes": 10}, {"s": 3.0, "num_classes": 2, "embedding_dim": 4},
                                {"num_classes": 6, "embedding_dim": 3}])
def test_hparams_round_trip(kw):
    loss = make("adacos", **kw)
    hp = loss.hparams()
    assert hp == {"s": kw.get("s"), "criterion": "softmax", "num_classes": kw.get("num_classes"),
                  "embedding_dim": kw.get("embedding_dim")}
    again = make("adacos", **hp)
    assert again.hparams() == hp and again.s == loss.s and repr(again) == repr(loss)


def test_only_the_softmax_criterion():
    with pytest.raises(ValueError, match=r"^criterion must be one of 'softmax'; got 'sparsemax'"):
        AdaCos(criterion="sparsemax")
