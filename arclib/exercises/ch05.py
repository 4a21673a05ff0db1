"""Chapter 05 exercises: sparsemax by hand, sparsemax in code, ArcFace's slope at θ = 0, and where the Angular
SparseMax loss becomes zero.

Every reference value is computed here with arclib (``arclib.sparsemax``, ``arclib.make``, ``arclib.curves``)
and autograd, never typed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from arclib.curves import binary_loss_curve
from arclib.exercises import Wrong, exercise, expect_number, expect_tensor
from arclib.losses import make
from arclib.sparsemax import sparsemax

#: 05.1: three logits whose sparsemax keeps all three classes (ρ = 3), so the seed's "divide by 2" shows.
BY_HAND_Z = (1.0, 0.8, 0.5)


def seed_typo_sparsemax(z: Tensor) -> Tensor:
    """Algorithm 1 exactly as seed 002 prints it: τ = (Σ_{j≤ρ} z_(j) − 1) / 2 instead of / ρ."""
    z_sorted, _ = torch.sort(z, descending=True)
    cumsum = z_sorted.cumsum(0)
    k = torch.arange(1, len(z) + 1, dtype=z.dtype)
    rho = int((1 + k * z_sorted > cumsum).sum())
    return torch.clamp(z - (cumsum[rho - 1] - 1) / 2, min=0)


def _by_hand_mistakes(z: Tensor) -> dict[str, Tensor]:
    return {
        "that is Algorithm 1 as the seed prints it: τ divides by ρ, the number of classes kept, not by 2":
            seed_typo_sparsemax(z),
        "that is softmax(z): sparsemax subtracts a threshold τ and clips at zero, it does not exponentiate":
            torch.softmax(z, 0),
        "your τ uses every class: only the ρ largest logits count, and p is clipped at 0": z - z.mean() + 1 / len(z),
    }


@exercise("05.1", "sparsemax of three logits, by hand")
def sparsemax_by_hand(answer) -> str:
    z = torch.tensor(BY_HAND_Z, dtype=torch.float64)
    expected = sparsemax(z)
    expect_tensor(answer, expected, what="your p", decimals=2, mistakes=_by_hand_mistakes(z),
                  hint="sort z, find ρ = the largest k with 1 + k·z_(k) > z_(1) + … + z_(k), then "
                       "τ = (z_(1) + … + z_(ρ) − 1)/ρ and p = max(z − τ, 0)")
    return f"all three classes keep a probability here (ρ = {int((expected > 0).sum())}), so dividing by 2 would be wrong"


# ---- 05.2 sparsemax in code ----------------------------------------------------------------------------------
def _sparsemax_inputs() -> list[Tensor]:
    g = torch.Generator().manual_seed(5)
    cases = [torch.tensor(BY_HAND_Z, dtype=torch.float64), torch.tensor([1.2, 0.9, -0.3], dtype=torch.float64),
             torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=torch.float64), torch.zeros(4, dtype=torch.float64)]
    cases += [2 * torch.randn(n, generator=g, dtype=torch.float64) for n in (3, 5, 10, 10)]
    return cases


@exercise("05.2", "sparsemax in code")
def sparsemax_in_code(answer: Callable[[Tensor], Tensor]) -> str:
    if not callable(answer):
        raise Wrong(f"write a function my_sparsemax(z) for a 1-D tensor z; you gave {type(answer).__name__}")
    for z in _sparsemax_inputs():
        got = answer(z.clone())
        expect_tensor(got, sparsemax(z), what=f"my_sparsemax({[round(v, 2) for v in z.tolist()]})", rtol=1e-6,
                      atol=1e-9, mistakes=_by_hand_mistakes(z),
                      hint="after sorting, the threshold uses the ρ largest entries only; unsort by taking "
                           "max(z − τ, 0) on the original z")
    return "your sparsemax agrees with arclib.sparsemax on every vector, ties and all-equal logits included"


# ---- 05.3 ArcFace's slope at θ = 0 ----------------------------------------------------------------------------
SLOPE_S, SLOPE_M = 64.0, 0.5


def arcface_logit_slope_at_zero(s: float = SLOPE_S, m: float = SLOPE_M) -> float:
    """d(s·ψ)/dθ at θ = 0 for arclib's ArcFace, by autograd."""
    theta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(make("arcface", s=s, m=m).target_logit(theta), theta)
    return slope.item()


@exercise("05.3", "ArcFace's slope at θ = 0")
def slope_at_zero(answer) -> str:
    expected = arcface_logit_slope_at_zero()
    expect_number(answer, expected, what="the slope of s·ψ at θ = 0", digits=3, mistakes={
        "zero is NormFace's and CosFace's slope at θ = 0: ArcFace's curve is cos(θ + m), already past its top":
            0.0,
        "a sign: the logit falls as θ grows": -expected,
        "that is the slope of ψ; the logit is s·ψ": expected / SLOPE_S,
        "radians, please: m = 0.5 is an angle in radians": -SLOPE_S * math.sin(math.radians(SLOPE_M)),
    }, hint="differentiate s·cos(θ + m) and put θ = 0")
    return "ArcFace still pulls a sample that sits on its centre; NormFace and CosFace do not"


# ---- 05.4 where the Angular SparseMax loss becomes zero -----------------------------------------------------
ZERO_S, ZERO_M, ZERO_INTER = 3.0, 0.3, math.pi / 3


def _last_true(holds: Callable[[float], bool], low: float = 0.0, high: float = math.pi) -> float:
    """The θ in [low, high] where ``holds`` turns from True (at low) to False (at high), by bisection."""
    if not holds(low) or holds(high):
        raise ValueError("the condition must hold at θ = low and fail at θ = high")
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if holds(mid) else (low, mid)
    return (low + high) / 2


def zero_loss_edge(s: float = ZERO_S, m: float = ZERO_M, inter_angle: float = ZERO_INTER) -> float:
    """The largest θ (two classes, far side) up to which arclib's Angular SparseMax loss is exactly zero,
    found on arclib's own loss."""
    loss = make("angular_sparsemax", s=s, m=m)
    return _last_true(lambda t: float(binary_loss_curve(loss, [t], inter_angle)[0]) < 1e-12)


def _where_gap_is(gap: float, m: float = ZERO_M) -> float:
    """θ where the logit gap s·[cos(θ + m) − cos(θ + θ_ij)] falls to ``gap`` (a typical slip's answer)."""
    return _last_true(lambda t: ZERO_S * (math.cos(t + m) - math.cos(t + ZERO_INTER)) > gap)


@exercise("05.4", "where the Angular SparseMax loss becomes zero")
def zero_edge(answer) -> str:
    expected = zero_loss_edge()
    expect_number(answer, expected, what="θ (radians)", digits=3, mistakes={
        "the answer is asked in radians; yours looks like degrees": math.degrees(expected),
        "that is plain SparseMax's edge (m = 0): the margin moves it towards the centre": zero_loss_edge(m=0.0),
        "the sparsemax loss needs a logit gap of 1, not 0: at your θ the target only just wins": _where_gap_is(0.0),
    }, hint="solve s·[cos(θ + m) − cos(θ + θ_ij)] = 1 for θ: write the difference of cosines as a product of sines")
    return "inside this angle the sample has no loss and no gradient at all; further out, sparsemax pulls it in"
