"""The margin loss for many classes: exact, without an N×C buffer (chunked) or with exactly one (fused).

For every loss whose non-target logits are s·cos θ_j (NormFace, CosFace, ArcFace, SphereFace, the combined
margin) with the softmax criterion, the loss of sample i is

    L_i = log Σ_j e^{z_ij} − t_i,   z_ij = s·cos θ_ij (j ≠ y_i),   z_iy = t_i = s·ψ(θ_iy),

so the N target logits t_i are all the margin touches; the rest is a log-sum-exp of s·cos θ over C classes.

- ``chunked_margin_loss`` walks over the classes in chunks with the *online log-sum-exp*: keeping the running
  maximum M and the running sum S = Σ e^{z − M}, a new chunk with maximum m' updates them as
  M' = max(M, m'), S' = S·e^{M − M'} + Σ_chunk e^{z − M'}; at the end log Σ_j e^{z_j} = M + log S exactly.
  Backward recomputes each chunk's logits instead of keeping them: extra memory O(N·chunk), never O(N·C)
  (the C×d gradient of W is the gradient itself).
- ``fused_margin_loss`` keeps one N×C buffer: cos θ, turned in place into e^{z − max}, with the margin's N target
  entries set apart; backward only reads it (the per-row factors of the gradient go on the N×d side).

Both equal the unchunked ``loss(x, labels)`` of arclib (value and gradients), follow its dtype rule (the widest of
the features' dtype, W's dtype and float32) and its input checks, and can be run backward more than once
(``retain_graph=True``, ``torch.autograd.gradcheck``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from arclib._checks import (
    NORM_EPS,
    check_centres,
    check_choice,
    check_finite,
    check_int,
    check_labels,
    check_tensor,
    compute_dtype,
)
from arclib.head import CosineHead
from arclib.losses.base import MarginLoss
from arclib.losses.softmax import Softmax

EPS = NORM_EPS  # F.normalize's floor on a norm


def check_scalable(loss: MarginLoss, need_head: bool = True) -> None:
    """A ValueError unless ``loss`` has the softmax criterion, s·cos θ_j off the target, a target logit set by the
    target cosine alone (``MarginLoss.scalable``: not AdaFace, AdaCos or sub-center ArcFace), and (``need_head``)
    a cosine head holding W."""
    if not (isinstance(loss, MarginLoss) and not isinstance(loss, Softmax)  # Softmax: W x + b, not s·cos θ
            and loss.scalable and loss.criterion == "softmax"
            and loss.cosine_non_target and (isinstance(loss.head, CosineHead) or not need_head)):
        name = getattr(loss, "name", type(loss).__name__)
        head = " with embedding_dim (a CosineHead)," if need_head else ""
        why = ""
        if isinstance(loss, MarginLoss) and not loss.scalable:
            # AdaFace's margin needs the feature norms, AdaCos's s the whole N×C batch, sub-center ArcFace's
            # cosines a max over K sub-centres of each class
            why = (": its logits depend on more than a fixed s and one cosine per class (feature norms, a scale set "
                   "by the whole batch, or K sub-centres per class; scalable = False), so they cannot be computed "
                   "block by block")
        # the wording before `why` is printed by notebooks/09_arcface_at_scale.ipynb: keep it as it is
        raise ValueError(
            f"loss must be a MarginLoss{head} with the softmax criterion and non-target logits s·cos θ_j "
            "(normface, sphereface, cosface, arcface, combined); got "
            f"{name!r}" + (f" with criterion {loss.criterion!r}" if isinstance(loss, MarginLoss) else "") + why)


def _block_logits(x_hat: Tensor, w_block: Tensor, s: float, target: Tensor, rows: Tensor, cols: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """z for one block of classes (N × block): s·cos θ, with the target logits written at (rows, cols)."""
    w_norm = w_block.norm(dim=1).clamp_min(EPS)
    z = (s * x_hat) @ (w_block / w_norm[:, None]).T  # s on the N×d side: one pass over N×C fewer
    z[rows, cols] = target[rows].to(z.dtype)
    return z, w_norm


def _weight_grad(grad_w_hat: Tensor, w_block: Tensor, w_norm: Tensor) -> Tensor:
    """Backward of ŵ = w/‖w‖ (‖w‖ > eps): (g − ŵ⟨ŵ, g⟩)/‖w‖, in place in ``grad_w_hat``."""
    w_hat = w_block / w_norm[:, None]
    radial = (w_hat * grad_w_hat).sum(dim=1, keepdim=True)
    return grad_w_hat.sub_(w_hat.mul_(radial)).div_(w_norm[:, None])


class _Targets:
    """t_i = s·ψ(θ_iy) for the samples whose target class is among these rows of W (label ≥ 0), else 0.

    Only N rows of W are normalised. ψ runs under autograd on a detached copy of the N target cosines, so backward
    can apply dt/d(cos θ_y) later even if the loss's margin has changed since (``margin_fraction``), and W's
    gradient stays one C×d tensor written by the Function itself. That small graph (N numbers) is kept for as
    long as the outer graph lives, so a second backward (``retain_graph=True``) finds it again.
    """

    def __init__(self, x_hat: Tensor, weight: Tensor, labels: Tensor, target_fn) -> None:
        self.owned = (labels >= 0).nonzero().squeeze(1)
        self.classes = labels[self.owned]
        w_rows = weight[self.classes]
        self.w_norm = w_rows.norm(dim=1).clamp_min(EPS)
        self.w_hat = w_rows / self.w_norm[:, None]
        self.cos = (x_hat[self.owned] * self.w_hat).sum(dim=1).requires_grad_()
        with torch.enable_grad():
            self.logit = target_fn(self.cos)
        self.values = torch.zeros(x_hat.shape[0], dtype=x_hat.dtype, device=x_hat.device)
        self.values[self.owned] = self.logit.detach().to(x_hat.dtype)

    def backward(self, grad_t: Tensor, x_hat: Tensor, weight: Tensor, grad_x: Tensor, grad_w: Tensor | None) -> None:
        """Add the target logits' share of the gradients (``grad_t``: ∂loss/∂t_i, all N) to grad_x and grad_w."""
        (grad_cos,) = torch.autograd.grad(self.logit, self.cos, grad_t[self.owned].to(self.logit.dtype),
                                          retain_graph=True)
        grad_cos = grad_cos.to(x_hat.dtype)[:, None]
        grad_x.index_add_(0, self.owned, grad_cos * self.w_hat)
        if grad_w is not None:
            rows = _weight_grad(grad_cos * x_hat[self.owned], weight[self.classes], self.w_norm)
            grad_w.index_add_(0, self.classes, rows)


class ChunkedMarginLogSumExp(torch.autograd.Function):
    """(lse, t): lse_i = log Σ_j e^{z_ij} over W's rows, chunk by chunk, and the target logits t_i.

    ``labels`` are row indices into ``weight``; −1 means "this sample's target is not among these classes" (a
    shard of W in ``arclib.distributed``): its row is all s·cos θ and its t_i is 0. ``target_fn`` maps target
    cosines to s·ψ(θ) (``MarginLoss.target_logit_from_cos``). The loss is lse − t.
    """

    @staticmethod
    def forward(ctx, x_hat: Tensor, weight: Tensor, labels: Tensor, target_fn, s: float,
                chunk_size: int) -> tuple[Tensor, Tensor]:
        targets = _Targets(x_hat, weight, labels, target_fn)
        t = targets.values
        n = x_hat.shape[0]
        running_max = torch.full((n,), -torch.inf, dtype=x_hat.dtype, device=x_hat.device)
        running_sum = torch.zeros(n, dtype=x_hat.dtype, device=x_hat.device)
        for start in range(0, weight.shape[0], chunk_size):
            end = min(start + chunk_size, weight.shape[0])
            rows = ((labels >= start) & (labels < end)).nonzero().squeeze(1)
            z, _ = _block_logits(x_hat, weight[start:end], s, t, rows, labels[rows] - start)
            new_max = torch.maximum(running_max, z.max(dim=1).values)
            # the online log-sum-exp: rescale the old sum to the new maximum, add this chunk's terms
            running_sum = running_sum * torch.exp(running_max - new_max) + z.sub_(new_max[:, None]).exp_().sum(1)
            running_max = new_max
        lse = running_max + torch.log(running_sum)
        ctx.save_for_backward(x_hat, weight, labels, lse)
        ctx.targets, ctx.s, ctx.chunk_size = targets, s, chunk_size
        return lse, t

    @staticmethod
    def backward(ctx, grad_lse: Tensor, grad_t: Tensor):
        x_hat, weight, labels, lse = ctx.saved_tensors
        targets, s = ctx.targets, ctx.s
        grad_x = torch.zeros_like(x_hat)
        grad_w = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        grad_t = grad_t.clone()
        for start in range(0, weight.shape[0], ctx.chunk_size):
            end = min(start + ctx.chunk_size, weight.shape[0])
            rows = ((labels >= start) & (labels < end)).nonzero().squeeze(1)
            cols = labels[rows] - start
            z, w_norm = _block_logits(x_hat, weight[start:end], s, targets.values, rows, cols)
            # ∂lse_i/∂z_ij = softmax_ij: recomputed from the saved lse, times the incoming gradient, in place
            grad_z = z.sub_(lse[:, None]).exp_().mul_(grad_lse[:, None])
            grad_t[rows] += grad_z[rows, cols]
            grad_z[rows, cols] = 0  # the target entry is t, not s·cos θ: its gradient went to t
            grad_x.addmm_(grad_z, weight[start:end] / w_norm[:, None], alpha=s)  # z = s·cos θ
            if grad_w is not None:
                grad_w[start:end] = _weight_grad(grad_z.T @ (s * x_hat), weight[start:end], w_norm)
        targets.backward(grad_t, x_hat, weight, grad_x, grad_w)
        return grad_x, grad_w, None, None, None, None


class FusedMarginLogSumExp(torch.autograd.Function):
    """The same (lse, t) with one N×C buffer: cos θ → e^{z − max} in place, the N target entries set apart.

    Backward only reads the buffer: ∂loss/∂(cos θ_ij) = s·g_i·e^{z_ij − max_i}/S_i off the target, and the row
    factor s·g_i/S_i is applied to the N×d products instead of the N×C buffer. So the graph can be run backward
    again (``retain_graph=True``) at no extra memory.
    """

    @staticmethod
    def forward(ctx, x_hat: Tensor, weight: Tensor, labels: Tensor, target_fn, s: float) -> tuple[Tensor, Tensor]:
        targets = _Targets(x_hat, weight, labels, target_fn)
        rows = torch.arange(x_hat.shape[0], device=x_hat.device)
        z, w_norm = _block_logits(x_hat, weight, s, targets.values, rows, labels)
        row_max = z.max(dim=1).values
        exp_z = z.sub_(row_max[:, None]).exp_()  # the one N×C buffer, kept for backward
        sum_exp = exp_z.sum(dim=1)
        # the target entries are t = s·ψ(θ_y), not s·cos θ: their gradient goes to t, so backward needs them apart
        target_exp = exp_z[rows, labels]
        exp_z[rows, labels] = 0
        ctx.save_for_backward(x_hat, weight, w_norm, labels, exp_z, sum_exp, target_exp)
        ctx.targets, ctx.s = targets, s
        return row_max + torch.log(sum_exp), targets.values

    @staticmethod
    def backward(ctx, grad_lse: Tensor, grad_t: Tensor):
        x_hat, weight, w_norm, labels, exp_z, sum_exp, target_exp = ctx.saved_tensors
        softmax_scale = grad_lse / sum_exp
        grad_t = grad_t + target_exp * softmax_scale
        # ∂loss/∂(cos θ_ij) = s·g_i·softmax_ij off the target (its entries are 0 in the buffer): the row factor is
        # applied to the N×d products, so the buffer is never written and a second backward finds it intact
        row_scale = (ctx.s * softmax_scale)[:, None]
        grad_x = (exp_z @ (weight / w_norm[:, None])).mul_(row_scale)
        grad_w = _weight_grad(exp_z.T @ (x_hat * row_scale), weight, w_norm) if ctx.needs_input_grad[1] else None
        ctx.targets.backward(grad_t, x_hat, weight, grad_x, grad_w)
        return grad_x, grad_w, None, None, None


def _prepare(loss: MarginLoss, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    check_scalable(loss)
    check_tensor("features", x, "(N, embedding_dim)")
    if x.dim() != 2 or x.shape[1] != loss.head.embedding_dim or x.shape[0] == 0:
        raise ValueError(f"features must have shape (N, {loss.head.embedding_dim}) with N >= 1, got {tuple(x.shape)}")
    labels = check_labels(labels, x.shape[0], loss.head.weight.shape[0])
    dtype = compute_dtype(x.dtype, loss.head.weight.dtype)  # MarginLoss's rule, so every path gives one value
    weight = loss.head.weight.to(dtype)
    check_centres(weight.norm(dim=1))  # one pass over C×d, against the forward's N×C×d
    return F.normalize(x.to(dtype), dim=1, eps=EPS), weight, labels


def _reduce(per_sample: Tensor, reduction: str, x: Tensor) -> Tensor:
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    if not torch.isfinite(per_sample).all():
        check_finite("features", x)  # as MarginLoss.forward: look at the input only when the loss is not finite
    return per_sample.mean() if reduction == "mean" else per_sample.sum() if reduction == "sum" else per_sample


def chunked_margin_loss(loss: MarginLoss, x: Tensor, labels: Tensor, chunk_size: int = 8192,
                        reduction: str = "mean") -> Tensor:
    """``loss(x, labels)`` computed ``chunk_size`` classes at a time: no N×C buffer in forward or backward.

    ``loss`` is a ``MarginLoss`` built with ``embedding_dim`` (it owns the class centres W); see
    ``check_scalable`` for which losses qualify. Backward does the forward's matrix product once more per chunk.
    """
    chunk_size = check_int("chunk_size", chunk_size, 1, 1 << 30)
    x_hat, weight, labels = _prepare(loss, x, labels)
    lse, target = ChunkedMarginLogSumExp.apply(x_hat, weight, labels, loss.target_logit_from_cos, loss.s, chunk_size)
    return _reduce(lse - target, reduction, x)


def fused_margin_loss(loss: MarginLoss, x: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """``loss(x, labels)`` with one N×C buffer (no separate logits, log-softmax or gradient buffers).

    Backward only reads that buffer, so it can run more than once (``retain_graph=True``).
    """
    x_hat, weight, labels = _prepare(loss, x, labels)
    lse, target = FusedMarginLogSumExp.apply(x_hat, weight, labels, loss.target_logit_from_cos, loss.s)
    return _reduce(lse - target, reduction, x)


def peak_memory(fn) -> int:
    """The most bytes of CPU tensors allocated at once while ``fn()`` runs, beyond what was allocated before.

    torch's profiler logs every allocation and free of the CPU allocator with the running total ("[memory]"
    events); the peak of that total minus the total before the first event is the answer.
    """
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        with quiet_stderr():
            prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    mem = [e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0]
    mem = [e["args"] for e in sorted(mem, key=lambda e: e["ts"])]  # the trace lists them out of order
    if not mem:
        return 0
    base = mem[0]["Total Allocated"] - mem[0]["Bytes"]
    return max(0, max(m["Total Allocated"] for m in mem) - base)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """The profiler prints start/stop lines from C++ straight to file descriptor 2; keep outputs readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def peak_rss() -> int:
    """This process's resident-memory high-water mark in bytes (Linux: VmHWM of /proc/self/status).

    Not ``resource.getrusage(...).ru_maxrss``: Linux carries a parent's peak over ``fork`` + ``exec``, so a fresh
    child started by a big parent would report the parent's peak. 0 where /proc is not available.
    """
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return 0
