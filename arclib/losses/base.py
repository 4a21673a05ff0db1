"""The one pipeline every loss of the series shares.

    features x ──► head ──► cos θ (N×C) ──► margin ──► logits z (N×C) ──► criterion ──► loss
                  CosineHead              s·ψ(θ_y) on the target     softmax CE | sparsemax
                                          s·cos θ_j on the others

A loss is a ``MarginLoss`` subclass that says one thing: its target function ψ(θ) (and, for QAMFace, the
non-target one). Everything else — the head, angles, numerics, the criterion, input checks — lives here once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arclib._checks import (
    check_angles,
    check_choice,
    check_finite,
    check_int,
    check_labels,
    check_range,
    check_tensor,
)
from arclib.head import CosineHead
from arclib.sparsemax import _sparsemax_loss, sparsemax

CRITERIA = ("softmax", "sparsemax")


def angle(cos: Tensor) -> Tensor:
    """θ = arccos(cos θ), with cos θ clamped one machine epsilon inside [−1, 1].

    arccos has infinite slope at ±1; the clamp keeps every gradient finite (it is zero at the clamp).
    """
    eps = torch.finfo(cos.dtype).eps
    return torch.acos(cos.clamp(-1 + eps, 1 - eps))


class MarginLoss(nn.Module):
    """head → margin → criterion. Subclasses define ``psi``; see the module docstring.

    Call it as ``loss(x, labels)``. With ``embedding_dim`` given, the loss owns a ``CosineHead`` and ``x`` is
    a batch of features (N, embedding_dim); without it, ``x`` is a batch of cosines (N, C) in [−1, 1].
    """

    name: ClassVar[str] = ""
    #: True where logits are s·cos θ_j off the target, so the training path needs no arccos on the N×C matrix.
    cosine_non_target: ClassVar[bool] = True
    #: True where ``arclib.scale`` and ``arclib.distributed`` can compute the loss block by block: the target
    #: logit depends on the target cosine only, and the head is a ``CosineHead``.
    scalable: ClassVar[bool] = True
    #: The margin attributes and the value at which each is no margin at all (ArcFace: m = 0; the combined
    #: margin's multiplicative m1: 1). ``margin_fraction`` moves them between the two; empty: nothing to ramp.
    neutral_margins: ClassVar[dict[str, float]] = {}

    def __init__(self, s: float, num_classes: int | None = None, embedding_dim: int | None = None,
                 criterion: str = "softmax") -> None:
        super().__init__()
        self.s = check_range("s", s, 0, math.inf, low_open=True, high_open=True)
        self.criterion = check_choice("criterion", criterion, CRITERIA)
        if embedding_dim is not None and num_classes is None:
            raise ValueError("num_classes must be given (an integer >= 2) when embedding_dim is given")
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, 2, 1 << 30)
        self.head = None if embedding_dim is None else self.make_head(embedding_dim, self.num_classes)

    def make_head(self, embedding_dim: int, num_classes: int) -> nn.Module:
        return CosineHead(embedding_dim, num_classes)

    # ---- what a paper defines ---------------------------------------------------------------------------
    def psi(self, theta: Tensor) -> Tensor:
        """Target function ψ(θ) of the target angle, before the scale s."""
        raise NotImplementedError

    def target_logit(self, theta: Tensor) -> Tensor:
        """The target class's logit s·ψ(θ) as a function of its angle θ (what the curve notebooks plot).

        ``theta``: angles in [0, π], as a tensor or anything ``torch.as_tensor`` takes (a number, a list, a numpy
        array). NaN or an angle outside [0, π] is a ValueError: ψ is defined on [0, π] only.
        """
        return self._target_logit(check_angles("theta", theta))

    def _target_logit(self, theta: Tensor) -> Tensor:
        # unchecked: the training path's angles come from ``angle``, inside [0, π] by construction
        return self.s * self.psi(theta)

    def other_logit(self, theta: Tensor) -> Tensor:
        """A non-target class's logit as a function of its angle: s·cos θ for every loss but QAMFace."""
        return self.s * torch.cos(theta)

    def target_logit_from_cos(self, cos_y: Tensor) -> Tensor:
        """s·ψ(θ_y) from the target cosines; losses defined on cos θ (NormFace, CosFace) skip the arccos."""
        return self._target_logit(angle(cos_y))

    # ---- the shared machinery ---------------------------------------------------------------------------
    def scores(self, x: Tensor, check_values: bool = True) -> Tensor:
        """cos θ for every class (N, C): the head applied to features, or checked cosines passed in.

        ``check_values=False`` skips the finiteness check of features (a device sync per call); ``forward``
        makes it only when the loss comes out non-finite, which NaN or infinite features always cause.
        """
        check_tensor(self.input_name(), x, "(N, embedding_dim)" if self.head is not None else "(N, C)")
        if self.head is not None:
            if x.dim() != 2 or x.shape[1] != self.head.embedding_dim:
                raise ValueError(f"features must have shape (N, {self.head.embedding_dim}), got {tuple(x.shape)}")
            if check_values:
                check_finite("features", x)
            return self.head(x)
        if x.dim() != 2 or x.shape[1] < 2:
            raise ValueError(f"cos_theta must have shape (N, C) with C >= 2 classes, got {tuple(x.shape)}")
        if self.num_classes is not None and x.shape[1] != self.num_classes:
            raise ValueError(f"cos_theta must have {self.num_classes} columns (num_classes), got {x.shape[1]}")
        check_finite("cos_theta", x)
        if x.numel() and (x.min() < -1 - 1e-3 or x.max() > 1 + 1e-3):
            raise ValueError(f"cos_theta must lie in [-1, 1], got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]")
        return x

    def logits(self, x: Tensor, labels: Tensor, check_values: bool = True) -> Tensor:
        """z (N, C): s·ψ(θ_y) at each sample's target, the non-target logit elsewhere.

        Only the N target cosines go through ψ, and they are written into the N×C matrix in place, so the
        margin costs no N×C buffer beyond what s·cos θ already needs. The margin maths runs in at least
        float32, also under bf16/fp16 autocast (the fp16 number below 1 is 0.99951, an angle of 1.8°).
        """
        return self.logits_from_cos(self.scores(x, check_values), labels)

    def logits_from_cos(self, cos: Tensor, labels: Tensor) -> Tensor:
        """``logits`` from the scores the head gave (N, C)."""
        labels = check_labels(labels, cos.shape[0], cos.shape[1])
        cos = cos.to(torch.promote_types(cos.dtype, torch.float32))
        rows = torch.arange(cos.shape[0], device=cos.device)
        # advanced indexing keeps only the sizes for backward (gather would keep all of cos θ alive)
        target = self.target_logit_from_cos(cos[rows, labels])
        z = self.s * cos if self.cosine_non_target else self.other_logit(angle(cos))
        z[rows, labels] = target.to(z.dtype)
        return z

    def input_name(self) -> str:
        """What error messages call ``x``: "features" with a head, "cos_theta" without."""
        return "features" if self.head is not None else "cos_theta"

    def forward(self, x: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
        """The loss of the batch ``x`` with ``labels``: its mean, "sum" or per sample ("none").

        An empty batch is a ValueError (its mean would be NaN, and a NaN loss spoils every weight it touches), and
        so are NaN or infinite inputs and, with a cosine head, a zero row of W.

        dtypes: the head and the margin run in the widest of the features' dtype, W's dtype and float32, so
        float16 / bfloat16 features meet a float32 W and the loss comes out in float32 (float64 features: float64).
        Under autocast the head's matmul runs in the autocast dtype and the margin still in float32.
        ``arclib.scale`` and ``arclib.distributed`` follow the same rule and give the same value.
        """
        return self.criterion_loss(self.logits(x, labels, check_values=False), x, labels, reduction)

    def criterion_loss(self, z: Tensor, x: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
        """The criterion applied to the logits ``z`` of the batch ``x``; an empty batch or a non-finite loss is a
        ValueError naming the input."""
        if z.shape[0] == 0:
            raise ValueError(f"{self.input_name()} must hold at least one sample; got an empty batch of shape "
                             f"{tuple(x.shape)}")
        labels = labels.long()
        if self.criterion == "sparsemax":
            loss = _sparsemax_loss(z, labels, reduction)  # labels already checked by logits
        else:
            loss = F.cross_entropy(z, labels, reduction=reduction)
        if not torch.isfinite(loss).all():
            self.scores(x)  # raises the ValueError that names the non-finite input
        return loss

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> Tensor:
        """Class probabilities at test time: the criterion's map of the margin-free logits."""
        cos = self.scores(x).float()
        z = self.s * cos if self.cosine_non_target else self.other_logit(angle(cos))
        return sparsemax(z, dim=1) if self.criterion == "sparsemax" else torch.softmax(z, dim=1)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The predicted class: the nearest class centre by angle (largest cos θ)."""
        return self.scores(x).argmax(dim=1)

    def hparams(self) -> dict:
        """The constructor arguments that rebuild this loss with ``arclib.losses.make``."""
        out = {"s": self.s, "criterion": self.criterion, "num_classes": self.num_classes,
               "embedding_dim": None if self.head is None else self.head.embedding_dim}
        out.update(self.margin_hparams())
        return out

    def margin_hparams(self) -> dict:
        return {}

    @contextlib.contextmanager
    def margin_fraction(self, fraction: float) -> Iterator[MarginLoss]:
        """Within the block, every margin is ``fraction`` of the way from no margin to its value.

        A margin warm-up (``fit(margin_warmup=...)``) trains its first steps under this: m = 0 makes ArcFace
        NormFace, which cannot push a sample past θ* = π − m while the features are still random. The margins are
        restored on exit, so checkpoints and ``hparams()`` always hold the real ones.
        """
        fraction = check_range("fraction", fraction, 0.0, 1.0)
        saved = {name: getattr(self, name) for name in self.neutral_margins}
        try:
            for name, neutral in self.neutral_margins.items():
                setattr(self, name, neutral + fraction * (saved[name] - neutral))
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def extra_repr(self) -> str:
        parts = [f"s={self.s:g}"] + [f"{k}={v!r}" for k, v in self.margin_hparams().items()]
        if self.criterion != "softmax":
            parts.append(f"criterion={self.criterion!r}")
        return ", ".join(parts)
