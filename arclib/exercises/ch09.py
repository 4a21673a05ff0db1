"""Chapter 09 exercises: what a million classes cost, the online log-sum-exp, combining the ranks, a shard's memory.

Every reference value is computed here with torch and arclib (``torch.logsumexp``, ``shard_range``), never typed in.
"""

from __future__ import annotations

import torch
from torch import Tensor

from arclib.distributed import shard_range
from arclib.exercises import Wrong, exercise, expect_number, expect_same_function

N, C, D, P = 256, 1_000_000, 512, 8
MIB = 2**20
FLOAT32 = torch.empty(0, dtype=torch.float32).element_size()


def buffer_mib() -> float:
    return N * C * FLOAT32 / MIB


@exercise("09.1", "one N×C buffer at a million classes")
def one_buffer(answer) -> str:
    expected = buffer_mib()
    expect_number(answer, expected, what="the size in MiB", digits=3, mistakes={
        "a float32 takes 4 bytes, not 1": expected / FLOAT32,
        "float32, not float64": 2 * expected,
        "a MiB is 2**20 bytes, not 10**6": expected * MIB / 1e6,
        "the answer is asked in MiB, not GiB": expected / 1024,
    }, hint="count the numbers (N·C), multiply by the bytes per float32, divide by 2**20")
    return (f"about {expected / 1024:.2f} GiB for one buffer; the unchunked loss keeps several of them (logits, "
            "log-softmax, their gradients)")


def _lse_inputs() -> list[tuple]:
    gen = torch.Generator().manual_seed(9)
    z = 30 * torch.randn(4, 23, generator=gen, dtype=torch.float64)
    z[1] += 800.0  # exp(800) overflows float64: only a shifted sum survives
    z[2, 5] = 900.0  # one large entry in a later chunk: the running sum must be rescaled
    return [(z, 5), (z, 7), (z, 23), (z, 1)]


def _no_rescale(z: Tensor, chunk_size: int) -> Tensor:
    running_max = torch.full(z.shape[:1], -torch.inf, dtype=z.dtype)
    running_sum = torch.zeros(z.shape[:1], dtype=z.dtype)
    for start in range(0, z.shape[1], chunk_size):
        chunk = z[:, start:start + chunk_size]
        running_max = torch.maximum(running_max, chunk.max(dim=1).values)
        running_sum = running_sum + torch.exp(chunk - running_max[:, None]).sum(dim=1)
    return running_max + torch.log(running_sum)


def _unshifted(z: Tensor, chunk_size: int) -> Tensor:
    total = torch.zeros(z.shape[:1], dtype=z.dtype)
    for start in range(0, z.shape[1], chunk_size):
        total = total + torch.exp(z[:, start:start + chunk_size]).sum(dim=1)
    return torch.log(total)


@exercise("09.2", "the online log-sum-exp")
def online_logsumexp(answer) -> str:
    if not callable(answer):
        raise Wrong("your answer should be the function online_logsumexp(z, chunk_size)")
    expect_same_function(answer, lambda z, chunk_size: torch.logsumexp(z, dim=1), _lse_inputs(),
                         what="online_logsumexp", rtol=1e-9, atol=1e-9, grad=False, mistakes={
                             "when the maximum grows, the sum so far was taken against the old maximum: multiply "
                             "it by exp(old max − new max) first": _no_rescale,
                             "exp of a logit of 800 overflows: subtract a running maximum before exp": _unshifted,
                         }, hint="keep two numbers per row, the largest logit so far M and S = Σ exp(z − M)")
    return "one pass over the chunks, and exact: the same number torch.logsumexp gives over the whole row"


def _combine_inputs() -> list[tuple]:
    gen = torch.Generator().manual_seed(90)
    lse = 10 * torch.randn(4, 6, generator=gen, dtype=torch.float64)
    lse[:, 2] += 750.0  # the partial log-sum-exps of a sample that matches rank classes with huge logits
    return [(lse,), (lse[:2],)]


@exercise("09.3", "combining the ranks' partial log-sum-exps")
def combine(answer) -> str:
    if not callable(answer):
        raise Wrong("your answer should be the function combine(partial) of a (P, N) tensor")
    expect_same_function(answer, lambda partial: torch.logsumexp(partial, dim=0), _combine_inputs(),
                         what="combine", rtol=1e-9, atol=1e-9, grad=False, mistakes={
                             "log-sum-exps do not add: log a + log b is log(a·b), not log(a + b)":
                                 lambda partial: partial.sum(dim=0),
                             "the largest partial alone drops the other ranks' classes":
                                 lambda partial: partial.max(dim=0).values,
                             "exp of a partial log-sum-exp of 750 overflows: shift by the maximum over the ranks":
                                 lambda partial: torch.log(torch.exp(partial).sum(dim=0)),
                         }, hint="each rank's partial is log S_r; the total is log Σ_r S_r")
    return "this is what the all-reduce of the maxima and of the shifted sums computes across processes"


def shard_mib() -> float:
    rows = max(end - start for start, end in (shard_range(C, r, P) for r in range(P)))
    return 2 * rows * D * FLOAT32 / MIB  # the shard and its gradient


@exercise("09.4", "what each of 8 GPUs holds")
def shard_memory(answer) -> str:
    expected = shard_mib()
    expect_number(answer, expected, what="the size in MiB", digits=3, mistakes={
        "the gradient of the shard is as large as the shard itself": expected / 2,
        "each GPU holds 1/8 of W, not all of it": expected * P,
        "a float32 takes 4 bytes, not 8": 2 * expected,
    }, hint="rows per GPU = C/P, each of d float32 numbers; count the shard and its gradient")
    return "W alone on one device would need 8 times as much, before its gradient and any activations"
