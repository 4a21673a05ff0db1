"""QAMFace: quadratic additive angular margin (Zhao et al., ICIP 2020; seed 004, eq. 4)."""

from __future__ import annotations

import math

from torch import Tensor

from arclib._checks import check_range
from arclib.losses.base import MarginLoss


class QAMFace(MarginLoss):
    r"""L_QAM = −(1/N) Σ_i log( e^{s(2π − (θ_{y_i} + m))²} / (e^{s(2π − (θ_{y_i} + m))²} + Σ_{j≠y_i} e^{s(2π − θ_j)²}) ).

    Every logit is a quadratic in the angle, the target's shifted by m. On [0, π] the target logit falls
    monotonically and its slope −2s(2π − θ − m) grows in magnitude as θ shrinks (seed 004, Fig. 1).
    The seed's defaults: s = 6, m = 0.5.
    """

    name = "qamface"
    neutral_margins = {"m": 0.0}
    cosine_non_target = False

    def __init__(self, s: float = 6.0, m: float = 0.5, num_classes: int | None = None,
                 embedding_dim: int | None = None, criterion: str = "softmax") -> None:
        super().__init__(s=s, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)
        self.m = check_range("m", m, 0.0, math.pi)

    def psi(self, theta: Tensor) -> Tensor:
        return (2 * math.pi - (theta + self.m)) ** 2

    def other_logit(self, theta: Tensor) -> Tensor:
        return self.s * (2 * math.pi - theta) ** 2

    def margin_hparams(self) -> dict:
        return {"m": self.m}
