"""NormFace: normalised softmax L2 (Wang et al., ACM MM 2017; seed 000/001, eq. L2)."""

from __future__ import annotations

import torch
from torch import Tensor

from arclib.losses.base import MarginLoss


class NormFace(MarginLoss):
    r"""L2 = −(1/N) Σ_i log( e^{s cos θ_{y_i}} / (e^{s cos θ_{y_i}} + Σ_{j≠y_i} e^{s cos θ_j}) ).

    L1 with b = 0, ‖W_j‖ = 1 and ‖x_i‖ = 1 rescaled to s: W_jᵀx_i becomes s·cos θ_j. ψ(θ) = cos θ.
    """

    name = "normface"

    def __init__(self, s: float = 16.0, num_classes: int | None = None, embedding_dim: int | None = None,
                 criterion: str = "softmax") -> None:
        super().__init__(s=s, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)

    def psi(self, theta: Tensor) -> Tensor:
        return torch.cos(theta)

    def target_logit_from_cos(self, cos_y: Tensor) -> Tensor:
        return self.s * cos_y
