"""Sparsemax and its loss (Martins & Astudillo, ICML 2016), the criterion of Angular SparseMax (seed 002).

sparsemax(z) is the Euclidean projection of z onto the probability simplex (seed 002, eq. 4):
p = argmin_{p ∈ Δ} ‖p − z‖². Unlike softmax it gives classes exactly zero probability.

Seed 002's Algorithm 1 is garbled: it defines τ = ((Σ_{j≤c} z_j) − 1)/2. The correct threshold divides by
the support size ρ, not by 2, and sums only the ρ largest entries: τ = (Σ_{j≤ρ} z_(j) − 1)/ρ.
"""

from __future__ import annotations

import torch
from torch import Tensor

from arclib._checks import check_labels, check_tensor


def sparsemax(z: Tensor, dim: int = -1) -> Tensor:
    """p = max(z − τ, 0), with τ chosen so that p sums to one (Algorithm 1 of seed 002, corrected)."""
    check_tensor("z", z, "(..., C)")
    # sparsemax is shift-invariant; starting from max z = 0 keeps the test 1 + k·z_(k) > Σ z_(j) exact for large z
    return _project(z - z.amax(dim=dim, keepdim=True).detach(), dim)


def _project(z: Tensor, dim: int) -> Tensor:
    z_sorted, _ = torch.sort(z, dim=dim, descending=True)
    cumsum = z_sorted.cumsum(dim)
    shape = [1] * z.dim()
    shape[dim] = -1
    k = torch.arange(1, z.shape[dim] + 1, device=z.device, dtype=z.dtype).view(shape)
    # ρ = max{k : 1 + k·z_(k) > Σ_{j≤k} z_(j)}; the condition holds exactly on a prefix, so ρ is a count.
    # It always holds at k = 1, so ρ ≥ 1; the clamp only lets a NaN row come out NaN instead of failing to index.
    rho = (1 + k * z_sorted > cumsum).sum(dim=dim, keepdim=True).clamp_min(1)
    tau = (cumsum.gather(dim, rho - 1) - 1) / rho
    return torch.clamp(z - tau, min=0)


class _SparsemaxLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: Tensor, labels: Tensor) -> Tensor:
        z = z - z.amax(dim=1, keepdim=True)  # the loss is shift-invariant too; large scores stay exact
        p = _project(z, dim=1)
        z_y = z.gather(1, labels[:, None]).squeeze(1)
        loss = 0.5 * (1 - (p * p).sum(1)) + (p * z).sum(1) - z_y
        ctx.save_for_backward(p, labels)
        return loss.clamp_min(0)  # ≥ 0 in exact arithmetic; clamp only removes rounding below zero

    @staticmethod
    def backward(ctx, grad: Tensor):
        p, labels = ctx.saved_tensors
        g = p.clone()
        g.scatter_add_(1, labels[:, None], -torch.ones_like(p[:, :1]))
        return g * grad[:, None], None


def sparsemax_loss(z: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """L(z, y) = ½(1 − ‖p‖²) + ⟨p − e_y, z⟩ with p = sparsemax(z); its gradient is p − e_y.

    Zero (up to rounding, ~1e-16 in float64) when z_y ≥ 1 + max_{j≠y} z_j: the sample is then past the loss's own margin of 1.
    ``z``: a floating tensor (N, C) with N ≥ 1; ``labels``: an integer tensor (N,) with values in [0, C).
    """
    check_tensor("z", z, "(N, C)")
    if z.dim() != 2 or not z.dtype.is_floating_point:
        raise ValueError(f"z must be a floating tensor of shape (N, C), got {z.dtype} of shape {tuple(z.shape)}")
    if z.shape[0] == 0:
        raise ValueError(f"z must hold at least one row; got an empty batch of shape {tuple(z.shape)}")
    return _sparsemax_loss(z, check_labels(labels, z.shape[0], z.shape[1]), reduction)


def _sparsemax_loss(z: Tensor, labels: Tensor, reduction: str) -> Tensor:
    """``sparsemax_loss`` without the input checks, for callers that made them (``MarginLoss.forward``)."""
    losses = _SparsemaxLoss.apply(z, labels)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be one of 'mean', 'sum', 'none'; got {reduction!r}")
