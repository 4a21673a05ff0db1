"""AdaFace: a margin that adapts to image quality through the feature norm (Kim, Jain & Liu, CVPR 2022)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from arclib._checks import check_angles, check_finite, check_labels, check_range, check_tensor, compute_dtype
from arclib.losses.base import MarginLoss, angle

#: The reference code's floors and caps: norms are clipped to [1e-3, 100], the std gets 1e-3 added.
NORM_FLOOR, NORM_CAP, STD_EPS = 1e-3, 100.0, 1e-3


class AdaFace(MarginLoss):
    r"""f(θ_y) = s·( cos(θ_y + g_angle) − g_add ),  g_angle = −m·ẑ,  g_add = m·ẑ + m,
    ẑ = clip( h·(‖x‖ − μ) / (σ + ε), −1, 1 )  (Kim et al., AdaFace, CVPR 2022, eq. 18 and the normalised norm
    before it; s multiplies the whole bracket, as the authors' code does and as they confirm for eq. 18 in
    mk-minchul/AdaFace issue #10: the printed equation lacks the parentheses).

    ‖x‖ is the feature norm before normalisation, a proxy of image quality (taken without gradient); μ and σ are
    the batch's mean and standard deviation of ‖x‖, kept as running averages with momentum ``t_alpha`` (the
    reference starts them at 20 and 100). ẑ = −1 (a low norm: a poor image) gives ArcFace's cos(θ + m), ẑ = 0
    CosFace's cos θ − m, ẑ = +1 (a high norm) cos(θ − m) − 2m, which pulls hard samples hardest. The angle θ + g_angle
    is clipped to [0, π], so ψ is monotone (flat past θ = π + m·ẑ for low-quality samples).

    The reference (mk-minchul/AdaFace, ``head.py``) also clamps every cos θ to ±(1 − 10⁻³) and the angle to
    [10⁻³, π − 10⁻³]; arclib clamps one machine epsilon inside ±1 as every other loss does, and the angle to
    [0, π], so the two agree wherever |cos θ| ≤ 0.999 and θ_y − m·ẑ lies in [10⁻³, π − 10⁻³]
    (tests/losses/test_adaface.py); past those angles both are flat and differ by at most s·(1 − cos 10⁻³) ≈
    s·5·10⁻⁷. Statistics are updated in training mode only; a batch of one (whose std the reference makes NaN)
    and a batch refused for its input leave them as they were. ``t_alpha`` = 0.01 is the reference's training
    default (its ``config.py``; the class itself defaults to 1).

    With ``embedding_dim`` the loss owns a ``CosineHead`` and reads ‖x‖ from the features; without it, pass the
    cosines (N, C) and ``norms=`` the features' norms (N,).
    """

    name = "adaface"
    neutral_margins = {"m": 0.0}
    scalable = False

    def __init__(self, s: float = 64.0, m: float = 0.4, h: float = 0.333, t_alpha: float = 0.01,
                 num_classes: int | None = None, embedding_dim: int | None = None, criterion: str = "softmax") -> None:
        super().__init__(s=s, num_classes=num_classes, embedding_dim=embedding_dim, criterion=criterion)
        self.m = check_range("m", m, 0.0, math.pi / 2)
        self.h = check_range("h", h, 0.0, math.inf, high_open=True)
        self.t_alpha = check_range("t_alpha", t_alpha, 0.0, 1.0, low_open=True)
        self.register_buffer("norm_mean", torch.tensor(20.0))
        self.register_buffer("norm_std", torch.tensor(100.0))

    # ---- what the paper defines ---------------------------------------------------------------------------
    def psi(self, theta: Tensor, quality: Tensor | float = 0.0) -> Tensor:
        """ψ(θ; ẑ) = cos(clip(θ − m·ẑ, 0, π)) − m·(1 + ẑ)."""
        return torch.cos((theta - self.m * quality).clamp(0, math.pi)) - self.m * (1 + quality)

    def target_logit(self, theta, quality=0.0) -> Tensor:
        """s·ψ(θ; ẑ) for angles θ in [0, π] and a normalised norm ``quality`` ẑ in [−1, 1] (a number or a tensor
        that broadcasts against θ): one curve per ẑ."""
        theta = check_angles("theta", theta)
        if isinstance(quality, Tensor):
            if quality.numel() and (torch.isnan(quality).any() or quality.min() < -1 or quality.max() > 1):
                raise ValueError("quality must be in [-1, 1] (the normalised feature norm z-hat), no NaN")
        else:
            quality = check_range("quality", quality, -1.0, 1.0)
        return self.s * self.psi(theta, quality)

    def quality(self, norms: Tensor, statistics: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """ẑ = clip(h·(‖x‖ − μ)/(σ + 10⁻³), −1, 1) with the current running μ and σ (or ``statistics`` = (μ, σ))."""
        mean, std = (self.norm_mean, self.norm_std) if statistics is None else statistics
        safe = norms.detach().clamp(NORM_FLOOR, NORM_CAP)
        return (self.h * (safe - mean) / (std + STD_EPS)).clamp(-1, 1)

    @torch.no_grad()
    def next_statistics(self, norms: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, σ) after this batch: t_alpha·mean(‖x‖) + (1 − t_alpha)·μ, and σ likewise with the batch's (unbiased)
        std, as the reference; a batch of one has no std and leaves both. The buffers are not changed."""
        if norms.numel() < 2:
            return self.norm_mean.clone(), self.norm_std.clone()
        safe = norms.detach().to(self.norm_mean.dtype).clamp(NORM_FLOOR, NORM_CAP)
        return (self.t_alpha * safe.mean() + (1 - self.t_alpha) * self.norm_mean,
                self.t_alpha * safe.std() + (1 - self.t_alpha) * self.norm_std)

    @torch.no_grad()
    def update_statistics(self, norms: Tensor) -> None:
        """μ ← t_alpha·mean(‖x‖) + (1 − t_alpha)·μ, and σ likewise (``next_statistics``), in place."""
        mean, std = self.next_statistics(norms)
        self.norm_mean.copy_(mean)
        self.norm_std.copy_(std)

    # ---- the pipeline, with the norms beside the cosines ------------------------------------------------------
    def _norms(self, x: Tensor, norms: Tensor | None) -> Tensor:
        check_tensor(self.input_name(), x, "(N, embedding_dim)" if self.head is not None else "(N, C)")
        if self.head is not None:
            if norms is not None:
                raise ValueError("norms must not be given when the loss owns a head (embedding_dim): it reads "
                                 "the norms from the features")
            if x.dim() != 2:
                raise ValueError(f"features must have shape (N, {self.head.embedding_dim}), got {tuple(x.shape)}")
            return x.detach().to(compute_dtype(x.dtype)).norm(dim=1)  # float64 features: float64 norms
        n = x.shape[0] if x.dim() >= 1 else "N"
        if norms is None:
            raise ValueError(f"norms must be given with cos_theta input: the features' norms, a tensor of shape "
                             f"({n},); or build the loss with embedding_dim to read them from the features")
        check_tensor("norms", norms, f"({n},)")
        if norms.shape != (n,):
            raise ValueError(f"norms must have shape ({n},) to match the batch, got {tuple(norms.shape)}")
        check_finite("norms", norms)
        if norms.numel() and norms.min() < 0:
            raise ValueError("norms must be >= 0 (they are feature norms)")
        return norms.detach().to(compute_dtype(norms.dtype))

    def logits(self, x: Tensor, labels: Tensor, check_values: bool = True, norms: Tensor | None = None) -> Tensor:
        """z (N, C) as ``MarginLoss.logits``, the target's margin set by each sample's ẑ."""
        cos = self.scores(x, check_values)
        return self.logits_from_cos(cos, labels, self._norms(x, norms))

    def logits_from_cos(self, cos: Tensor, labels: Tensor, norms: Tensor | None = None,
                        statistics: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``logits`` from the head's cosines and the norms, with the running (μ, σ) or the given ``statistics``."""
        if norms is None:
            raise ValueError("norms must be given: AdaFace's margin depends on each sample's feature norm")
        labels = check_labels(labels, cos.shape[0], cos.shape[1])
        cos = cos.to(torch.promote_types(cos.dtype, torch.float32))
        rows = torch.arange(cos.shape[0], device=cos.device)
        quality = self.quality(norms.to(cos.device), statistics).to(cos.dtype)
        target = self.s * self.psi(angle(cos[rows, labels]), quality)
        z = self.s * cos
        z[rows, labels] = target.to(z.dtype)
        return z

    def forward(self, x: Tensor, labels: Tensor, reduction: str = "mean", norms: Tensor | None = None) -> Tensor:
        """As ``MarginLoss.forward``; in training mode the batch's ẑ uses μ and σ already updated with this batch
        (as the reference does). The buffers take the new values only once the loss has been computed: a batch
        refused for its input (bad labels, NaN or infinite features) leaves them as they were."""
        cos = self.scores(x, check_values=False)
        norms = self._norms(x, norms)
        statistics = self.next_statistics(norms) if self.training else None
        loss = self.criterion_loss(self.logits_from_cos(cos, labels, norms, statistics), x, labels, reduction)
        if statistics is not None:
            with torch.no_grad():
                self.norm_mean.copy_(statistics[0])
                self.norm_std.copy_(statistics[1])
        return loss

    def margin_hparams(self) -> dict:
        return {"m": self.m, "h": self.h, "t_alpha": self.t_alpha}
