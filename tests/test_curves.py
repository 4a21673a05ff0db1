"""The curves of arclib.curves: slopes by autograd match finite differences, and the monotonicity facts the
curves chapter (05) teaches hold for the library's own losses."""

from __future__ import annotations

import math

import numpy as np
import pytest

import arclib
from arclib.curves import binary_cosines, binary_loss_curve, other_angle, target_logit_curve

THETAS = np.linspace(0.0, math.pi, 721)

CASES = [
    ("normface", {"s": 16.0}),
    ("sphereface", {"s": 16.0, "m": 4}),
    ("cosface", {"s": 30.0, "m": 0.35}),
    ("arcface", {"s": 64.0, "m": 0.5}),
    ("arcface", {"s": 64.0, "m": 0.5, "tail": "none"}),
    ("arcface", {"s": 64.0, "m": 0.5, "tail": "fallback"}),
    ("combined", {"s": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}),
    ("qamface", {"s": 6.0, "m": 0.5}),
]


@pytest.mark.parametrize(("name", "hp"), CASES, ids=[f"{n}-{h.get('tail', '')}" for n, h in CASES])
def test_slope_matches_finite_differences(name, hp):
    loss = arclib.make(name, **hp)
    # away from the kinks (SphereFace's k·π/m joins, ArcFace's θ* = π − m) the curve is smooth
    thetas = np.array([0.3, 0.7, 1.1, 1.9, 2.2])
    h = 1e-6
    _, slope = target_logit_curve(loss, thetas)
    plus, _ = target_logit_curve(loss, thetas + h)
    minus, _ = target_logit_curve(loss, thetas - h)
    np.testing.assert_allclose(slope, (plus - minus) / (2 * h), rtol=1e-5, atol=1e-6)


def test_scaled_curve_is_s_times_psi():
    loss = arclib.make("arcface", s=30.0, m=0.5)
    psi, slope = target_logit_curve(loss, THETAS)
    logit, logit_slope = target_logit_curve(loss, THETAS, scaled=True)
    np.testing.assert_allclose(logit, 30.0 * psi)
    np.testing.assert_allclose(logit_slope, 30.0 * slope)


def test_normface_curve_is_s_cos_theta():
    loss = arclib.make("normface", s=16.0)
    logit, slope = target_logit_curve(loss, THETAS, scaled=True)
    np.testing.assert_allclose(logit, 16.0 * np.cos(THETAS), atol=1e-12)
    np.testing.assert_allclose(slope, -16.0 * np.sin(THETAS), atol=1e-12)


def test_arcface_without_tail_turns_back_up_past_pi_minus_m():
    m = 0.5
    psi, slope = target_logit_curve(arclib.make("arcface", m=m, tail="none"), THETAS)
    assert THETAS[np.argmin(psi)] == pytest.approx(math.pi - m, abs=THETAS[1])
    assert np.all(slope[THETAS > math.pi - m + 1e-3] > 0)
    assert psi[-1] > psi.min() + 0.1


@pytest.mark.parametrize("tail", ["continuous", "fallback"])
def test_arcface_tails_are_monotone(tail):
    psi, _ = target_logit_curve(arclib.make("arcface", m=0.5, tail=tail), THETAS)
    assert np.all(np.diff(psi) <= 1e-12)


def test_continuous_tail_is_continuous_and_fallback_jumps():
    m, eps = 0.5, 1e-7
    edge = np.array([math.pi - m - eps, math.pi - m + eps])
    cont, _ = target_logit_curve(arclib.make("arcface", m=m), edge)
    fall, _ = target_logit_curve(arclib.make("arcface", m=m, tail="fallback"), edge)
    assert abs(cont[1] - cont[0]) < 1e-6
    assert fall[0] - fall[1] == pytest.approx(math.cos(m) + m * math.sin(m) - 1, abs=1e-6)


def test_straight_through_keeps_the_value_and_normface_slope():
    loss = arclib.make("arcface", m=0.5, tail="straight_through")
    psi, slope = target_logit_curve(loss, THETAS)
    np.testing.assert_allclose(psi, np.cos(THETAS + 0.5), atol=1e-12)
    np.testing.assert_allclose(slope, -np.sin(THETAS), atol=1e-12)


def test_qamface_logit_and_slope_are_monotone():
    psi, slope = target_logit_curve(arclib.make("qamface", s=6.0, m=0.5), THETAS)
    assert np.all(np.diff(psi) < 0)
    assert np.all(slope < 0) and np.all(np.diff(slope) > 0)  # |slope| largest near θ = 0


def test_other_angle_placements():
    theta = np.array([0.0, 0.2, math.pi])
    np.testing.assert_allclose(other_angle(theta, math.pi / 6, "far"), [math.pi / 6, 0.2 + math.pi / 6,
                                                                        5 * math.pi / 6])
    np.testing.assert_allclose(other_angle(theta, math.pi / 6, "near"), np.abs(theta - math.pi / 6))
    with pytest.raises(ValueError, match="placement"):
        other_angle(theta, 0.5, "sideways")
    cos = binary_cosines(theta)
    assert cos.shape == (3, 2) and float(cos.abs().max()) <= 1.0


def test_binary_loss_trends_of_qamface_fig_2_and_3():
    """Far placement, θ_ij = π/6: ArcFace's loss rises as θ falls (on [π/6, π/3]); QAMFace's falls everywhere."""
    left_right = [math.pi / 3, math.pi / 6]
    arc = binary_loss_curve(arclib.make("arcface", s=64.0, m=0.5), left_right)
    qam = binary_loss_curve(arclib.make("qamface", s=6.0, m=0.5), left_right)
    assert arc[0] < arc[1] and qam[0] > qam[1]
    qam_curve = binary_loss_curve(arclib.make("qamface", s=6.0, m=0.5), THETAS)
    assert np.all(np.diff(qam_curve) > 0)


def test_binary_loss_matches_cross_entropy_of_the_two_logits():
    loss = arclib.make("arcface", s=64.0, m=0.5, tail="none")
    theta = np.array([0.4, 1.0])
    z_y, z_o = 64 * np.cos(theta + 0.5), 64 * np.cos(theta + math.pi / 6)
    np.testing.assert_allclose(binary_loss_curve(loss, theta), np.log1p(np.exp(z_o - z_y)), rtol=1e-10)


def test_sparsemax_loss_is_exactly_zero_past_its_margin():
    loss = arclib.make("angular_sparsemax", s=1.9, m=0.2)
    curve = binary_loss_curve(loss, THETAS, inter_angle=math.pi / 2)
    # zero up to float64 rounding: ½(1 − ‖p‖²) + ⟨p, z⟩ − z_y cancels to 0 or a few 1e-16 (p = 1 − ulp)
    zero = curve < 1e-12
    assert zero[0] and not zero[-1]
    edge = THETAS[zero].max()
    assert np.all(zero[THETAS <= edge]) and np.all(curve[THETAS > edge] > 1e-9)  # one zero interval [0, edge]
    # at the edge the target logit leads by (about) the sparsemax margin of 1
    z_y = 1.9 * math.cos(edge + 0.2)
    z_o = 1.9 * math.cos(other_angle(edge, math.pi / 2))
    assert z_y - z_o == pytest.approx(1.0, abs=2 * 1.9 * THETAS[1])
    softmax = binary_loss_curve(arclib.make("arcface", s=1.9, m=0.2), THETAS, inter_angle=math.pi / 2)
    assert np.all(softmax > 0)


def test_curve_explorer_redraws_its_picture_from_the_losses():
    pytest.importorskip("matplotlib")
    pytest.importorskip("ipywidgets")
    from arclib.curves import CurvePicture, explore_curves

    explorer = explore_curves(s=64.0, m=0.5)
    assert isinstance(explorer, CurvePicture)
    first = explorer.png()
    explorer.s_slider.value = 16.0
    arcface = arclib.make("arcface", s=16.0, m=0.5)
    logit, slope = target_logit_curve(arcface, explorer.thetas, scaled=True)
    line_value, line_slope, line_loss = explorer.lines[3]  # ArcFace with the continuous tail
    np.testing.assert_allclose(line_value.get_ydata(), logit)
    np.testing.assert_allclose(line_slope.get_ydata(), slope)
    np.testing.assert_allclose(line_loss.get_ydata(), binary_loss_curve(arcface, explorer.thetas, math.pi / 6))
    assert explorer.status() == "Cosine-family curves at s = 16.0, m = 0.50"
    assert explorer.png() != first
