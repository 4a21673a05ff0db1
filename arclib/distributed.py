"""The margin loss with its class centres W split across processes (torch.distributed), still exact.

With P processes, rank r holds the rows W[start_r:end_r] (about C/P class centres) and a batch of its own
features (data parallel). One training step:

1. all-gather the features and labels: every rank sees the whole batch X (N × d);
2. each rank computes, over its own classes only, lse_r = log Σ_{j in shard r} e^{z_ij} (``arclib.scale``'s
   chunked log-sum-exp: no N × C/P buffer either) and, for the samples whose class it owns, t_i = s·ψ(θ_iy);
3. all-reduce: the row maxima M = max_r lse_r, then S = Σ_r e^{lse_r − M}, and t (exactly one rank has each t_i,
   the others add 0): log Σ_j e^{z_ij} = M + log S, and the loss is the same number on every rank;
4. backward: each rank's gradient of X covers its own classes only, so the gradients of X are all-reduced
   (summed) and each rank keeps its own rows; the gradient of a shard of W never leaves its rank.

Per step each rank sends O(N·d) numbers, however many classes there are. This is PartialFC's layout
(An et al., "Partial FC", ICCVW 2021); its sampling of negative centres is ``sample_rate`` (off by default).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from arclib._checks import (
    check_choice,
    check_int,
    check_labels,
    check_range,
    check_tensor,
    compute_dtype,
    first_zero_row,
    zero_centre_message,
)
from arclib.losses.base import MarginLoss
from arclib.scale import EPS, ChunkedMarginLogSumExp, check_scalable

#: Bytes handed to collectives since the last ``reset_traffic`` (payloads, not wire bytes: a ring all-reduce
#: moves about 2·(P − 1)/P times its payload over each rank's link).
traffic = {"bytes": 0, "calls": 0}


def reset_traffic() -> None:
    traffic.update(bytes=0, calls=0)


def _count(tensor: Tensor) -> None:
    traffic["bytes"] += tensor.numel() * tensor.element_size()
    traffic["calls"] += 1


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised (one process, no collectives)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of the classes rank ``rank`` owns: contiguous blocks whose sizes differ by at most one."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def all_reduce(tensor: Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> Tensor:
    if world()[1] > 1:
        _count(tensor)
        dist.all_reduce(tensor, op=op)
    return tensor


def all_gather(tensor: Tensor) -> Tensor:
    """The tensors of every rank, concatenated along dim 0 in rank order (no gradient)."""
    world_size = world()[1]
    if world_size == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    _count(tensor.new_empty((world_size * tensor.shape[0],) + tensor.shape[1:]))
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class GatherRows(torch.autograd.Function):
    """Forward: all-gather the ranks' rows. Backward: each rank's gradient of the gathered rows is only its own
    classes' share, so the shares are summed across ranks (all-reduce) and each rank keeps its rows."""

    @staticmethod
    def forward(ctx, local: Tensor) -> Tensor:
        ctx.rows = local.shape[0]
        return all_gather(local)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        rank = world()[0]
        grad = all_reduce(grad.contiguous())
        return grad[rank * ctx.rows:(rank + 1) * ctx.rows]


class SumAcrossRanks(torch.autograd.Function):
    """Forward: all-reduce sum. Backward: identity. Every rank computes the same loss from the sum, so each
    already holds the whole ∂loss/∂sum and passes it to its own addend."""

    @staticmethod
    def forward(ctx, local: Tensor) -> Tensor:
        return all_reduce(local.clone())

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


#: dtype codes for the check that every rank sends alike (4 bits each in the packed signature)
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool)


def _dtype_code(dtype: torch.dtype) -> int:
    return _DTYPES.index(dtype) if dtype in _DTYPES else len(_DTYPES)


def _dtype_name(code: int) -> str:
    return str(_DTYPES[code]).removeprefix("torch.") if code < len(_DTYPES) else "another dtype"


def _per_rank(values: Iterable) -> str:
    return ", ".join(f"rank {rank}: {value}" for rank, value in enumerate(values))


def _mismatch(details: list[list[int]]) -> str | None:
    """The error for what the ranks sent (``ShardedMarginLoss._check_ranks``), or None if all is well."""
    x_code, ndim, rows, cols, w_code, dim, zero, labels_ok = map(list, zip(*details, strict=True))
    if len(set(dim)) > 1:
        return f"embedding_dim must be the same on every rank, got {_per_rank(dim)}"
    shapes = [f"({r}, {c})" if n == 2 else f"a {n}-D tensor" for n, r, c in zip(ndim, rows, cols, strict=True)]
    if any(n != 2 or r < 1 or c != dim[0] for n, r, c in zip(ndim, rows, cols, strict=True)):
        return f"features must have shape (N, {dim[0]}) with N >= 1 on every rank, got {_per_rank(shapes)}"
    if len(set(rows)) > 1:
        return f"features must have the same batch size on every rank, got {_per_rank(rows)}"
    if len(set(x_code)) > 1:
        return f"features must have the same dtype on every rank, got {_per_rank(map(_dtype_name, x_code))}"
    if len(set(w_code)) > 1:
        return f"weight must have the same dtype on every rank, got {_per_rank(map(_dtype_name, w_code))}"
    if any(z >= 0 for z in zero):
        return zero_centre_message(next(z for z in zero if z >= 0))
    if not all(labels_ok):
        return (f"labels must be integers in [0, num_classes) of shape (N,) on every rank; those of rank(s) "
                f"{[r for r, ok in enumerate(labels_ok) if not ok]} are not (that rank's error says why)")
    return None


class ShardedMarginLoss(nn.Module):
    """``loss`` (any margin loss ``arclib.scale`` accepts) with W split over the ranks of torch.distributed.

    ``weight`` holds this rank's rows W[start:end] (``shard_range``); call ``ShardedMarginLoss(...)(x, labels)``
    with this rank's batch (the same batch size on every rank). The result is the loss of the whole batch,
    equal on every rank; backward gives each rank the gradients of its own features and of its own shard.
    Without torch.distributed initialised it is the one-process loss (``chunked_margin_loss``).
    """

    def __init__(self, loss: MarginLoss, num_classes: int, embedding_dim: int, weight: Tensor | None = None,
                 chunk_size: int = 8192, sample_rate: float = 1.0) -> None:
        super().__init__()
        check_scalable(loss, need_head=False)
        self.sample_rate = check_range("sample_rate", sample_rate, 0.0, 1.0, low_open=True)
        self.loss = loss
        self.num_classes = check_int("num_classes", num_classes, 2, 1 << 30)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1, 1 << 24)
        self.chunk_size = check_int("chunk_size", chunk_size, 1, 1 << 30)
        rank, world_size = world()
        self.start, self.end = shard_range(num_classes, rank, world_size)
        shape = (self.end - self.start, embedding_dim)
        if weight is None:
            self.weight = nn.Parameter(torch.randn(shape))  # only each row's direction matters, as in CosineHead
        elif tuple(weight.shape) != shape:
            raise ValueError(f"weight must be this rank's shard of shape {shape} (rows {self.start}:{self.end} of "
                             f"W), got {tuple(weight.shape)}")
        else:
            self.weight = nn.Parameter(weight.detach().clone())

    def forward(self, x: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
        """The loss of the whole batch (see the class). Features and W run in the widest of their dtypes and
        float32, as in ``MarginLoss.forward``; backward can run more than once (``retain_graph=True``)."""
        check_tensor("features", x, "(N, embedding_dim)")
        check_choice("reduction", reduction, ("mean", "sum", "none"))
        labels = self._check_ranks(x, labels)
        features = GatherRows.apply(x.to(compute_dtype(x.dtype, self.weight.dtype)))
        labels = all_gather(labels)
        x_hat = F.normalize(features, dim=1, eps=EPS)
        mine = (labels >= self.start) & (labels < self.end)
        local_labels = torch.where(mine, labels - self.start, -1)
        weight = self.weight
        if self.sample_rate < 1 and self.training:
            weight, local_labels = self.sample_centres(local_labels)
        lse_local, target_local = ChunkedMarginLogSumExp.apply(
            x_hat, weight.to(x_hat.dtype), local_labels, self.loss.target_logit_from_cos, self.loss.s,
            self.chunk_size)
        # log Σ over all classes from the ranks' partial log-sum-exps, shifted by their maximum (no overflow)
        shift = all_reduce(lse_local.detach().clone(), dist.ReduceOp.MAX)
        lse = shift + torch.log(SumAcrossRanks.apply(torch.exp(lse_local - shift)))
        per_sample = lse - SumAcrossRanks.apply(target_local)
        if not torch.isfinite(per_sample).all():  # the same on every rank: all look, and all raise
            bad = (~torch.isfinite(features).all(dim=1)).nonzero().squeeze(1) // x.shape[0]
            if len(bad):
                raise ValueError("features must be finite (values in (-inf, inf), no NaN); those of rank(s) "
                                 f"{bad.unique().tolist()} hold non-finite entries")
        return per_sample.mean() if reduction == "mean" else per_sample.sum() if reduction == "sum" else per_sample

    def _check_ranks(self, x: Tensor, labels: Tensor) -> Tensor:
        """This rank's labels, checked, once every rank has checked its features, labels and shard alike.

        A dtype or embedding size that differs between ranks would abort gloo in C++, and an error raised on one
        rank alone would leave the others waiting in a collective. So every rank sends one packed int64 (batch,
        embedding size, the features' and W's dtypes; −1 if its own checks failed: a shape, a zero centre, its
        labels), the 8·P bytes the batch-size check always cost; only when they differ does a second gather fetch
        the details, and every rank raises the same ValueError naming the ranks.
        """
        rows, cols = (x.shape[0], x.shape[1]) if x.dim() == 2 else (-1, -1)
        zero = int(first_zero_row(self.weight.detach().norm(dim=1)))
        fine = rows >= 1 and cols == self.embedding_dim and zero < 0
        labels_error = None
        if fine:
            try:
                labels = check_labels(labels, rows, self.num_classes)
            except ValueError as error:
                labels_error = error
        x_code, w_code = _dtype_code(x.dtype), _dtype_code(self.weight.dtype)
        fine = fine and labels_error is None and rows < 1 << 29  # the packing's room (cols < 2^25: embedding_dim)
        signature = ((rows << 25 | cols) << 4 | x_code) << 4 | w_code if fine else -1
        signatures = all_gather(torch.tensor([signature], device=x.device))
        if fine and bool((signatures == signature).all()):
            return labels
        info = [x_code, x.dim(), rows, cols, w_code, self.embedding_dim, zero + self.start if zero >= 0 else -1,
                int(labels_error is None)]
        message = _mismatch(all_gather(torch.tensor([info], device=x.device)).tolist())
        if labels_error is not None and message and message.startswith("labels"):
            raise labels_error  # this rank's own, more precise message
        if message:
            raise ValueError(message)
        return labels

    def sample_centres(self, local_labels: Tensor) -> tuple[Tensor, Tensor]:
        """PartialFC's sampling: this shard's centres of the batch's classes, then random others up to a fraction
        ``sample_rate`` of the shard. The loss then runs over these rows only: cheaper, no longer the full loss,
        and the centres left out get no gradient this step. Returns the rows and the labels as indices into them."""
        positives = local_labels[local_labels >= 0].unique()  # sorted
        others = torch.ones(self.weight.shape[0], dtype=torch.bool, device=self.weight.device)
        others[positives] = False
        others = others.nonzero().squeeze(1)
        wanted = max(round(self.sample_rate * self.weight.shape[0]), len(positives)) - len(positives)
        negatives = others[torch.randperm(len(others), device=others.device)[:wanted]]
        rows = torch.cat([positives, negatives])
        sampled_labels = torch.where(local_labels >= 0, torch.searchsorted(positives, local_labels.clamp_min(0)), -1)
        return self.weight[rows], sampled_labels

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The nearest class centre (largest cos θ) over all shards, for this rank's ``x`` (the same batch size
        on every rank): every rank scores the gathered batch against its own centres."""
        rank, rows = world()[0], x.shape[0]
        x_hat = F.normalize(all_gather(x.float()), dim=1, eps=EPS)
        cos = x_hat @ F.normalize(self.weight.float(), dim=1, eps=EPS).T
        best, where = cos.max(dim=1)
        best_all = all_reduce(best.clone(), dist.ReduceOp.MAX)
        # the owner of the best centre reports its index; ties across ranks go to the lowest class index
        index = all_reduce(torch.where(best == best_all, where + self.start, self.num_classes), dist.ReduceOp.MIN)
        return index[rank * rows:(rank + 1) * rows]

    def extra_repr(self) -> str:
        return f"classes {self.start}:{self.end} of {self.num_classes}, embedding_dim={self.embedding_dim}"


# ---------------------------------------------------------------------------------------------------------------
# Starting processes: gloo on CPU, from a script, a test or a notebook (spawn: nothing is forked from a kernel)


def launch(fn: Callable[..., Any], world_size: int, *args: Any, threads: int = 1) -> list[Any]:
    """Run ``fn(*args)`` in ``world_size`` new processes joined by torch.distributed (gloo) and return what each
    rank returned, in rank order. ``fn`` must be importable (defined in a module, not in a notebook cell)."""
    world_size = check_int("world_size", world_size, 1, 64)
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_run_rank, args=(fn, world_size, tmp, args, threads), nprocs=world_size)
        return [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=False) for r in range(world_size)]


def _run_rank(rank: int, fn: Callable[..., Any], world_size: int, tmp: str, args: tuple, threads: int) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(tmp, 'rendezvous')}", rank=rank,
                            world_size=world_size)
    try:
        torch.save(fn(*args), os.path.join(tmp, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def sum_gradients(module: nn.Module) -> None:
    """All-reduce (sum) the gradients of a module every rank holds a copy of (the backbone). Sum, not mean: the
    sharded loss is already the mean over the whole batch, and rank r's gradient is the share of its samples."""
    for p in module.parameters():
        if p.grad is not None:
            all_reduce(p.grad)


def _relative_error(got: Tensor, expected: Tensor) -> float:
    got, expected = got.detach(), expected.detach()
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def compare_with_one_process(name: str = "arcface", num_classes: int = 50, embedding_dim: int = 8,
                             batch: int = 12, in_features: int = 6, chunk_size: int = 7, lr: float = 0.5,
                             seed: int = 0) -> dict[str, float]:
    """Run on every rank (``launch(compare_with_one_process, P)``): one training step of a linear backbone and
    the margin loss ``name``, once in this process alone on the whole batch with the whole W (arclib's loss),
    once sharded (this rank's rows of W and of the batch). Returns the largest relative differences of the
    loss, the gradients of the features and of W, and the backbone and W after one SGD step, and the loss."""
    from arclib.losses import make

    rank, world_size = world()
    if batch % world_size:
        raise ValueError(f"batch must be a multiple of the number of processes ({world_size}), got {batch}")
    torch.manual_seed(seed)  # the same data and start on every rank
    inputs, labels = torch.randn(batch, in_features), torch.randint(0, num_classes, (batch,))
    backbone = nn.Linear(in_features, embedding_dim)
    whole = make(name, num_classes=num_classes, embedding_dim=embedding_dim)
    start, end = shard_range(num_classes, rank, world_size)
    rows = slice(rank * batch // world_size, (rank + 1) * batch // world_size)

    # one process, everything
    ref_backbone = nn.Linear(in_features, embedding_dim)
    ref_backbone.load_state_dict(backbone.state_dict())
    features = ref_backbone(inputs)
    features.retain_grad()
    ref_loss = whole(features, labels)
    ref_loss.backward()
    torch.optim.SGD([*ref_backbone.parameters(), *whole.parameters()], lr=lr).step()

    # sharded: this rank's samples and classes
    template = make(name, **{k: v for k, v in whole.hparams().items() if k not in ("num_classes", "embedding_dim")})
    with torch.no_grad():
        shard = whole.head.weight[start:end] + lr * whole.head.weight.grad[start:end]  # W before the step
    sharded = ShardedMarginLoss(template, num_classes, embedding_dim, weight=shard, chunk_size=chunk_size)
    local = backbone(inputs[rows])
    local.retain_grad()
    loss = sharded(local, labels[rows])
    loss.backward()
    sum_gradients(backbone)
    grad_w_error = _relative_error(sharded.weight.grad, whole.head.weight.grad[start:end])
    torch.optim.SGD([*backbone.parameters(), *sharded.parameters()], lr=lr).step()
    return {
        "loss": loss.item(),
        "loss error": _relative_error(loss.detach(), ref_loss.detach()),
        "feature gradient error": _relative_error(local.grad, features.grad[rows]),
        "W gradient error": grad_w_error,
        "backbone after a step error": max(_relative_error(p, q) for p, q in
                                           zip(backbone.parameters(), ref_backbone.parameters(), strict=True)),
        "W after a step error": _relative_error(sharded.weight.detach(), whole.head.weight.detach()[start:end]),
    }


def train_synthetic(num_classes: int = 10_000, steps: int = 100, batch: int = 256, in_features: int = 64,
                    embedding_dim: int = 32, lr: float = 32.0, seed: int = 0, sample_rate: float = 1.0
                    ) -> dict[str, Any]:
    """Run on every rank (or in one process without torch.distributed): train a linear embedding and sharded
    ArcFace on synthetic identities, ``num_classes`` of them, each a random point in R^in_features whose samples
    are that point plus noise. Every rank draws the same global batch per step and keeps its own rows, so any
    number of processes trains the very same model. Returns the loss per step, this rank's shard range and W
    shard, the backbone's weights, and fresh samples of the classes seen in training: this rank's part of their
    features and labels and the accuracy on all of them (nearest centre over all shards). The step size is large because only directions matter (features and centres are
    normalised) and each centre gets a 1/batch share of the mean loss's gradient. ``sample_rate`` < 1 trains
    with PartialFC's sampling (``ShardedMarginLoss.sample_centres``); the accuracy is always over all centres."""
    from arclib.losses import make

    rank, world_size = world()
    if batch % world_size:
        raise ValueError(f"batch must be a multiple of the number of processes ({world_size}), got {batch}")
    gen = torch.Generator().manual_seed(seed)
    identities = torch.randn(num_classes, in_features, generator=gen)
    backbone = nn.Linear(in_features, embedding_dim)
    with torch.no_grad():
        backbone.weight.copy_(torch.randn(embedding_dim, in_features, generator=gen) / in_features ** 0.5)
        backbone.bias.zero_()
    start, end = shard_range(num_classes, rank, world_size)
    weight = torch.randn(num_classes, embedding_dim, generator=gen)[start:end]  # the same W, this rank's rows
    loss = ShardedMarginLoss(make("arcface", s=30.0, m=0.3), num_classes, embedding_dim, weight=weight,
                             sample_rate=sample_rate)
    torch.manual_seed(seed + rank)  # PartialFC's sampling draws from torch's own generator, per rank
    optimiser = torch.optim.SGD([*backbone.parameters(), *loss.parameters()], lr=lr, momentum=0.9)
    rows = slice(rank * batch // world_size, (rank + 1) * batch // world_size)
    losses, seen = [], torch.zeros(num_classes, dtype=torch.bool)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        labels = torch.randint(0, num_classes, (n,), generator=gen)
        return identities[labels] + 0.5 * torch.randn(n, in_features, generator=gen), labels

    for _ in range(steps):
        inputs, labels = draw(batch)
        seen[labels] = True
        optimiser.zero_grad()
        value = loss(backbone(inputs[rows]), labels[rows])
        value.backward()
        sum_gradients(backbone)
        optimiser.step()
        losses.append(value.item())
    test_labels = seen.nonzero().squeeze(1)[:batch * 4]
    test_labels = test_labels[:len(test_labels) // world_size * world_size]
    inputs = identities[test_labels] + 0.5 * torch.randn(len(test_labels), in_features, generator=gen)
    part = slice(rank * len(test_labels) // world_size, (rank + 1) * len(test_labels) // world_size)
    with torch.no_grad():
        features = backbone(inputs[part])
        correct = all_reduce((loss.predict(features) == test_labels[part]).sum())
    return {"losses": losses, "shard": (start, end), "weight": loss.weight.detach().clone(),
            "backbone": backbone.weight.detach().clone(), "accuracy": correct.item() / len(test_labels),
            "classes seen": int(seen.sum()), "test features": features, "test labels": test_labels[part]}
