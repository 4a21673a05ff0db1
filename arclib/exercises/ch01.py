"""Chapter 01 exercises: angles and distances, what an offset does, the layer that outputs cosines.

Every reference value is computed here with arclib (``CosineHead``, ``losses.angle``), never typed in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from arclib.exercises import exercise, expect_number, expect_same_function
from arclib.head import CosineHead
from arclib.losses import angle

#: The chapter's worked example (seed 001) and its four-pixel images (chapter 01, section 2).
A, B = (5.0, 2.0), (7.0, 4.0)
OFFSET = 3.0
CENTRES = ((4.0, 4.0, 1.0, 1.0), (1.0, 1.0, 2.0, 2.0))  # top-lit, bottom-lit
DIM_IMAGE = (1.0, 0.9, 0.3, 0.2)


def _angle_between(u: Tensor, v: Tensor) -> Tensor:
    """Angle in radians between the rows of ``u`` and ``v``, through arclib's clamped arccos."""
    return angle(F.cosine_similarity(u, v, dim=-1))


def offset_angle_degrees() -> float:
    a = torch.tensor(A, dtype=torch.float64)
    b = torch.tensor(B, dtype=torch.float64)
    return math.degrees(_angle_between(a, b + OFFSET).item())


@exercise("01.1", "an offset moves the angle")
def offset_angle(answer) -> str:
    a = torch.tensor(A, dtype=torch.float64)
    b = torch.tensor(B, dtype=torch.float64)
    expected = offset_angle_degrees()
    unchanged = math.degrees(_angle_between(a, b).item())
    expect_number(answer, expected, what="the angle", digits=3, mistakes={
        "the answer is asked in degrees; yours looks like radians": math.radians(expected),
        "that is the angle before the offset: adding the same number to every feature is not a scaling, "
        "so the direction of B changes": unchanged,
    }, hint="add the offset to every feature of B, then use θ = arccos(A·B / (‖A‖‖B‖))")
    return f"an offset of {OFFSET:g} turns B by {abs(expected - unchanged):.2f}°; a gain would not have turned it at all"


def chord_reference(theta: Tensor) -> Tensor:
    """‖u − v‖ for the unit vectors u = (1, 0) and v = (cos θ, sin θ), measured, not from a formula."""
    u = torch.stack([torch.ones_like(theta), torch.zeros_like(theta)], dim=-1)
    v = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)
    return (u - v).norm(dim=-1)


@exercise("01.2", "Euclidean distance between unit vectors")
def chord(answer) -> str:
    theta = torch.linspace(0.05, math.pi - 0.05, 37, dtype=torch.float64)
    expect_same_function(answer, chord_reference, [(theta,)], what="your distance(theta)", mistakes={
        "your function seems to expect degrees; theta is in radians": lambda t: 2 * torch.sin(torch.deg2rad(t) / 2),
        "that is the arc length on the unit circle (the geodesic distance), not the straight-line distance":
            lambda t: t,
        "close, but test your formula on a case you know: at θ = π/3 the triangle u, v, u − v is equilateral": lambda t: 2 * torch.sin(t),
    }, hint="draw u, v and u − v; the triangle has two sides of length 1 and the angle θ between them")
    return "on the unit sphere the Euclidean distance is a monotone function of the angle: they rank pairs alike"


def cosines_reference(E: Tensor, W: Tensor) -> Tensor:
    """arclib's CosineHead with the source's W (d × C, one centre per column) as its weight (C × d)."""
    head = CosineHead(embedding_dim=W.shape[0], num_classes=W.shape[1]).to(W.dtype)
    return functional_call(head, {"weight": W.T}, (E,))


@exercise("01.3", "a layer that outputs cosines")
def cosine_layer(answer) -> str:
    g = torch.Generator().manual_seed(13)
    inputs = [(torch.randn(6, 4, generator=g, dtype=torch.float64) * 3,
               torch.randn(4, 5, generator=g, dtype=torch.float64) * torch.tensor([0.2, 1.0, 4.0, 0.5, 9.0],
                                                                                dtype=torch.float64))]
    expect_same_function(answer, cosines_reference, inputs, what="your cosines(E, W)", mistakes={
        "the class centres are not unit length yet: normalise W too": lambda E, W: F.normalize(E, dim=1) @ W,
        "W holds one centre per column: normalise each column, not each row":
            lambda E, W: F.normalize(E, dim=1) @ F.normalize(W, dim=1),
        "the embeddings are not unit length yet: normalise each row of E": lambda E, W: E @ F.normalize(W, dim=0),
        "nothing is normalised: these are dot products, not cosines": lambda E, W: E @ W,
    }, hint="every output must lie in [−1, 1] and must not change when E or a column of W is scaled")
    return "this is arclib.CosineHead (which stores W transposed, one centre per row)"


def flip_offset() -> float:
    """Smallest offset b >= 0 at which x + b (every pixel) is closer in angle to the bottom-lit centre."""
    head = CosineHead(embedding_dim=4, num_classes=2).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor(CENTRES, dtype=torch.float64))
    x = torch.tensor(DIM_IMAGE, dtype=torch.float64)

    def margin(b: float) -> float:  # > 0 while the top-lit class still wins by angle
        cos = head((x + b)[None])[0]
        return (cos[0] - cos[1]).item()

    low, high = 0.0, 1.0
    while margin(high) > 0:
        high *= 2
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if margin(mid) > 0 else (low, mid)
    return high


@exercise("01.4", "the offset that flips the angle decision")
def flip(answer) -> str:
    expected = flip_offset()
    expect_number(answer, expected, what="the offset b", decimals=2, mistakes={
        "that is a negative offset; the question adds light": -expected,
    }, hint="compare cos θ to c1 and to c2 for x + b·(1, 1, 1, 1) as b grows; a fine grid or bisection finds the "
            "crossing to two decimals")
    return "a large enough offset makes every image look like the direction (1, 1, 1, 1), which is closer to c2"
