"""What every loss in ``arclib.losses.NAMES`` must do: numerics at the edges, gradchecks, ψ as a tensor
function, input checks that name the argument, and ``make(name, **loss.hparams())`` round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib.losses import LOSSES, NAMES, make

C, D = 4, 2
# what the input is called in error messages when the loss owns no head
COS_NAME = {name: "logits" if name == "softmax" else "cos_theta" for name in NAMES}
# a non-default setting of every loss, for the round trip
SETTINGS = {
    "softmax": {},
    "normface": {"s": 7.0},
    "sphereface": {"s": 9.0, "m": 3, "lam": 0.5},
    "cosface": {"s": 30.0, "m": 0.2},
    "arcface": {"s": 30.0, "m": 0.3, "tail": "easy", "criterion": "sparsemax"},
    "combined": {"s": 20.0, "m1": 1.2, "m2": 0.1, "m3": 0.05, "tail": "none"},
    "qamface": {"s": 4.0, "m": 0.3},
    "sparsemax": {"s": 2.5},
    "angular_sparsemax": {"s": 2.0, "m": 0.15, "tail": "straight_through"},
    "subcenter_arcface": {"s": 32.0, "m": 0.3, "sub_centres": 2, "tail": "fallback"},
    "adaface": {"s": 32.0, "m": 0.3, "h": 0.5, "t_alpha": 0.1},
    "adacos": {"s": 10.0},
}
# The losses that take cosines (N, C) alone when they own no head. AdaFace's margin needs each sample's feature
# norm, which cosines do not carry (``norms=``): the cosine-input tests below run for it, with norms, in
# tests/losses/test_adaface.py.
COSINE_INPUT = tuple(n for n in NAMES if n != "adaface")
# (name, head) for the tests that run on both inputs: AdaFace with features only, as above
HEAD_CASES = [(n, head) for n in NAMES for head in (False, True) if head or n in COSINE_INPUT]


def test_names_cover_every_loss():
    assert set(NAMES) == set(SETTINGS) == set(LOSSES)
    for name in NAMES:
        assert make(name).name == name


# ---- numerics: a grid over cos θ ∈ [−1, 1] that holds exactly −1, 0 and +1 ----------------------------------

GRID = torch.arange(-10, 11, dtype=torch.float64) / 10
assert GRID[0] == -1 and GRID[-1] == 1 and GRID[10] == 0


def _grid_cosines(dtype):
    """Every pair (target cos, non-target cos) from the grid, plus a column at +1 and one at −1; label 0."""
    t, o = torch.meshgrid(GRID, GRID, indexing="ij")
    n = t.numel()
    cos = torch.stack([t.reshape(-1), o.reshape(-1), torch.ones(n, dtype=torch.float64),
                       -torch.ones(n, dtype=torch.float64)], 1)
    return cos.to(dtype), torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", COSINE_INPUT)
def test_finite_on_cosine_grid(name, dtype):
    cos, y = _grid_cosines(dtype)
    cos.requires_grad_()
    loss = make(name)
    values = loss(cos, y, reduction="none")
    assert values.dtype == torch.promote_types(dtype, torch.float32)  # bf16 cosines: the margin runs in float32
    assert torch.isfinite(values).all()
    values.sum().backward()
    assert torch.isfinite(cos.grad).all()
    # also as the target at +1 / −1 with the non-target anywhere, label 1 instead of 0
    cos2 = cos.detach()[:, [1, 0, 2, 3]].clone().requires_grad_()
    loss(cos2, torch.ones_like(y)).backward()
    assert torch.isfinite(cos2.grad).all()


def _grid_features(dtype):
    """Features on the unit circle at angles φ ∈ [0, π] (φ = 0, π/2 and π exactly); with W rows (1, 0), (−1, 0),
    (0, 1), (0, −1) the cosines are cos φ, −cos φ, sin φ, −sin φ: every class meets +1 and −1 somewhere."""
    phi = torch.linspace(0, math.pi, 41, dtype=torch.float64)
    x = torch.stack([torch.cos(phi), torch.sin(phi)], 1)
    x[0], x[20], x[-1] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 0.0])
    x = x.repeat(C, 1)
    y = torch.arange(C).repeat_interleave(len(phi))
    w = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    return x.to(dtype), y, w.to(dtype)


@pytest.mark.parametrize("mode", ["float32", "float64", "bf16-autocast"])
@pytest.mark.parametrize("name", NAMES)
def test_finite_with_head_at_the_poles(name, mode):
    dtype = torch.float64 if mode == "float64" else torch.float32
    x, y, w = _grid_features(dtype)
    loss = make(name, num_classes=C, embedding_dim=D).to(dtype)
    with torch.no_grad():
        # sub-center ArcFace's W holds K rows per class (row j·K + k): all K sub-centres of class j at W_j
        loss.head.weight.copy_(w.repeat_interleave(loss.head.weight.shape[0] // C, dim=0))
        if getattr(loss.head, "bias", None) is not None:
            loss.head.bias.zero_()
    x.requires_grad_()
    if mode == "bf16-autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert loss.head(x).dtype == torch.bfloat16  # the matmul really runs in bf16
            values = loss(x, y, reduction="none")
    else:
        cos = loss.head(x).detach()
        if name != "softmax":
            assert (cos == 1).any() and (cos == -1).any()  # the poles are really hit
        values = loss(x, y, reduction="none")
    assert torch.isfinite(values).all()
    values.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.isfinite(loss.head.weight.grad).all()


@pytest.mark.parametrize("name", COSINE_INPUT)
def test_gradcheck_away_from_kinks(name):
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    # (−0.8, 0.9): inside every default tail's θ* (ArcFace m = 0.5: cos θ* = −0.878) and off the clamp at ±1
    cos = (torch.rand(3, 5, generator=gen, dtype=torch.float64) * 1.7 - 0.8).requires_grad_()
    y = torch.tensor([0, 4, 2])
    # eval(): gradcheck calls the function many times and needs the same function each time. In training mode
    # AdaCos updates s and AdaFace its running norm statistics on every call; eval() freezes them (and changes
    # nothing for the other losses)
    loss = make(name).eval()
    assert torch.autograd.gradcheck(lambda c: loss(c, y, reduction="none"), (cos,))


@pytest.mark.parametrize("name", NAMES)
def test_target_logit_is_a_tensor_function(name):
    loss = make(name)
    theta = torch.linspace(0, math.pi, 64, dtype=torch.float64, requires_grad=True)
    for fn in (loss.target_logit, loss.other_logit):
        out = fn(theta)
        assert out.shape == theta.shape and out.dtype == torch.float64 and torch.isfinite(out).all()
        (grad,) = torch.autograd.grad(out.sum(), theta)
        assert torch.isfinite(grad).all()
    # a 2-D grid works too, and the logits of the loss are exactly these curves at the angles (AdaFace: its
    # logits need the norms and its curve the quality ẑ; test_adaface.py checks them as a family in ẑ)
    cos = torch.cos(torch.rand(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * math.pi)
    if name != "softmax" and name in COSINE_INPUT:
        y = torch.tensor([0, 1, 2, 3, 4, 0])
        z = loss.logits(cos, y)
        theta2 = torch.acos(cos)
        rows = torch.arange(6)
        torch.testing.assert_close(z[rows, y], loss.target_logit(theta2)[rows, y])
        off = torch.ones_like(z, dtype=torch.bool)
        off[rows, y] = False
        torch.testing.assert_close(z[off], loss.other_logit(theta2)[off])


@pytest.mark.parametrize("name", NAMES)
def test_reductions_and_probabilities(name):
    gen = torch.Generator().manual_seed(1)
    # eval(): the three calls below must see one function; in training mode AdaCos's s and AdaFace's μ, σ move
    # at every call (nothing changes for the other losses)
    loss = make(name, num_classes=6, embedding_dim=3).eval()
    x = torch.randn(10, 3, generator=gen)
    y = torch.randint(0, 6, (10,), generator=gen)
    per = loss(x, y, reduction="none")
    assert per.shape == (10,) and (per >= 0).all()
    torch.testing.assert_close(loss(x, y), per.mean())
    torch.testing.assert_close(loss(x, y, reduction="sum"), per.sum())
    p = loss.probabilities(x)
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(10))
    assert loss.predict(x).shape == (10,)


# ---- make / hparams round trip ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "head"), HEAD_CASES)
def test_make_roundtrips_hparams(name, head):
    kw = dict(SETTINGS[name])
    if head:
        kw.update(num_classes=5, embedding_dim=3)
    loss = make(name, **kw)
    hp = loss.hparams()
    for k, v in kw.items():
        assert hp[k] == v
    again = make(name, **hp)
    assert type(again) is type(loss) and again.hparams() == hp
    assert repr(again) == repr(loss)
    # same hparams and same weights: same loss
    gen = torch.Generator().manual_seed(2)
    if head:
        again.load_state_dict(loss.state_dict())
        x = torch.randn(7, 3, generator=gen)
    else:
        x = torch.rand(7, 5, generator=gen) * 2 - 1
    y = torch.randint(0, 5, (7,), generator=gen)
    torch.testing.assert_close(again(x, y), loss(x, y))


def test_make_unknown_name():
    with pytest.raises(ValueError, match="name must be one of"):
        make("nope")


@pytest.mark.parametrize("name", NAMES)
def test_make_unknown_argument_names_it(name):
    with pytest.raises(ValueError, match="bogus"):
        make(name, bogus=1)


# ---- bad hyper-parameters --------------------------------------------------------------------------------

BAD_HPARAMS = [
    *[(name, {"s": s}, r"^s must") for name in NAMES if name != "softmax" for s in (0.0, -1.0, math.nan, "big")],
    ("sphereface", {"m": 0}, r"^m must"), ("sphereface", {"m": 11}, r"^m must"),
    ("sphereface", {"m": 2.5}, r"^m must"), ("sphereface", {"m": math.nan}, r"^m must"),
    ("sphereface", {"m": True}, r"^m must"), ("sphereface", {"lam": -0.1}, r"^lam must"),
    ("sphereface", {"lam": math.nan}, r"^lam must"),
    ("sphereface", {"lam": math.inf}, r"^lam must"),  # (λ·cos θ + ψ)/(1 + λ) would be inf/inf
    ("sphereface", {"m": None}, r"^m must"), ("sphereface", {"m": "four"}, r"^m must"),
    ("cosface", {"m": -1.01}, r"^m must"), ("cosface", {"m": 2.01}, r"^m must"),
    ("arcface", {"m": -0.01}, r"^m must"), ("arcface", {"m": math.pi / 2 + 0.01}, r"^m must"),
    ("arcface", {"tail": "bogus"}, r"^tail must"), ("arcface", {"tail": None}, r"^tail must"),
    ("combined", {"m1": 0.0}, r"^m1 must"), ("combined", {"m1": 10.5}, r"^m1 must"),
    ("combined", {"m2": -0.01}, r"^m2 must"), ("combined", {"m2": 1.6}, r"^m2 must"),
    ("combined", {"m3": -0.01}, r"^m3 must"), ("combined", {"m3": 2.01}, r"^m3 must"),
    ("combined", {"tail": "bogus"}, r"^tail must"), ("combined", {"m1": 2.0, "tail": "fallback"}, r"m1"),
    ("qamface", {"m": -0.01}, r"^m must"), ("qamface", {"m": math.pi + 0.01}, r"^m must"),
    ("angular_sparsemax", {"m": -0.01}, r"^m must"), ("angular_sparsemax", {"m": 1.6}, r"^m must"),
    ("angular_sparsemax", {"tail": "bogus"}, r"^tail must"),
    ("subcenter_arcface", {"sub_centres": 0}, r"^sub_centres must"),
    ("subcenter_arcface", {"sub_centres": 65}, r"^sub_centres must"),
    ("subcenter_arcface", {"sub_centres": 2.5}, r"^sub_centres must"),
    ("subcenter_arcface", {"sub_centres": True}, r"^sub_centres must"),
    ("subcenter_arcface", {"m": -0.01}, r"^m must"), ("subcenter_arcface", {"m": 1.6}, r"^m must"),
    ("subcenter_arcface", {"tail": "bogus"}, r"^tail must"),
    ("adaface", {"m": -0.01}, r"^m must"), ("adaface", {"m": 1.6}, r"^m must"),
    ("adaface", {"m": math.nan}, r"^m must"),
    ("adaface", {"h": -0.1}, r"^h must"), ("adaface", {"h": math.inf}, r"^h must"),
    ("adaface", {"h": math.nan}, r"^h must"),
    ("adaface", {"t_alpha": 0.0}, r"^t_alpha must"), ("adaface", {"t_alpha": 1.01}, r"^t_alpha must"),
    ("adaface", {"t_alpha": -0.5}, r"^t_alpha must"), ("adaface", {"t_alpha": math.nan}, r"^t_alpha must"),
    ("adacos", {"criterion": "sparsemax"}, r"^criterion must be one of 'softmax'"),  # B_avg: softmax's normaliser
    ("adacos", {"num_classes": 2}, r"^num_classes must be >= 3"),  # √2·ln(C − 1) = 0: give s instead
    *[(name, {"criterion": "bogus"}, r"criterion") for name in NAMES],
    *[(name, {"num_classes": 1}, r"^num_classes must") for name in NAMES],
    *[(name, {"num_classes": 3, "embedding_dim": 0}, r"^embedding_dim must") for name in NAMES],
    *[(name, {"num_classes": 2.5}, r"^num_classes must") for name in NAMES],
    *[(name, {"embedding_dim": 4}, r"^num_classes must") for name in NAMES],
]


@pytest.mark.parametrize(("name", "kw", "match"), BAD_HPARAMS)
def test_bad_hparams_raise_naming_the_argument(name, kw, match):
    with pytest.raises(ValueError, match=match):
        make(name, **kw)
    if "criterion" not in kw or name not in ("sparsemax", "angular_sparsemax"):
        with pytest.raises(ValueError, match=match):
            LOSSES[name](**kw)  # the classes check too, not only make()


@pytest.mark.parametrize("name", [n for n in NAMES if n != "softmax"])
def test_infinite_scale_is_rejected(name):
    """s = inf makes every logit infinite and the loss NaN: the interval for s is (0, inf), open at inf."""
    with pytest.raises(ValueError, match=r"^s must"):
        make(name, s=math.inf)


# ---- bad inputs ------------------------------------------------------------------------------------------

def _inputs(name, head, n=5):
    gen = torch.Generator().manual_seed(0)
    if head:
        loss = make(name, num_classes=C, embedding_dim=3)
        x = torch.randn(n, 3, generator=gen)
    else:
        loss = make(name)
        x = torch.rand(n, C, generator=gen) * 2 - 1
    return loss, x, torch.randint(0, C, (n,), generator=gen)


BAD_LABELS = {
    "too large": lambda y: torch.full_like(y, C),
    "negative": lambda y: torch.full_like(y, -1),
    "float": lambda y: y.float(),
    "bool": lambda y: y > 0,
    "column": lambda y: y[:, None],
    "too long": lambda y: torch.cat([y, y[:1]]),
    "too short": lambda y: y[1:],
    "list": lambda y: y.tolist(),
}


@pytest.mark.parametrize("bad", list(BAD_LABELS))
@pytest.mark.parametrize(("name", "head"), HEAD_CASES)
def test_bad_labels(name, head, bad):
    loss, x, y = _inputs(name, head)
    with pytest.raises(ValueError, match="labels"):
        loss(x, BAD_LABELS[bad](y))


@pytest.mark.parametrize("shape", [(5,), (5, 4), (5, 3, 1), (5, 2)])
@pytest.mark.parametrize("name", NAMES)
def test_bad_feature_shape(name, shape):
    loss, _, y = _inputs(name, head=True)
    if shape == (5, 4):
        shape = (5, 3 + 1)
    with pytest.raises(ValueError, match="features"):
        loss(torch.randn(*shape), y)


@pytest.mark.parametrize("shape", [(5,), (5, 1), (5, C, 1)])
@pytest.mark.parametrize("name", COSINE_INPUT)
def test_bad_cosine_shape(name, shape):
    loss, _, y = _inputs(name, head=False)
    with pytest.raises(ValueError, match=COS_NAME[name]):
        loss(torch.zeros(*shape), y)


@pytest.mark.parametrize("name", COSINE_INPUT)
def test_cosine_columns_must_match_num_classes(name):
    loss = make(name, num_classes=C)
    y = torch.tensor([0, C, 1])
    with pytest.raises(ValueError, match=f"{COS_NAME[name]}.*{C}|num_classes"):
        loss(torch.zeros(3, C + 1), y)


@pytest.mark.parametrize("value", [1.5, -1.01, 7.0])
@pytest.mark.parametrize("name", [n for n in COSINE_INPUT if n != "softmax"])
def test_cosines_outside_unit_interval(name, value):
    loss, x, y = _inputs(name, head=False)
    x[2, 1] = value
    with pytest.raises(ValueError, match=r"cos_theta must lie in \[-1, 1\]"):
        loss(x, y)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("name", "head"), HEAD_CASES)
def test_non_finite_inputs(name, head, value):
    loss, x, y = _inputs(name, head)
    x[1, 0] = value
    with pytest.raises(ValueError, match=("features" if head else COS_NAME[name]) + " must be finite"):
        loss(x, y)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "softmax"])
def test_zero_centre_is_refused_naming_its_class(name):
    """A zero row of W has no direction: F.normalize's floor would give it a finite loss and gradients near 1e12."""
    loss, x, y = _inputs(name, head=True)
    # sub-center ArcFace: row 2·K is sub-centre 0 of class 2, and its message names "class 2 (sub-centre 0)"
    row = 2 * loss.sub_centres if name == "subcenter_arcface" else 2
    with torch.no_grad():
        loss.head.weight[row] = 0
    with pytest.raises(ValueError, match=r"^weight rows \(class centres\) must have norm >= 1e-12.*class 2 "):
        loss(x, y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_features_of_another_dtype_meet_a_float32_head(name, dtype):
    """Outside autocast the head and the margin run in the widest of the features' dtype, W's and float32: the
    same loss as the features promoted by hand, the gradient in the features' own dtype."""
    loss, x, y = _inputs(name, head=True)
    loss.eval()  # the two calls below must see one function: AdaCos's s and AdaFace's μ, σ move in training mode
    x = x.to(dtype)
    values = {}
    for kind, features in (("as given", x), ("promoted", x.to(torch.promote_types(dtype, torch.float32)))):
        features = features.detach().clone().requires_grad_()
        value = loss(features, y)
        value.backward()
        assert value.dtype == torch.promote_types(dtype, torch.float32) and features.grad.dtype == features.dtype
        values[kind] = value.detach(), features.grad.to(value.dtype)
    torch.testing.assert_close(values["as given"][0], values["promoted"][0], rtol=1e-6, atol=0)
    torch.testing.assert_close(values["as given"][1], values["promoted"][1], rtol=1e-2, atol=1e-2 * float(
        values["promoted"][1].abs().max()))  # the one rounding of the gradient to float16 / bfloat16


@pytest.mark.parametrize("name", [n for n in COSINE_INPUT if n != "softmax"])
def test_cosines_a_rounding_step_outside_are_tolerated(name):
    """bf16/fp16 heads round cos θ a little past ±1: that is accepted, and the loss stays finite."""
    cos = torch.tensor([[1.0 + 2e-4, -1.0 - 2e-4, 0.0], [-1.0 - 2e-4, 1.0 + 2e-4, 0.5]], requires_grad=True)
    y = torch.tensor([0, 0])
    value = make(name)(cos, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(cos.grad).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("name", "head"), HEAD_CASES)
def test_empty_batch_is_refused(name, head, reduction):
    """The mean of no samples is NaN, which would spoil every weight it reaches: an empty batch is an error."""
    loss, x, y = _inputs(name, head)
    with pytest.raises(ValueError, match=("features" if head else COS_NAME[name]) + " must hold at least one sample"):
        loss(x[:0], y[:0], reduction=reduction)


@pytest.mark.parametrize("kind", ["numpy", "list"])
@pytest.mark.parametrize(("name", "head"), HEAD_CASES)
def test_array_likes_are_refused_by_name(name, head, kind):
    loss, x, y = _inputs(name, head)
    bad = x.numpy() if kind == "numpy" else x.tolist()
    what = "features" if head else COS_NAME[name]
    for call in (lambda v: loss(v, y), loss.predict, loss.probabilities):
        with pytest.raises(ValueError, match=f"^{what} must be a torch.Tensor of shape .*torch.as_tensor"):
            call(bad)


@pytest.mark.parametrize("name", NAMES)
def test_target_logit_takes_numbers_lists_and_arrays(name):
    loss = make(name)
    grid = [0.0, 1.0, math.pi]
    want = loss.target_logit(torch.tensor(grid, dtype=torch.float64))
    torch.testing.assert_close(loss.target_logit(np.array(grid)), want)  # float64 stays float64
    torch.testing.assert_close(loss.target_logit(grid), want.float())
    assert loss.target_logit(1.0).item() == pytest.approx(want[1].item(), rel=1e-6)
    assert loss.target_logit(0).dtype == torch.float32  # integers become the default float
    assert torch.isfinite(loss.target_logit(torch.linspace(0, math.pi, 5))).all()  # float32's π, a hair above π


@pytest.mark.parametrize("bad", [math.nan, -0.1, 3.2, [0.5, math.nan], np.array([4.0]), "pi"])
@pytest.mark.parametrize("name", NAMES)
def test_target_logit_refuses_nan_and_angles_outside_0_pi(name, bad):
    with pytest.raises(ValueError, match=r"^theta must be angles in \[0, pi\]"):
        make(name).target_logit(bad)
