"""AdaCos: NormFace with a scale that sets itself (Zhang et al., CVPR 2019)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from arclib._checks import check_choice, check_int, check_labels, check_range
from arclib.losses.base import angle
from arclib.losses.normface import NormFace


def fixed_scale(num_classes: int) -> float:
    """AdaCos's fixed scale s̃_f = √2·ln(C − 1) (Zhang et al., CVPR 2019): chapter 04's rule of
    thumb."""
    num_classes = check_int("num_classes", num_classes, 3, 1 << 30)
    return math.sqrt(2) * math.log(num_classes - 1)


class AdaCos(NormFace):
    r"""NormFace's logits s·cos θ_j with s updated every training step (Zhang et al., AdaCos, CVPR 2019, the
    dynamic scale):

        s(t) = ln B_avg(t) / cos( min(π/4, θ_med(t)) ),   B_avg(t) = (1/N) Σ_i Σ_{j≠y_i} e^{s(t−1)·cos θ_ij},

    θ_med the median target angle of the batch (for an even batch the lower of the two middle angles:
    ``torch.median``, as in 4uiiurz1/pytorch-adacos); s(0) = √2·ln(C − 1) (the fixed AdaCos) unless ``s`` is
    given. The update runs in training mode only, without gradient, before the batch's loss (as the paper's
    training procedure). An update that would not be a positive finite number (B_avg ≤ 1, possible with few classes)
    keeps the previous s. The current s is part of ``state_dict`` (a checkpoint resumes with it); ``hparams()``
    holds the starting value.
    """

    name = "adacos"
    scalable = False

    def __init__(self, s: float | None = None, num_classes: int | None = None, embedding_dim: int | None = None,
                 criterion: str = "softmax") -> None:
        check_choice("criterion", criterion, ("softmax",))  # B_avg is the softmax's normaliser
        if s is not None:
            start = check_range("s", s, 0, math.inf, low_open=True, high_open=True)
        elif num_classes is not None:
            check_int("num_classes", num_classes, 2, 1 << 30)
            if num_classes < 3:
                raise ValueError("num_classes must be >= 3 for AdaCos's starting scale sqrt(2)·ln(C − 1) "
                                 "(0 for two classes); give s to start from")
            start = fixed_scale(num_classes)
        else:
            start = 1.0  # replaced at the first call, once C is known
        super().__init__(s=start, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)
        self.initial_s = s
        self._scale_known = s is not None or num_classes is not None

    def _start(self, num_classes: int) -> None:
        if not self._scale_known:
            if num_classes < 3:
                raise ValueError("s must be given for AdaCos on two classes (sqrt(2)·ln(C − 1) = 0)")
            self.s, self._scale_known = fixed_scale(num_classes), True

    def logits_from_cos(self, cos: Tensor, labels: Tensor) -> Tensor:
        self._start(cos.shape[1])
        return super().logits_from_cos(cos, labels)

    @torch.no_grad()
    def update_scale(self, cos: Tensor, labels: Tensor) -> float:
        """One step of the dynamic scale from the cosines (N, C) of a batch and their labels; returns the new s."""
        self._start(cos.shape[1])
        labels = check_labels(labels, cos.shape[0], cos.shape[1])
        cos = cos.detach().double()
        rows = torch.arange(cos.shape[0], device=cos.device)
        others = (self.s * cos).index_put((rows, labels), torch.tensor(-math.inf, dtype=cos.dtype, device=cos.device))
        log_b_avg = torch.logsumexp(others.reshape(-1), dim=0) - math.log(cos.shape[0])
        theta_med = torch.median(angle(cos[rows, labels]))
        new = float(log_b_avg / torch.cos(torch.clamp(theta_med, max=math.pi / 4)))
        if math.isfinite(new) and new > 0:
            self.s = new
        return self.s

    def forward(self, x: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
        """As ``MarginLoss.forward``; in training mode s is first updated from this batch (one head pass for both)."""
        cos = self.scores(x, check_values=False)
        if self.training and cos.shape[0]:
            self.update_scale(cos, labels)
        return self.criterion_loss(self.logits_from_cos(cos, labels), x, labels, reduction)

    def get_extra_state(self) -> dict:
        return {"s": self.s, "scale_known": self._scale_known}

    def set_extra_state(self, state: dict) -> None:
        self.s, self._scale_known = float(state["s"]), bool(state["scale_known"])

    def hparams(self) -> dict:
        out = super().hparams()
        out["s"] = self.initial_s
        return out
