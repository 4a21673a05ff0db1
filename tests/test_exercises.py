"""The exercise machinery: verdicts, hints for typical slips, one-line reports of the reader's own errors."""

import math
import re

import pytest
import torch

from arclib import exercises as ex


@pytest.fixture
def registered():
    @ex.exercise("99.1", "an angle in radians")
    def angle(answer):
        ex.expect_number(answer, math.pi / 4, what="the angle", mistakes={"that is in degrees": 45.0})
        return "right"

    @ex.exercise("99.2", "the squaring function")
    def square(answer):
        ex.expect_same_function(answer, lambda x: x * x, [(torch.randn(5),)], what="square",
                                mistakes={"that is 2x: you differentiated": lambda x: 2 * x})
        return "same values and gradients"

    yield
    ex._REGISTRY.pop("99.1")
    ex._REGISTRY.pop("99.2")


def test_unanswered_is_neither_pass_nor_fail(registered):
    for empty in (..., None):
        assert ex.check("99.1", empty).passed is None

    def stub(x):
        raise NotImplementedError

    assert ex.check("99.2", stub).passed is None


def test_number_pass_slip_and_plain_wrong(registered):
    assert ex.check("99.1", math.pi / 4).passed is True
    assert ex.check("99.1", torch.tensor(math.pi / 4)).passed is True
    slip = ex.check("99.1", 45)
    assert slip.passed is False and "degrees" in slip.hint
    wrong = ex.check("99.1", 1.0)
    assert wrong.passed is False and "too large" in wrong.message
    assert "0.785" not in str(wrong)  # the answer is never shown


def test_function_checked_on_values_and_gradients(registered):
    assert ex.check("99.2", lambda x: x**2).passed is True
    assert ex.check("99.2", lambda x: 2 * x).hint.startswith("that is 2x")
    detached = ex.check("99.2", lambda x: (x * x).detach())
    assert detached.passed is False and "no gradient" in detached.message
    bad_grad = ex.check("99.2", lambda x: x * x.detach())  # right values, half the gradient
    assert bad_grad.passed is False and "gradients differ" in bad_grad.message


def test_readers_error_is_one_line(registered):
    def broken(x):
        raise RuntimeError("shape mismatch\nmore detail")

    verdict = ex.check("99.2", broken)
    assert verdict.passed is False and verdict.message == "your answer raised RuntimeError: shape mismatch"


def test_unknown_id_and_bad_ids_are_refused():
    with pytest.raises(ValueError, match="exercise_id must be one of"):
        ex.check("00.0", 1)
    with pytest.raises(ValueError, match="chapter.number"):
        ex.exercise("2.1", "no leading zero")


def test_a_prediction_is_asked_first_and_not_graded_and_the_measurement_is():
    from arclib.exercises import Wrong, expect_prediction

    calls = []

    def measure():
        calls.append(1)
        return 12.34, "extra"

    def outcome(value, other):
        assert other == "extra"
        return "down"

    choices = {"up": "it rises", "down": "it falls"}
    args = (choices, measure, outcome)
    assert expect_prediction({"prediction": "down", "measured": 12.3}, *args, digits=3) == (12.34, "extra",
                                                                                          "as you predicted")
    assert expect_prediction({"prediction": "up", "measured": 12.34}, *args, digits=3)[2] == \
        "not as you predicted: it falls"
    for bad, says in [(12.3, "dict"), ({"measured": 12.3}, "dict"),
                      ({"prediction": "sideways", "measured": 12.3}, '"up" (it rises), "down" (it falls)'),
                      ({"prediction": ..., "measured": 12.3}, "predict first")]:
        with pytest.raises(Wrong, match=re.escape(says)):
            expect_prediction(bad, *args, digits=3)
    assert len(calls) == 2  # the experiment runs only for a well-formed answer
    with pytest.raises(Wrong, match="close — give more digits"):
        expect_prediction({"prediction": "up", "measured": 12}, *args, digits=3)
