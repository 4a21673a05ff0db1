"""Sub-center ArcFace: K sub-centres per class, the class's cosine the largest of theirs (Deng et al., ECCV 2020)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arclib._checks import (
    NORM_EPS,
    check_finite,
    check_int,
    check_labels,
    check_range,
    check_tensor,
    compute_dtype,
    first_zero_row,
)
from arclib.head import CosineHead
from arclib.losses.arcface import ArcFace


class SubCenterHead(nn.Module):
    """cos θ_j = max_k ⟨x/‖x‖, W_jk/‖W_jk‖⟩: each class owns ``sub_centres`` directions and a sample is scored by
    the nearest of them.

    ``weight`` has shape (num_classes · sub_centres, embedding_dim), class by class: row j·K + k is sub-centre k
    of class j (pytorch-metric-learning's ``SubCenterArcFaceLoss.W`` is its transpose, (d, C·K), in the same
    order).
    """

    def __init__(self, embedding_dim: int, num_classes: int, sub_centres: int) -> None:
        super().__init__()
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1, 1 << 24)
        self.num_classes = check_int("num_classes", num_classes, 2, 1 << 30)
        self.sub_centres = check_int("sub_centres", sub_centres, 1, 64)
        self.weight = nn.Parameter(torch.empty(self.num_classes * self.sub_centres, self.embedding_dim))
        nn.init.normal_(self.weight)

    def sub_cosines(self, x: Tensor) -> Tensor:
        """cos θ to every sub-centre, (N, C, K), in the dtype rule of ``CosineHead``. A zero row of W is a
        ValueError naming its class and sub-centre."""
        dtype = compute_dtype(x.dtype, self.weight.dtype)
        weight = self.weight.to(dtype)
        norms = weight.norm(dim=1, keepdim=True)
        row = int(first_zero_row(norms.squeeze(1)))
        if row >= 0:
            cls, sub = divmod(row, self.sub_centres)
            raise ValueError(f"weight rows (class centres) must have norm >= {NORM_EPS:g}, a direction to normalise; "
                             f"the row of class {cls} (sub-centre {sub}) is shorter (zero)")
        cos = F.linear(F.normalize(x.to(dtype), dim=1, eps=NORM_EPS), weight / norms.clamp_min(NORM_EPS))
        return cos.view(x.shape[0], self.num_classes, self.sub_centres)

    def forward(self, x: Tensor) -> Tensor:
        # max, not amax: the gradient goes to one sub-centre per class, as in the paper and pml
        return self.sub_cosines(x).max(dim=2).values

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, sub_centres={self.sub_centres}"


class SubCenterArcFace(ArcFace):
    r"""L = −(1/N) Σ_i log( e^{s cos(θ_{i,y_i} + m)} / (e^{s cos(θ_{i,y_i} + m)} + Σ_{j≠y_i} e^{s cos θ_{i,j}}) ),
    θ_{i,j} = arccos( max_k  Ŵ_{j,k}ᵀ x̂_i )  (Deng et al., "Sub-center ArcFace", ECCV 2020; also Sec. 3.2 of the
    extended ArcFace paper, arXiv:1801.07698, which includes it).

    ArcFace on the nearest sub-centre of each class. A clean sample of class j pulls the sub-centre it is
    nearest to; most of a class's clean samples end up near one *dominant* sub-centre, while mislabelled samples,
    far from it, can sit on a non-dominant one instead of dragging the dominant centre towards them. After
    training, ``dominant_sub_centres`` finds each class's dominant sub-centre, ``outliers`` the samples far from it
    (the paper drops those beyond 75° and retrains), and ``single_centre_head`` keeps the dominant ones only.

    With ``embedding_dim`` the loss owns a ``SubCenterHead``; without it, ``x`` is either the sub-centre cosines
    (N, C, sub_centres) or the per-class cosines (N, C), already reduced. ``m`` is in radians (pml: degrees).
    """

    name = "subcenter_arcface"
    scalable = False

    def __init__(self, s: float = 64.0, m: float = 0.5, sub_centres: int = 3, tail: str = "continuous",
                 num_classes: int | None = None, embedding_dim: int | None = None, criterion: str = "softmax") -> None:
        self.sub_centres = check_int("sub_centres", sub_centres, 1, 64)  # before the head is built
        super().__init__(s=s, m=m, tail=tail, num_classes=num_classes, embedding_dim=embedding_dim,
                         criterion=criterion)

    def make_head(self, embedding_dim: int, num_classes: int) -> nn.Module:
        return SubCenterHead(embedding_dim, num_classes, self.sub_centres)

    def scores(self, x: Tensor, check_values: bool = True) -> Tensor:
        if self.head is None and isinstance(x, Tensor) and x.dim() == 3:
            if x.shape[2] != self.sub_centres or x.shape[1] < 2:
                raise ValueError(f"cos_theta must have shape (N, C) or (N, C, {self.sub_centres}) (sub_centres), "
                                 f"got {tuple(x.shape)}")
            # checked before the max: it would hide a -inf or an out-of-range value on a non-maximal sub-centre
            check_finite("cos_theta", x)
            if x.numel() and (x.min() < -1 - 1e-3 or x.max() > 1 + 1e-3):
                raise ValueError(f"cos_theta must lie in [-1, 1], got values in [{float(x.min()):.4g}, "
                                 f"{float(x.max()):.4g}]")
            x = x.max(dim=2).values
        return super().scores(x, check_values)

    # ---- after training ---------------------------------------------------------------------------------------
    def _sub_cosines(self, x: Tensor) -> Tensor:
        if self.head is None:
            raise ValueError("dominant_sub_centres, outliers and single_centre_head need a loss built with "
                             "embedding_dim (a SubCenterHead holding W)")
        check_tensor("features", x, f"(N, {self.head.embedding_dim})")
        if x.dim() != 2 or x.shape[1] != self.head.embedding_dim:
            raise ValueError(f"features must have shape (N, {self.head.embedding_dim}), got {tuple(x.shape)}")
        check_finite("features", x)
        return self.head.sub_cosines(x)  # the head's dtype rule: float64 features stay float64

    def _sub_cosines_and_labels(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        sub = self._sub_cosines(x)
        return sub, check_labels(labels, sub.shape[0], sub.shape[1]).to(sub.device)

    def _dominant(self, sub: Tensor, labels: Tensor) -> Tensor:
        rows = torch.arange(len(labels), device=sub.device)
        nearest = sub[rows, labels].argmax(dim=1)
        counts = torch.zeros(sub.shape[1], self.sub_centres, dtype=torch.long, device=sub.device)
        counts.index_put_((labels, nearest), torch.ones_like(labels), accumulate=True)
        return counts.argmax(dim=1)  # ties: the lowest sub-centre index, as pml's bincount + argmax

    @torch.no_grad()
    def dominant_sub_centres(self, x: Tensor, labels: Tensor) -> Tensor:
        """For each class the sub-centre most of its samples are nearest to (C,), long; 0 for a class with none."""
        return self._dominant(*self._sub_cosines_and_labels(x, labels))

    @torch.no_grad()
    def outliers(self, x: Tensor, labels: Tensor, threshold_degrees: float = 75.0) -> Tensor:
        """A bool mask (N,): samples more than ``threshold_degrees`` from their class's dominant sub-centre.

        The paper's cleaning step (the end of Sec. 3.2 of arXiv:1801.07698; 75° in its experiments, insightface's
        ``recognition/subcenter_arcface/drop.py --threshold 75``); pml's ``get_outliers`` does the same.
        """
        threshold = check_range("threshold_degrees", threshold_degrees, 0.0, 180.0)
        sub, labels = self._sub_cosines_and_labels(x, labels)
        dominant = self._dominant(sub, labels)
        cos = sub[torch.arange(len(labels), device=sub.device), labels, dominant[labels]]
        return cos < math.cos(math.radians(threshold))

    @torch.no_grad()
    def single_centre_head(self, dominant: Tensor) -> CosineHead:
        """A ``CosineHead`` whose row j is class j's sub-centre ``dominant[j]``: the non-dominant ones dropped."""
        if self.head is None:
            raise ValueError("single_centre_head needs a loss built with embedding_dim (a SubCenterHead holding W)")
        c, k, d = self.head.num_classes, self.sub_centres, self.head.embedding_dim
        dominant = check_tensor("dominant", dominant, f"({c},)")
        if (dominant.shape != (c,) or dominant.dtype.is_floating_point or dominant.dtype == torch.bool
                or dominant.is_complex() or (dominant.numel() and (dominant.min() < 0 or dominant.max() >= k))):
            raise ValueError(f"dominant must be an integer tensor of shape ({c},) with values in [0, {k}), "
                             f"got {tuple(dominant.shape)} {dominant.dtype}")
        device = self.head.weight.device
        weight = self.head.weight.detach().view(c, k, d)[torch.arange(c, device=device), dominant.long().to(device)]
        with torch.device("meta"):  # no random init (nor, for d <= 3, the spreading of the centres): W is copied in
            head = CosineHead(d, c)
        head = head.to_empty(device=device).to(weight.dtype)
        head.weight.copy_(weight)
        return head

    def margin_hparams(self) -> dict:
        return {"m": self.m, "sub_centres": self.sub_centres, "tail": self.tail}
