"""CosFace / AM-Softmax: additive cosine margin (Wang et al., CVPR 2018; seed 000, eq. 4)."""

from __future__ import annotations

import torch
from torch import Tensor

from arclib._checks import check_range
from arclib.losses.base import MarginLoss


class CosFace(MarginLoss):
    r"""L_lmc = −(1/N) Σ_i log( e^{s(cos θ_{y_i} − m)} / (e^{s(cos θ_{y_i} − m)} + Σ_{j≠y_i} e^{s cos θ_j}) ).

    ψ(θ) = cos θ − m: the margin is subtracted from the cosine, so in angle it is about m / sin θ — narrowest
    at θ = 90° and widening towards 0° and 180° (seed 000: "only a nonlinear angular margin").
    """

    name = "cosface"
    neutral_margins = {"m": 0.0}

    def __init__(self, s: float = 64.0, m: float = 0.35, num_classes: int | None = None,
                 embedding_dim: int | None = None, criterion: str = "softmax") -> None:
        super().__init__(s=s, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)
        self.m = check_range("m", m, -1.0, 2.0)  # m < 0: the negative margin of Liu et al., ECCV 2020

    def psi(self, theta: Tensor) -> Tensor:
        return torch.cos(theta) - self.m

    def target_logit_from_cos(self, cos_y: Tensor) -> Tensor:
        return self.s * (cos_y - self.m)

    def margin_hparams(self) -> dict:
        return {"m": self.m}
