"""ArcFace: additive angular margin (Deng et al., CVPR 2019; seed 000/001, eq. L3; seed 003's pipeline)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from arclib._checks import check_choice, check_range
from arclib.losses.base import MarginLoss

#: What ψ does once the margin pushes the angle past π, where cos(θ + m) would turn back up.
TAILS = ("continuous", "fallback", "straight_through", "easy", "none")


def angular_margin(theta: Tensor, m1: float, m2: float, m3: float, tail: str) -> Tensor:
    """ψ(θ) = cos(m1·θ + m2) − m3, with one of the treatments of the region where m1·θ + m2 > π.

    cos(θ + m) is not monotone on [0, π]: past θ* = π − m it rises again, so a sample far from its
    centre would be pulled *away* from it (QAMFace, seed 004, Fig. 1). The treatments:

    - ``"continuous"`` (arclib's default): past θ* use cos θ − cos θ* − 1 − m3, a CosFace-style tail that
      meets the curve at θ* (value −1 − m3). Monotone and continuous; past θ* its slope is NormFace's −sin θ,
      so it vanishes only at the single points θ* (where cos(θ + m) bottoms out) and θ = π, never on a stretch.
      Below θ* its gradient is deliberately that of cos(θ + m), which today's InsightFace drops
      (tests/test_peers.py).
    - ``"fallback"``: the original InsightFace code, cos θ − m·sin m past θ* (ArcFace only, m1 = 1).
      Monotone, but it jumps down at θ* (from −1 to −cos m − m·sin m ≈ −1.117 for m = 0.5). It is also
      pytorch-metric-learning's ``ArcFaceLoss`` (whose margin is in degrees).
    - ``"straight_through"``: today's InsightFace (arcface_torch's ``ArcFace`` and ``CombinedMarginLoss(s, 1, m,
      0)``): the value cos(θ + m) everywhere, the gradient of cos θ (the margin is applied without gradient). The
      value is still not monotone.
    - ``"easy"``: "easy margin": the margin only where cos θ > 0, plain cos θ beyond 90°. Not monotone at 90°.
    - ``"none"``: the textbook formula, not monotone.
    """
    raw = torch.cos(m1 * theta + m2) - m3
    if tail == "none":
        return raw
    cos = torch.cos(theta)
    if tail == "straight_through":
        return cos + (raw - cos).detach()
    if tail == "easy":
        return torch.where(cos > 0, raw, cos)
    theta_star = (math.pi - m2) / m1
    if tail == "continuous":
        beyond = cos - math.cos(theta_star) - 1 - m3
    else:  # fallback
        beyond = cos - m2 * math.sin(m2) - m3
    return torch.where(theta > theta_star, beyond, raw)


class ArcFace(MarginLoss):
    r"""L3 = −(1/N) Σ_i log( e^{s cos(θ_{y_i} + m)} / (e^{s cos(θ_{y_i} + m)} + Σ_{j≠y_i} e^{s cos θ_j}) ).

    Seed 003's five steps: normalise and dot (cos θ), arccos (θ), add m to the target angle, cos and scale by
    s, softmax cross-entropy. ψ(θ) = cos(θ + m); for θ > π − m see ``angular_margin`` (``tail``). ``m`` is in
    radians, as in the paper (pytorch-metric-learning's ``ArcFaceLoss`` takes degrees: its 28.6 is 0.49916 rad).
    """

    name = "arcface"
    neutral_margins = {"m": 0.0}

    def __init__(self, s: float = 64.0, m: float = 0.5, tail: str = "continuous", num_classes: int | None = None,
                 embedding_dim: int | None = None, criterion: str = "softmax") -> None:
        super().__init__(s=s, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)
        self.m = check_range("m", m, 0.0, math.pi / 2)
        self.tail = check_choice("tail", tail, TAILS)

    def psi(self, theta: Tensor) -> Tensor:
        return angular_margin(theta, 1.0, self.m, 0.0, self.tail)

    def margin_hparams(self) -> dict:
        return {"m": self.m, "tail": self.tail}
