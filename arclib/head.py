"""The heads: a feature vector in, one score per class out.

``CosineHead`` is the normalised linear layer of NormFace, ArcFace and the rest: with x and each class
centre W_j scaled to unit length, the dot product W_j·x *is* cos θ_j (seed 001: "if E and E_c are
normalised … E·E_c = cos θ"). ``LinearHead`` is the plain biased layer of softmax L1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arclib._checks import NORM_EPS, check_centres, check_int, compute_dtype

#: On a circle or a sphere random directions crowd: ten random centres on a circle have two within a few degrees
#: of each other for most seeds, and a pair that starts together tends to stay together. There the centres start
#: spread out instead. In more dimensions random directions are already nearly orthogonal.
SPREAD_MAX_DIM, SPREAD_MAX_CLASSES = 3, 4096


def spread(weight: Tensor, steps: int = 300, sharpness: float = 8.0, lr: float = 0.05) -> Tensor:
    """Unit rows moved apart from ``weight``'s directions: gradient descent on Σ_{i≠j} exp(sharpness·cos θ_ij).

    Deterministic given ``weight``. On a circle it ends near equal spacing (36° for ten classes), on a sphere near
    the best packing (Tammes: about 64.7° for ten); which class sits where still depends on the random start.
    """
    w = F.normalize(weight.detach().double(), dim=1)
    off = ~torch.eye(w.shape[0], dtype=torch.bool)
    for _ in range(steps):
        with torch.enable_grad():  # also when a model is built under no_grad
            w.requires_grad_(True)
            energy = torch.exp(sharpness * (w @ w.T))[off].sum()
            (grad,) = torch.autograd.grad(energy, w)
        with torch.no_grad():
            w = F.normalize(w - lr * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12).max(), dim=1)
    return w.to(weight.dtype)


class CosineHead(nn.Module):
    """cos θ_j = ⟨x/‖x‖, W_j/‖W_j‖⟩ for every class j.

    ``weight`` has shape (num_classes, embedding_dim) like ``nn.Linear``: row j is the centre of class j
    (the sources write W with shape d × n, so a *column* there is a *row* here).
    """

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1, 1 << 24)
        self.num_classes = check_int("num_classes", num_classes, 2, 1 << 30)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight)  # only the direction of each row matters
        spread_out = self.embedding_dim <= SPREAD_MAX_DIM < self.num_classes <= SPREAD_MAX_CLASSES
        if spread_out and self.weight.device.type != "meta":  # checkpoint checks build on "meta": no values there
            with torch.no_grad():
                self.weight.copy_(spread(self.weight))

    def forward(self, x: Tensor) -> Tensor:
        """cos θ (N, C) in the wider of x's and W's dtype and float32 (float16 / bfloat16 features meet a float32
        W without a dtype clash; under autocast the matmul still runs in the autocast dtype). A zero row of W is
        a ValueError naming its class: it has no direction, and its gradient would be about 1e12."""
        dtype = compute_dtype(x.dtype, self.weight.dtype)
        weight = self.weight.to(dtype)
        norms = weight.norm(dim=1, keepdim=True)  # what F.normalize computes: checked, then reused
        check_centres(norms.squeeze(1))
        return F.linear(F.normalize(x.to(dtype), dim=1, eps=NORM_EPS), weight / norms.clamp_min(NORM_EPS))

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}"


class LinearHead(nn.Linear):
    """W_jᵀx + b_j: the biased linear layer of softmax L1 (seed 000, eq. L1)."""

    def __init__(self, embedding_dim: int, num_classes: int) -> None:
        check_int("embedding_dim", embedding_dim, 1, 1 << 24)
        check_int("num_classes", num_classes, 2, 1 << 30)
        super().__init__(embedding_dim, num_classes, bias=True)
        self.embedding_dim, self.num_classes = embedding_dim, num_classes

    def forward(self, x: Tensor) -> Tensor:
        """W x + b in the wider of x's and W's dtype and float32, as ``CosineHead`` does."""
        dtype = compute_dtype(x.dtype, self.weight.dtype)
        return F.linear(x.to(dtype), self.weight.to(dtype), self.bias.to(dtype))
