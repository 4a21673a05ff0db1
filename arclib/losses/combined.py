"""Combined margin: SphereFace, ArcFace and CosFace at once (ArcFace paper, eq. 4; InsightFace)."""

from __future__ import annotations

import math

from torch import Tensor

from arclib._checks import check_choice, check_range
from arclib.losses.arcface import TAILS, angular_margin
from arclib.losses.base import MarginLoss


class Combined(MarginLoss):
    r"""ψ(θ) = cos(m1·θ + m2) − m3: multiplicative (SphereFace), additive angular (ArcFace) and additive
    cosine (CosFace) margins together. (1, m, 0) is ArcFace, (1, 0, m) CosFace, (m, 0, 0) SphereFace's
    cos(mθ) (without its piecewise extension). Past m1·θ + m2 = π, ``tail`` works as in ArcFace;
    ``"fallback"`` is defined only for m1 = 1, as in the original code. Every (m1, m2, m3) is deliberately the
    original mxnet formula: InsightFace's arcface_torch ``CombinedMarginLoss`` ignores m1 and m2 whenever m3 > 0
    and raises for m1 ≠ 1 with m3 = 0 (tests/test_peers.py).
    """

    name = "combined"
    neutral_margins = {"m1": 1.0, "m2": 0.0, "m3": 0.0}

    def __init__(self, s: float = 64.0, m1: float = 1.0, m2: float = 0.3, m3: float = 0.2, tail: str = "continuous",
                 num_classes: int | None = None, embedding_dim: int | None = None, criterion: str = "softmax") -> None:
        super().__init__(s=s, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)
        self.m1 = check_range("m1", m1, 0.0, 10.0, low_open=True)
        self.m2 = check_range("m2", m2, 0.0, math.pi / 2)
        self.m3 = check_range("m3", m3, 0.0, 2.0)
        self.tail = check_choice("tail", tail, TAILS)
        if self.tail == "fallback" and self.m1 != 1.0:
            raise ValueError(f"tail='fallback' needs m1 = 1 (it is ArcFace's original fallback), got m1={m1!r}")

    def psi(self, theta: Tensor) -> Tensor:
        return angular_margin(theta, self.m1, self.m2, self.m3, self.tail)

    def margin_hparams(self) -> dict:
        return {"m1": self.m1, "m2": self.m2, "m3": self.m3, "tail": self.tail}
