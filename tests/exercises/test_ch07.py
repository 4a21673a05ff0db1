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


def test_support_of_mistakes_predict_then_measure(mnist_root, monkeypatch):
    import functools

    from answer_leaks import predicts_and_measures

    from arclib.exercises import ch07

    monkeypatch.setenv("ARCLIB_DATA", str(mnist_root))
    monkeypatch.setattr(ch07, "support_by_outcome", functools.lru_cache(ch07.support_by_outcome))
    wrong, right = ch07.support_by_outcome()
    assert 1 <= right <= 10 and 1 <= wrong <= 10
    actual = "more" if wrong > right + 1 else ("slightly" if wrong > right else "fewer")
    verdict = predicts_and_measures("07.4", ("more", "slightly", "fewer"), actual, wrong, round(wrong, 2), wrong + 2)
    assert f"{right:.2f}" in verdict.message
