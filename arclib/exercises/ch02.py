"""Chapter 02 exercises: the scale, the gradient of ArcFace, CosFace's angular margin, where the pull stops, and
ArcFace written from scratch.

Every reference value is computed here with arclib's losses (``arclib.make``) and autograd, never typed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from arclib.exercises import Wrong, exercise, expect_number, expect_same_function, expect_tensor
from arclib.losses import make

#: The ten-class configuration of the chapter: the target at θ_y, the nine other centres at 90°.
NUM_CLASSES = 10


def _one_sample(theta_y: float, num_classes: int = NUM_CLASSES) -> tuple[Tensor, Tensor]:
    cos = torch.zeros(1, num_classes, dtype=torch.float64)
    cos[0, 0] = math.cos(theta_y)
    return cos, torch.tensor([0])


def _bisect(f: Callable[[float], float], low: float, high: float, steps: int = 80) -> float:
    """The root of f on [low, high], where f(low) and f(high) differ in sign."""
    f_low = f(low)
    for _ in range(steps):
        mid = (low + high) / 2
        if (f(mid) > 0) == (f_low > 0):
            low = mid
        else:
            high = mid
    return (low + high) / 2


# ---- 02.1 the loss when s doubles ---------------------------------------------------------------------------
SCALE_THETA_DEG, SCALE_S = 45.0, 8.0


def normface_loss(s: float, theta_y_deg: float = SCALE_THETA_DEG) -> float:
    cos, label = _one_sample(math.radians(theta_y_deg))
    return make("normface", s=s)(cos, label).item()


@exercise("02.1", "the loss when s doubles")
def scale_doubles(answer) -> str:
    before, expected = normface_loss(SCALE_S), normface_loss(2 * SCALE_S)
    expect_number(answer, expected, what="the loss at 2s", digits=2, mistakes={
        "the loss is not proportional to s: s sits in an exponent": before / 2,
        "the loss does change with s: look at the exponent of the non-target terms": before,
        "doubling s sharpens the softmax; a correctly classified sample's loss goes down, not up": 2 * before,
    }, hint="write the loss as log(1 + 9·e^{−s·(cos θ_y − cos 90°)}) and evaluate it at the new s")
    return f"the loss fell by a factor {before / expected:.0f}: for a correct sample it falls about exponentially in s"


# ---- 02.2 the gradient with respect to the target angle ------------------------------------------------------
def _gradient_cases(s: float, m: float, n: int = 12, num_classes: int = 5) -> tuple[Tensor, Tensor, Tensor]:
    """Target angles (inside θ + m < π), p_y under ArcFace, and ∂L_i/∂θ_y from autograd through arclib."""
    g = torch.Generator().manual_seed(2)
    theta_y = torch.linspace(0.05, math.pi - m - 0.05, n, dtype=torch.float64)
    others = torch.empty(n, num_classes - 1, dtype=torch.float64).uniform_(-0.9, 0.9, generator=g)
    labels = torch.zeros(n, dtype=torch.long)
    leaf = theta_y.clone().requires_grad_(True)
    cos = torch.cat([torch.cos(leaf)[:, None], others], dim=1)
    loss = make("arcface", s=s, m=m, tail="none")
    per_sample = loss(cos, labels, reduction="sum")  # a sum: each sample's own ∂L_i/∂θ_y
    (grad,) = torch.autograd.grad(per_sample, leaf)
    with torch.no_grad():
        p_y = torch.softmax(loss.logits(cos, labels), dim=1)[:, 0]
    return theta_y, p_y, grad


@exercise("02.2", "∂L/∂θ_y for ArcFace")
def arcface_gradient(answer) -> str:
    if not callable(answer):
        raise Wrong(f"write a function dL_dtheta(theta_y, p_y, s, m); you gave {type(answer).__name__}")
    for s, m in ((16.0, 0.5), (30.0, 0.3)):
        theta_y, p_y, expected = _gradient_cases(s, m)
        got = answer(theta_y, p_y, s, m)
        expect_tensor(got, expected, what="your ∂L/∂θ_y", rtol=1e-6, atol=1e-9, mistakes={
            "a sign: L falls as θ_y falls, so ∂L/∂θ_y is positive where the sample is pulled in":
                -s * torch.sin(theta_y + m) * (1 - p_y),
            "that is the slope of the logit alone; the chain rule also passes through the softmax":
                s * torch.sin(theta_y + m),
            "that is NormFace's gradient: the target's logit is s·cos(θ_y + m), not s·cos θ_y":
                s * torch.sin(theta_y) * (1 - p_y),
            "check ∂L/∂z_y for the cross-entropy: it is not p_y": s * torch.sin(theta_y + m) * p_y,
        }, hint="chain rule: ∂L/∂θ_y = ∂L/∂z_y · ∂z_y/∂θ_y with z_y = s·cos(θ_y + m) and L = −log p_y")
    return "the pull on a sample fades only as p_y → 1, and the margin keeps sin(θ_y + m) away from 0 near θ_y = 0"


# ---- 02.3 CosFace's margin in angle --------------------------------------------------------------------------
COSFACE_M, COSFACE_THETA2_DEG = 0.35, 75.0


def cosface_angular_margin_degrees(m: float = COSFACE_M, theta2_deg: float = COSFACE_THETA2_DEG) -> float:
    """θ2 − θ1 at the boundary ψ(θ1) = cos θ2 of arclib's CosFace (two classes), in degrees."""
    loss = make("cosface", s=1.0, m=m)
    theta2 = math.radians(theta2_deg)
    other = loss.other_logit(torch.tensor(theta2, dtype=torch.float64)).item()
    theta1 = _bisect(lambda t: loss.target_logit(torch.tensor(t, dtype=torch.float64)).item() - other, 0.0, theta2)
    return math.degrees(theta2 - theta1)


@exercise("02.3", "CosFace's margin, measured in angle")
def cosface_margin(answer) -> str:
    expected = cosface_angular_margin_degrees()
    theta2 = math.radians(COSFACE_THETA2_DEG)
    expect_number(answer, expected, what="the angular margin", digits=3, mistakes={
        "the answer is asked in degrees; yours looks like radians": math.radians(expected),
        "that is m itself, converted to degrees; CosFace's m is a step in cosine, not in angle":
            math.degrees(COSFACE_M),
        "that is the first-order estimate m / sin θ2; solve the boundary exactly":
            math.degrees(COSFACE_M / math.sin(theta2)),
        "that is θ1, the angle of the boundary; the margin is the gap θ2 − θ1": COSFACE_THETA2_DEG - expected,
    }, hint="on the boundary cos θ1 − m = cos θ2: solve for θ1")
    return f"at θ2 = {COSFACE_THETA2_DEG:g}° CosFace's m = {COSFACE_M} is worth {expected:.2f}° of angle; ArcFace's m is the same angle everywhere"


# ---- 02.4 where the pull stops -------------------------------------------------------------------------------
HALF_S, HALF_M = 30.0, 0.5


def half_probability_angle_degrees(s: float = HALF_S, m: float = HALF_M) -> float:
    """The target angle at which ArcFace's p_y (target logit with margin) is 1/2, nine others at 90°."""
    loss = make("arcface", s=s, m=m)

    def excess(theta_deg: float) -> float:
        cos, label = _one_sample(math.radians(theta_deg))
        return torch.softmax(loss.logits(cos, label), dim=1)[0, 0].item() - 0.5

    return _bisect(excess, 0.0, 180.0)


@exercise("02.4", "the angle where p_y = 1/2")
def half_probability(answer) -> str:
    expected = half_probability_angle_degrees()
    normface = math.degrees(math.acos(math.log(NUM_CLASSES - 1) / HALF_S))
    expect_number(answer, expected, what="θ_y", decimals=2, mistakes={
        "the answer is asked in degrees; yours looks like radians": math.radians(expected),
        "that is where NormFace's p_y is 1/2: the margin moves the point": normface,
        "count the non-target classes again": math.degrees(math.acos(math.log(NUM_CLASSES) / HALF_S) - HALF_M),
        "the margin moves the point closer to the centre, not further away": normface + math.degrees(HALF_M),
    }, hint="p_y = 1/2 where the target's term equals the sum of the others: e^{s·cos(θ_y + m)} = 9·e^{s·cos 90°}")
    return "samples further out than this are still pulled hard; the margin moved the point by exactly m"


# ---- 02.5 ArcFace from scratch, as arclib ships it -----------------------------------------------------------
FROM_SCRATCH_S, FROM_SCRATCH_M = 16.0, 0.5


class _Textbook(nn.Module):
    """Typical slips, as modules with one weight (C, d) like the reader's: each flag is one slip."""

    def __init__(self, d: int, c: int, s: float, m: float, every_class: bool = False, no_tail: bool = False,
                 degrees: bool = False) -> None:
        super().__init__()
        self.s, self.m = s, (math.degrees(m) if degrees else m)
        self.every_class, self.no_tail = every_class, no_tail
        self.weight = nn.Parameter(torch.randn(c, d))

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        cos = F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))
        eps = torch.finfo(cos.dtype).eps
        theta = torch.acos(cos.clamp(-1 + eps, 1 - eps))
        target = F.one_hot(labels, cos.shape[1]).bool()
        with_margin = torch.cos(theta + self.m)
        if not self.no_tail:
            with_margin = torch.where(theta > math.pi - self.m, cos + math.cos(self.m) - 1, with_margin)
        logits = self.s * (with_margin if self.every_class else torch.where(target, with_margin, cos))
        return F.cross_entropy(logits, labels)


def _weight_name(module: nn.Module, c: int, d: int) -> str:
    params = dict(module.named_parameters())
    if any(p.shape == (c,) for p in params.values()):
        raise Wrong("your module has a bias-shaped parameter (num_classes,)",
                    "the first of the three moves from softmax to NormFace: what happens to b_j?")
    names = [n for n, p in params.items() if p.shape == (c, d)]
    if len(names) != 1:
        raise Wrong(f"your module should hold exactly one parameter of shape (num_classes, embedding_dim) = "
                    f"({c}, {d}), the class centres W_j, one per row; found {len(names)}",
                    "self.weight = nn.Parameter(torch.randn(num_classes, embedding_dim))")
    return names[0]


def _as_function(cls: Callable[..., nn.Module], d: int, c: int, labels: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    module = cls(d, c, s=FROM_SCRATCH_S, m=FROM_SCRATCH_M)
    if not isinstance(module, nn.Module):
        raise Wrong(f"MyArcFace(...) should build an nn.Module; it built a {type(module).__name__}")
    name = _weight_name(module, c, d)
    module = module.double()
    return lambda x, w: functional_call(module, {name: w}, (x, labels))


def from_scratch_batches(d: int = 6, c: int = 4) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(features, centres, labels): an ordinary batch, one with samples beyond θ* = π − m, one on the centres."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(c, d, generator=g, dtype=torch.float64)
    labels = torch.arange(8) % c
    ordinary = torch.randn(8, d, generator=g, dtype=torch.float64) * 2
    far = -w[labels] + 0.2 * torch.randn(8, d, generator=g, dtype=torch.float64)  # near the opposite of the centre
    on_centre = torch.cat([3 * w[labels[:4]], ordinary[4:]])  # cos θ_y = 1 up to rounding
    return [(ordinary, w, labels), (far, w, labels), (on_centre, w, labels)]


@exercise("02.5", "ArcFace from scratch, as arclib ships it")
def from_scratch(answer) -> str:
    if not (isinstance(answer, type) and issubclass(answer, nn.Module)):
        raise Wrong(f"pass the class MyArcFace itself (an nn.Module subclass); you gave {type(answer).__name__}",
                    "check('02.5', MyArcFace), without parentheses after MyArcFace")
    for x, w, labels in from_scratch_batches():
        d, c = w.shape[1], w.shape[0]
        candidate = _as_function(answer, d, c, labels)
        leaves = (x.clone().requires_grad_(True), w.clone().requires_grad_(True))
        out = candidate(*leaves)
        if not isinstance(out, Tensor) or out.dim() != 0:
            raise Wrong("forward should return the mean loss of the batch, one number (a 0-dim tensor)")
        if not torch.isfinite(out):
            raise Wrong("your loss is not finite on a batch whose features lie on their centres",
                        "arccos has an infinite slope at ±1, and rounding can put cos θ just outside [−1, 1]")
        grads = torch.autograd.grad(out, leaves, allow_unused=True)
        if any(gr is not None and not torch.isfinite(gr).all() for gr in grads):
            raise Wrong("your gradients are NaN or infinite on a batch whose features lie on their centres",
                        "arccos has an infinite slope at ±1: keep cos θ away from ±1 before the arccos, "
                        "by one machine epsilon as the question says")

        def reference(x, w, labels=labels, d=d, c=c):
            loss = make("arcface", s=FROM_SCRATCH_S, m=FROM_SCRATCH_M, num_classes=c, embedding_dim=d).double()
            return functional_call(loss, {"head.weight": w}, (x, labels))

        def slip(d=d, c=c, labels=labels, **flags):
            return _as_function(lambda dim, classes, s, m: _Textbook(dim, classes, s, m, **flags), d, c, labels)

        expect_same_function(candidate, reference, [(x, w)], what="your MyArcFace", rtol=1e-6, atol=1e-6, mistakes={
            "the textbook cos(θ + m) turns back up past θ* = π − m: some samples of this batch sit there":
                slip(no_tail=True),
            "the margin belongs on the target class only; the others keep s·cos θ_j": slip(every_class=True),
            "m is in radians; no conversion needed": slip(degrees=True),
        }, hint="follow the five steps; for θ_y > π − m use arclib's continuous tail described in the chapter")
    return "values and gradients match arclib's ArcFace to 1e-6, also past π − m and on the centres"
