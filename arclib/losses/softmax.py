"""Softmax loss L1 (seed 000/001, eq. L1; QAMFace seed 004, eq. 1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from arclib._checks import check_finite, check_labels, check_tensor
from arclib.head import LinearHead
from arclib.losses.base import MarginLoss


class Softmax(MarginLoss):
    r"""L1 = −(1/N) Σ_i log( e^{W_{y_i}ᵀx_i + b_{y_i}} / Σ_j e^{W_jᵀx_i + b_j} ).

    No normalisation, no scale, no margin: the logits are the biased linear layer's outputs. Without
    ``embedding_dim`` the input is taken to be those logits. For the curve plots, ψ(θ) = cos θ: the target logit
    ‖W‖‖x‖cos θ + b with unit norms and b = 0.
    """

    name = "softmax"

    def __init__(self, num_classes: int | None = None, embedding_dim: int | None = None,
                 criterion: str = "softmax") -> None:
        super().__init__(s=1.0, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)

    def make_head(self, embedding_dim: int, num_classes: int) -> nn.Module:
        return LinearHead(embedding_dim, num_classes)

    def psi(self, theta: Tensor) -> Tensor:
        return torch.cos(theta)

    def input_name(self) -> str:
        return "features" if self.head is not None else "logits"

    def scores(self, x: Tensor, check_values: bool = True) -> Tensor:
        if self.head is None:
            check_tensor("logits", x, "(N, C)")
            if x.dim() != 2 or x.shape[1] < 2:
                raise ValueError(f"logits must have shape (N, C) with C >= 2 classes, got {tuple(x.shape)}")
            if self.num_classes is not None and x.shape[1] != self.num_classes:
                raise ValueError(f"logits must have {self.num_classes} columns (num_classes), got {x.shape[1]}")
            check_finite("logits", x)
            return x
        return super().scores(x, check_values)

    def logits(self, x: Tensor, labels: Tensor, check_values: bool = True) -> Tensor:
        z = self.scores(x, check_values)
        check_labels(labels, z.shape[0], z.shape[1])
        return z.to(torch.promote_types(z.dtype, torch.float32))

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> Tensor:
        return torch.softmax(self.scores(x).float(), dim=1)

    def hparams(self) -> dict:
        out = super().hparams()
        del out["s"]
        return out

    def extra_repr(self) -> str:
        return ""
