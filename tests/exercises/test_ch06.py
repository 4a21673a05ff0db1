"""Chapter 06's checkers accept the reference answers and name the typical slips, never the answer."""

import math

import numpy as np
import pytest
from answer_leaks import never_shows

from arclib.exercises import ch06, check


def test_06_1_cosface_zone():
    alpha, m = ch06.ARC_ALPHA, ch06.ARC_M
    # cos θ − cos(α − θ) = −2 sin(α/2) sin(θ − α/2) = m on each side of the midpoint
    by_hand = 2 * math.asin(m / (2 * math.sin(alpha / 2)))
    assert check("06.1", by_hand).passed is True
    arcface = check("06.1", m)
    assert arcface.passed is False and "ArcFace" in arcface.hint
    half = check("06.1", by_hand / 2)
    assert half.passed is False and "both sides" in half.hint
    assert "degrees" in check("06.1", math.degrees(by_hand)).hint
    never_shows(arcface, by_hand)
    assert ch06.zone_width_on_arc(name="arcface") == pytest.approx(m, abs=1e-4)  # the chapter's claim


def test_06_2_area_does_not_move_with_s():
    at_m = ch06.accepted_area_of_class()
    assert check("06.2", round(at_m, 3)).passed is True  # read off the chapter's table (three decimals)
    no_margin = check("06.2", ch06.accepted_area_of_class(0.0))
    assert no_margin.passed is False and "m = 0" in no_margin.hint
    assert "percentage" in check("06.2", 100 * at_m).hint
    never_shows(no_margin, at_m)


def in_margin_zone(cos, m):
    """The chapter's solution: the nearest class j does not accept the point."""
    theta = np.arccos(np.clip(cos, -1, 1))
    nearest = theta.min(1)
    second = np.sort(cos, axis=1)[:, -2]
    return np.cos(nearest + m) <= second


def test_06_3_margin_zone_in_code():
    assert check("06.3", in_margin_zone).passed is True
    cosface = check("06.3", lambda cos, m: np.sort(cos, 1)[:, -1] - m <= np.sort(cos, 1)[:, -2])
    assert cosface.passed is False and "CosFace" in cosface.hint
    every = check("06.3", lambda cos, m: np.zeros(len(cos), dtype=bool))
    assert every.passed is False and "every class" in every.hint
    flipped = check("06.3", lambda cos, m: ~in_margin_zone(cos, m))
    assert flipped.passed is False and "accepted points" in flipped.hint
    assert "shape" in check("06.3", lambda cos, m: in_margin_zone(cos, m)[:10]).message


def test_06_4_probability_on_the_arc():
    s, t, alpha = ch06.ARC_S, ch06.ARC_T, ch06.ARC_ALPHA
    by_hand = 1 / (1 + math.exp(s * (math.cos(alpha - t) - math.cos(t))))
    assert check("06.4", by_hand).passed is True
    other = check("06.4", 1 - by_hand)
    assert other.passed is False and "1 − p_0" in other.hint
    unscaled = check("06.4", 1 / (1 + math.exp(math.cos(alpha - t) - math.cos(t))))
    assert unscaled.passed is False and "s = 1" in unscaled.hint
    never_shows(other, by_hand)
