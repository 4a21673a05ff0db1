"""Chapter 07's checkers: each accepts the reference answer and refuses typical wrong ones, without giving the answer."""

import math

import torch

from arclib.exercises import check


def test_cosface_effective_margin():
    theta = math.radians(60)
    reference = math.acos(math.cos(theta) - 0.35) - theta
    assert check("07.1", reference).passed is True
    assert "degrees" in check("07.1", math.degrees(reference)).hint
    assert "cosine gap" in check("07.1", 0.35).hint
    wrong = check("07.1", 0.5)
    assert wrong.passed is False and f"{reference:.3f}" not in str(wrong)


def test_combined_logit():
    assert check("07.2", lambda t, s, m1, m2, m3: s * (torch.cos(m1 * t + m2) - m3)).passed is True
    inside = check("07.2", lambda t, s, m1, m2, m3: s * torch.cos(m1 * t + m2 - m3))
    assert inside.passed is False and "outside" in inside.hint
    unscaled = check("07.2", lambda t, s, m1, m2, m3: s * torch.cos(m1 * t + m2) - m3)
    assert unscaled.passed is False and "scale" in unscaled.hint
    assert check("07.2", lambda t, s, m1, m2, m3: s * torch.cos(t + m2)).passed is False


def test_sparsemax_support():
    assert check("07.3", 3).passed is True
    assert "softmax" in check("07.3", 10).hint
    assert check("07.3", 1).passed is False
    wrong = check("07.3", 5)
    assert wrong.passed is False and "3" not in wrong.hint
