"""Chapter 06 exercises: the accepted arc between two centres, the accepted area when s changes, the margin zone
in code, and a probability on the arc between two centres.

Every reference value is computed here with arclib (``arclib.sphere``, ``arclib.make``), never typed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from arclib import sphere
from arclib.exercises import Wrong, exercise, expect_number

# ---- 06.1 the accepted arc -----------------------------------------------------------------------------------
ARC_ALPHA, ARC_M = 1.2, 0.3


def _great_circle(alpha: float, n: int = 200001) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two unit centres α apart in the plane and n points on the arc between them (angle t from the first)."""
    centres = np.array([[1.0, 0.0, 0.0], [math.cos(alpha), math.sin(alpha), 0.0]])
    t = np.linspace(0.0, alpha, n)
    return centres, t, np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], 1)


def zone_width_on_arc(alpha: float = ARC_ALPHA, m: float = ARC_M, name: str = "cosface") -> float:
    """Width of the margin zone on the arc between two centres α apart, for loss ``name`` (``sphere.regions``)."""
    centres, t, points = _great_circle(alpha)
    zone = t[sphere.regions(points, centres, m, name) == -1]
    return float(zone.max() - zone.min()) if zone.size else 0.0


@exercise("06.1", "CosFace's margin zone between two centres")
def cosface_zone(answer) -> str:
    expected = zone_width_on_arc()
    expect_number(answer, expected, what="the zone's width (radians)", digits=3, mistakes={
        "the answer is asked in radians; yours looks like degrees": math.degrees(expected),
        "that is ArcFace's zone, m wide: CosFace's m is a step in cosine, not in angle": ARC_M,
        "that is one side of the zone; the boundary moves on both sides of the midpoint": expected / 2,
        "that is the first-order estimate m / sin(α/2); solve the boundary exactly":
            ARC_M / math.sin(ARC_ALPHA / 2),
    }, hint="on the arc θ_1 = α − θ_0; solve cos θ_0 − m = cos(α − θ_0) with the product of sines")
    return (f"between centres {ARC_ALPHA} rad apart CosFace's zone is {expected / ARC_M:.2f}× ArcFace's; "
            "it widens as the centres come closer, ArcFace's stays m")


# ---- 06.2 the accepted area when s changes -------------------------------------------------------------------
AREA_CLASS, AREA_M, AREA_S = 2, 0.3, 64.0


def accepted_area_of_class(m: float = AREA_M, c: int = AREA_CLASS) -> float:
    """The chapter's configuration: class c's accepted fraction of the sphere at margin m, on the fine mesh."""
    return float(sphere.accepted_area(sphere.synthetic_config().centres, m, sphere.sphere_mesh(120, 60))[c])


@exercise("06.2", "the accepted area when s grows")
def area(answer) -> str:
    expected = accepted_area_of_class()
    expect_number(answer, expected, what="the accepted fraction", decimals=3, mistakes={
        "that is class 2's area without a margin (m = 0)": accepted_area_of_class(0.0),
        "a fraction of the sphere, please, not a percentage": 100 * expected,
    }, hint="which of s and m decides whether a point is accepted? Read the answer off a table in the chapter")
    return "s appears nowhere in the acceptance test cos(θ_j + m) > max_k cos θ_k: no boundary moves with s"


# ---- 06.3 the margin zone in code ---------------------------------------------------------------------------
ZONE_M = 0.3


def _zone_points() -> tuple[np.ndarray, np.ndarray]:
    config = sphere.synthetic_config()
    rng = np.random.default_rng(6)
    points = rng.standard_normal((4000, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True), config.centres


def _zone_slips(cos: np.ndarray, m: float) -> dict[str, np.ndarray]:
    theta = np.arccos(np.clip(cos, -1, 1))
    top2 = np.sort(cos, axis=1)[:, -2:]
    best = theta.min(1)
    return {
        "that is CosFace's zone (cos θ_j − m): ArcFace adds m to the angle":
            top2[:, 1] - m <= top2[:, 0],
        "with the margin added to every class the test compares cos(θ_j + m) with cos(θ_k + m): no zone opens":
            np.zeros(len(cos), dtype=bool),
        "the zone is where no class accepts the point; you marked the accepted points":
            np.cos(best + m) > top2[:, 0],
    }


@exercise("06.3", "the margin zone in code")
def zone(answer: Callable[[np.ndarray, float], np.ndarray]) -> str:
    if not callable(answer):
        raise Wrong(f"write a function in_margin_zone(cos, m); you gave {type(answer).__name__}")
    points, centres = _zone_points()
    cos = np.clip(points @ centres.T, -1, 1)
    expected = sphere.regions(points, centres, ZONE_M) == -1
    got = answer(cos.copy(), ZONE_M)
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    if got.shape != expected.shape:
        raise Wrong(f"your function returns shape {got.shape}; it should return one True/False per point, "
                    f"shape {expected.shape}")
    got = got.astype(bool)
    if np.array_equal(got, expected):
        return f"{expected.mean():.0%} of random points on this sphere lie in the margin zone at m = {ZONE_M}"
    for hint, slip in _zone_slips(cos, ZONE_M).items():
        if np.array_equal(got, slip):
            raise Wrong("your zone matches what a typical slip gives", hint)
    wrong = int((got != expected).sum())
    raise Wrong(f"your zone differs from arclib's on {wrong} of {len(got)} points",
                "a point is accepted for its nearest class j if cos(θ_j + m) > the largest other cosine; "
                "the zone is where that fails")


# ---- 06.4 a probability on the arc -----------------------------------------------------------------------------
ARC_S, ARC_T = 16.0, 0.5


def probability_on_arc(s: float = ARC_S, t: float = ARC_T, alpha: float = ARC_ALPHA) -> float:
    """p(class 0) at angle t from W_0 on the arc to W_1 (α apart), two classes, scale s (``sphere.probabilities``)."""
    centres, _, _ = _great_circle(alpha, 2)
    point = np.array([[math.cos(t), math.sin(t), 0.0]])
    return float(sphere.probabilities(point, centres, s)[0, 0])


@exercise("06.4", "a probability on the arc between two centres")
def probability(answer) -> str:
    expected = probability_on_arc()
    expect_number(answer, expected, what="p_0", digits=3, mistakes={
        "that is the probability at s = 1: the logits are s·cos θ": probability_on_arc(s=1.0),
        "that is the other class's probability, 1 − p_0": 1 - expected,
        "at test time there is no margin: the probability uses s·cos θ_0, not s·cos(θ_0 + m)":
            1 / (1 + math.exp(ARC_S * (math.cos(ARC_ALPHA - ARC_T) - math.cos(ARC_T + ARC_M)))),
    }, hint="p_0 = 1 / (1 + e^{s·(cos θ_1 − cos θ_0)}) with θ_0 = t and θ_1 = α − t")
    return "a point 0.1 rad from the boundary is already this sure at s = 16; at s = 64 it would be surer still"
