"""Chapter 03's checkers: each accepts the reference answer and refuses typical wrong ones, without giving the answer."""

import math

import torch

from arclib.exercises import check
from arclib.exercises.ch03 import own_angle_data


def step(model, loss_fn, opt, x, y):
    value = loss_fn(model(x), y)
    opt.zero_grad()
    value.backward()
    opt.step()
    return value.item()


def test_training_step():
    assert check("03.1", step).passed is True

    def no_zero_grad(model, loss_fn, opt, x, y):
        value = loss_fn(model(x), y)
        value.backward()
        opt.step()
        return value.item()

    def no_update(model, loss_fn, opt, x, y):
        value = loss_fn(model(x), y)
        opt.zero_grad()
        value.backward()
        return value.item()

    def loss_after_update(model, loss_fn, opt, x, y):
        step(model, loss_fn, opt, x, y)
        return loss_fn(model(x), y).item()

    accumulates = check("03.1", no_zero_grad)
    assert accumulates.passed is False and "backward()" in accumulates.hint
    frozen = check("03.1", no_update)
    assert frozen.passed is False and "no weight has changed" in frozen.message
    assert check("03.1", loss_after_update).passed is False
    assert check("03.1", 3.0).passed is False


def test_first_loss():
    assert check("03.2", math.log(10)).passed is True
    assert "base 10" in check("03.2", 1.0).hint
    assert "base 2" in check("03.2", math.log2(10)).hint
    wrong = check("03.2", 2.0)
    assert wrong.passed is False and "2.30" not in str(wrong)


def test_cosface_room():
    largest = 1 - math.cos(math.radians(36))
    assert check("03.3", largest).passed is True
    assert "radians" in check("03.3", 1 - math.cos(36.0)).hint
    assert check("03.3", math.radians(36)).passed is False
    assert check("03.3", 0.2).passed is False
    assert "0.19" not in check("03.3", 0.5).hint


def test_own_angle():
    emb, labels, centres = own_angle_data()
    x = torch.nn.functional.normalize(emb, dim=1)
    w = torch.nn.functional.normalize(centres, dim=1)
    degrees = torch.rad2deg(torch.acos((x * w[labels]).sum(1))).mean().item()
    assert check("03.4", degrees).passed is True
    assert "radians" in check("03.4", math.radians(degrees)).hint
    nearest = torch.rad2deg(torch.acos((x @ w.T).max(1).values)).mean().item()
    assert "nearest" in check("03.4", nearest).hint
    wrong = check("03.4", degrees + 5)
    assert wrong.passed is False and f"{degrees:.2f}" not in str(wrong)


def test_rotated_digits_predict_then_measure(mnist_root, monkeypatch):
    import functools

    from answer_leaks import predicts_and_measures

    from arclib.exercises import ch03

    monkeypatch.setenv("ARCLIB_DATA", str(mnist_root))
    monkeypatch.setattr(ch03, "rotated_accuracy", functools.lru_cache(ch03.rotated_accuracy))
    arcface, softmax = ch03.rotated_accuracy("mnist128-arcface"), ch03.rotated_accuracy("mnist128-softmax")
    assert 50 < arcface < 99 and 50 < softmax < 99  # a 30° turn costs accuracy, and leaves much of it
    unrotated = ch03.rotated_accuracy("mnist128-arcface", 0)
    assert abs(unrotated - 100 * ch03.pretrained.info("mnist128-arcface")["test_accuracy"]) < 0.05
    actual = "same" if abs(arcface - softmax) <= 1 else ("arcface" if arcface > softmax else "softmax")
    predicts_and_measures("03.5", ("arcface", "softmax", "same"), actual, arcface, round(arcface, 1), arcface - 5)
    assert "close" in check("03.5", {"prediction": actual, "measured": round(arcface)}).message
    assert "dict" in check("03.5", 87.7).message
