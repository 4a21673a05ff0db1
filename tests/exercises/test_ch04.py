"""Chapter 04's checkers: each accepts the reference answer and refuses typical wrong ones, without giving the answer."""

import math

import torch

from arclib import losses
from arclib.exercises import check


def test_warmup_length():
    steps_per_epoch = 50_000 // 128
    peak = 0.25 * 15  # fit's one-cycle peaks after 25 % of the steps
    assert check("04.1", peak).passed is True
    assert "pct_start" in check("04.1", 0.3 * 15).hint
    assert "steps" in check("04.1", peak * steps_per_epoch).hint
    wrong = check("04.1", 3)
    assert wrong.passed is False and "3.7" not in str(wrong)


def test_margin_cost():
    theta = math.radians(60)
    assert check("04.2", math.cos(theta + 0.5) - math.cos(theta)).passed is True
    assert "radians" in check("04.2", math.cos(math.radians(60.5)) - 0.5).hint
    assert "subtracted" in check("04.2", math.cos(theta - 0.5) - 0.5).hint
    assert check("04.2", -0.122).passed is False


def test_adacos_scale():
    assert check("04.3", math.sqrt(2) * math.log(4)).passed is True
    assert "C − 1" in check("04.3", math.sqrt(2) * math.log(5)).hint
    assert "√2" in check("04.3", math.log(4)).hint
    wrong = check("04.3", 3.1)
    assert wrong.passed is False and "1.96" not in str(wrong)


def test_loss_at_two_scales():
    logits = 32 * torch.cos(torch.deg2rad(torch.tensor([[60.0] + [75.0] * 9], dtype=torch.float64)))
    reference = torch.nn.functional.cross_entropy(logits, torch.tensor([0])).item()
    assert check("04.4", reference).passed is True
    at_16 = losses.make("normface", s=16)(logits / 32, torch.tensor([0])).item()
    assert "s = 16" in check("04.4", at_16).hint
    assert "double" in check("04.4", 2 * at_16).hint
    assert check("04.4", 0.5).passed is False


def test_collapsed_margin_predict_then_measure(cifar_root, monkeypatch):
    import functools

    from answer_leaks import predicts_and_measures

    from arclib.exercises import ch04

    monkeypatch.setenv("ARCLIB_DATA", str(cifar_root))
    monkeypatch.setenv("ARCLIB_CIFAR10_CHECKSUMS", "offline-mirror")
    monkeypatch.setattr(ch04, "cleared_margin", functools.lru_cache(ch04.cleared_margin))
    cleared, accuracy = ch04.cleared_margin("cifar10-short-arcface")
    warm_cleared, warm_accuracy = ch04.cleared_margin("cifar10-short-arcface-warmup")
    assert 0 <= cleared <= accuracy and 0 <= warm_cleared <= warm_accuracy  # clearing the margin implies correct
    actual = "c" if cleared < accuracy / 4 else ("b" if cleared < 0.75 * accuracy else "a")
    right = predicts_and_measures("04.5", ("a", "b", "c"), actual, cleared, round(cleared, 2), cleared + 7.3)
    assert f"{warm_cleared:.2f}" in right.message
