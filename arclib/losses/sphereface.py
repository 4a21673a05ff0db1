"""SphereFace / A-Softmax: multiplicative angular margin (Liu et al., CVPR 2017; seed 000, eq. 6)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from arclib._checks import check_int, check_range
from arclib.losses.base import MarginLoss


class SphereFace(MarginLoss):
    r"""ψ(θ) = (−1)^k cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m], k ∈ {0, …, m−1}, integer m.

    cos(mθ) alone turns back up after θ = π/m; the piecewise form (seed 004, §3.2) is monotone and continuous
    on [0, π] and falls from 1 to 1 − 2m. SphereFace scales by ‖x‖; arclib, like the ArcFace paper's
    comparison, normalises x and scales by s (pytorch-metric-learning's ``SphereFaceLoss`` scales by ‖x‖·scale, so
    the two agree only on unit-norm features: tests/test_peers.py). ``lam`` is SphereFace's annealing weight λ:
    ψ_λ = (λ·cos θ + ψ)/(1 + λ), which starts training close to NormFace (λ large) and is lowered towards 0.
    """

    name = "sphereface"

    def __init__(self, s: float = 64.0, m: int = 4, lam: float = 0.0, num_classes: int | None = None,
                 embedding_dim: int | None = None, criterion: str = "softmax") -> None:
        super().__init__(s=s, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)
        self.m = check_int("m", m, 1, 10)
        self.lam = check_range("lam", lam, 0.0, math.inf, high_open=True)

    def psi(self, theta: Tensor) -> Tensor:
        k = torch.floor(self.m * theta / math.pi).clamp(0, self.m - 1)
        sign = 1 - 2 * torch.remainder(k, 2)
        psi = sign * torch.cos(self.m * theta) - 2 * k
        if self.lam:
            psi = (self.lam * torch.cos(theta) + psi) / (1 + self.lam)
        return psi

    def margin_hparams(self) -> dict:
        return {"m": self.m, "lam": self.lam}
