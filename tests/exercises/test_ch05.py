"""Chapter 05's checkers accept the reference answers and name the typical slips, never the answer."""

import math

import torch
from answer_leaks import never_shows

from arclib.exercises import ch05, check


def my_sparsemax(z):
    """The chapter's solution: Algorithm 1 with τ divided by ρ."""
    z_sorted, _ = torch.sort(z, descending=True)
    k = torch.arange(1, len(z) + 1, dtype=z.dtype)
    cumsum = z_sorted.cumsum(0)
    rho = int((1 + k * z_sorted > cumsum).sum())
    tau = (cumsum[rho - 1] - 1) / rho
    return torch.clamp(z - tau, min=0)


def test_05_1_sparsemax_by_hand():
    # by hand: all three kept (1 + 3·0.5 = 2.5 > 2.3), τ = (2.3 − 1)/3
    tau = (sum(ch05.BY_HAND_Z) - 1) / 3
    assert check("05.1", [z - tau for z in ch05.BY_HAND_Z]).passed is True
    typo = check("05.1", [max(z - (sum(ch05.BY_HAND_Z) - 1) / 2, 0) for z in ch05.BY_HAND_Z])
    assert typo.passed is False and "not by 2" in typo.hint
    soft = check("05.1", torch.softmax(torch.tensor(ch05.BY_HAND_Z), 0))
    assert soft.passed is False and "softmax" in soft.hint
    assert check("05.1", [1.0, 0.0]).passed is False  # two numbers for three classes
    never_shows(typo, ch05.BY_HAND_Z[0] - tau)


def test_05_2_sparsemax_in_code():
    assert check("05.2", my_sparsemax).passed is True
    typo = check("05.2", ch05.seed_typo_sparsemax)
    assert typo.passed is False and "not by 2" in typo.hint
    soft = check("05.2", lambda z: torch.softmax(z, 0))
    assert soft.passed is False and "softmax" in soft.hint
    assert check("05.2", 3).passed is False


def test_05_3_slope_at_zero():
    expected = -ch05.SLOPE_S * math.sin(ch05.SLOPE_M)
    assert check("05.3", expected).passed is True
    zero = check("05.3", 0.0)
    assert zero.passed is False and "NormFace" in zero.hint
    unscaled = check("05.3", -math.sin(ch05.SLOPE_M))
    assert unscaled.passed is False and "s·ψ" in unscaled.hint
    assert "sign" in check("05.3", -expected).hint
    never_shows(zero, expected)


def test_05_4_zero_loss_edge():
    s, m, inter = ch05.ZERO_S, ch05.ZERO_M, ch05.ZERO_INTER
    # by hand: 2s·sin((θ_ij − m)/2)·sin(θ + (m + θ_ij)/2) = 1 on the falling branch of the sine
    by_hand = math.pi - math.asin(1 / (2 * s * math.sin((inter - m) / 2))) - (m + inter) / 2
    assert check("05.4", by_hand).passed is True
    degrees = check("05.4", math.degrees(by_hand))
    assert degrees.passed is False and "degrees" in degrees.hint
    no_margin = check("05.4", math.pi - math.asin(1 / (2 * s * math.sin(inter / 2))) - inter / 2)
    assert no_margin.passed is False and "plain SparseMax" in no_margin.hint
    gap_zero = check("05.4", math.pi - (m + inter) / 2)
    assert gap_zero.passed is False and "gap of 1" in gap_zero.hint
    never_shows(no_margin, by_hand)
