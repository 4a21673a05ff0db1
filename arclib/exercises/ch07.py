"""Chapter 07 — the margin family: CosFace's effective angular margin, the combined margin, sparsemax's support, and
the support of the digits a trained sparsemax model gets wrong (predict, then measure)."""

from __future__ import annotations

import math

import torch

from arclib import data, losses, metrics, pretrained
from arclib.exercises import Wrong, exercise, expect_number, expect_prediction, expect_same_function
from arclib.sparsemax import sparsemax


def _effective_margin(theta: float, m: float) -> float:
    """The angle ArcFace must add at ``theta`` to give CosFace's target logit there, found on arclib's own curves."""
    cosface = losses.make("cosface", s=1, m=m).target_logit(torch.tensor([theta], dtype=torch.float64)).item()
    return math.acos(cosface) - theta


@exercise("07.1", "CosFace's effective angular margin at θ")
def cosface_effective_margin(answer) -> str:
    theta, m = math.radians(60.0), 0.35
    expected = _effective_margin(theta, m)
    expect_number(answer, expected, what="the effective margin", digits=3,
                  mistakes={"that is in degrees; the question asks for radians": math.degrees(expected),
                            "that is CosFace's m itself: a cosine gap, not an angle": m,
                            "the sign is reversed: the margin makes the target's angle larger": -expected},
                  hint="solve cos(θ + m_eff) = cos θ − m for m_eff at θ = 60°")
    return (f"and at 20° it is {_effective_margin(math.radians(20.0), m):.3f} rad: where the cosine is flat, the same "
            f"cosine gap is a wider angle")


def _reference_combined(theta, s, m1, m2, m3):
    loss = losses.make("combined", s=s, m1=m1, m2=m2, m3=m3)
    return loss.target_logit(theta)


@exercise("07.2", "the combined margin's target logit")
def combined_logit(fn) -> str:
    settings = [(16.0, 1.0, 0.2, 0.1), (64.0, 1.0, 0.3, 0.2), (30.0, 0.9, 0.4, 0.15)]
    for s, m1, m2, m3 in settings:
        top = (math.pi - m2) / m1  # stay where m1·θ + m2 ≤ π: no tail treatment needed
        theta = torch.linspace(0.05, top - 0.05, 9, dtype=torch.float64)
        expect_same_function(
            lambda t, s=s, m1=m1, m2=m2, m3=m3: fn(t, s, m1, m2, m3),
            lambda t, s=s, m1=m1, m2=m2, m3=m3: _reference_combined(t, s, m1, m2, m3),
            [(theta,)], what=f"your function at s={s:g}, m1={m1:g}, m2={m2:g}, m3={m3:g}",
            mistakes={"m3 is subtracted from the cosine, outside it (CosFace's place)":
                      lambda t, s=s, m1=m1, m2=m2, m3=m3: s * torch.cos(m1 * t + m2 - m3),
                      "the scale multiplies m3 as well: s(cos(…) − m3)":
                      lambda t, s=s, m1=m1, m2=m2, m3=m3: s * torch.cos(m1 * t + m2) - m3,
                      "m1 multiplies the angle only, m2 is added after: cos(m1·θ + m2)":
                      lambda t, s=s, m1=m1, m2=m2, m3=m3: s * (torch.cos(m1 * (t + m2)) - m3)},
            hint="three margins in three places: on the angle (×, +) and on the cosine (−), then the scale")
    return "the same values and gradients as arclib's Combined, for three settings"


@exercise("07.3", "how many classes sparsemax keeps on a circle")
def sparsemax_support(answer) -> str:
    z = 1.9 * torch.cos(torch.deg2rad(36.0 * torch.arange(10, dtype=torch.float64)))
    expected = int((sparsemax(z[None]) > 0).sum())
    value = expect_number(answer, expected, what="the number of classes", rel=0, abs_tol=1e-9,
                          mistakes={"softmax keeps every class; sparsemax can give exact zeros": 10,
                                    "the own class alone would need its logit to lead every other by at least 1": 1},
                          hint="sort the logits and find how many of the top ones stay above the threshold τ")
    if value != int(value):
        raise Wrong("a number of classes is a whole number")
    return "the own class and its two neighbours on the circle"


def support_by_outcome(name: str = "mnist2d-angular_sparsemax") -> tuple[float, float]:
    """Mean sparsemax support (``metrics.support_size``, margin included) of the MNIST test digits that the shipped
    model ``name`` classifies wrongly, and of those it classifies correctly."""
    from torch.utils.data import DataLoader

    from arclib.train import embed

    model, loss, _ = pretrained.load(name)
    x, labels = embed(model, DataLoader(data.load("mnist", train=False), batch_size=1000), "cpu")
    support = metrics.support_size(loss, x, labels).double()
    right = loss.predict(x) == labels
    return float(support[~right].mean()), float(support[right].mean())


@exercise("07.4", "the support of the digits sparsemax gets wrong (predict, then measure)")
def support_of_mistakes(answer) -> str:
    choices = {"more": "more than one class more than the correct ones", "slightly": "more, by less than one class",
               "fewer": "the same or fewer"}
    wrong, right, verdict = expect_prediction(
        answer, choices, support_by_outcome,
        lambda w, r: "more" if w > r + 1 else ("slightly" if w > r else "fewer"),
        digits=3, what="the mean support of the misclassified digits",
        hint="metrics.support_size(loss, embeddings, labels), then the mean over the digits where loss.predict is wrong")
    note = f"{wrong:.2f} classes for the misclassified digits, {right:.2f} for the correct ones — {verdict}."
    if wrong <= right + 1:
        note += (" On the circle every digit has two neighbouring centres within reach, right or wrong: the support "
                 "follows the geometry more than the confidence")
    return note
