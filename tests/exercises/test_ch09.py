"""Chapter 09's checkers accept the reference answers and name the typical slips, never the answer."""

import torch
from answer_leaks import never_shows

from arclib.exercises import ch09, check


def test_09_1_one_buffer():
    expected = 256 * 1_000_000 * 4 / 2**20
    assert check("09.1", expected).passed is True
    no_bytes = check("09.1", 256 * 1_000_000 / 2**20)
    assert no_bytes.passed is False and "4 bytes" in no_bytes.hint
    decimal = check("09.1", 256 * 1_000_000 * 4 / 1e6)
    assert decimal.passed is False and "2**20" in decimal.hint
    for wrong in (no_bytes, decimal, check("09.1", 10.0)):
        never_shows(wrong, expected)


def online_logsumexp(z, chunk_size):
    running_max = torch.full(z.shape[:1], -torch.inf, dtype=z.dtype)
    running_sum = torch.zeros(z.shape[:1], dtype=z.dtype)
    for start in range(0, z.shape[1], chunk_size):
        chunk = z[:, start:start + chunk_size]
        new_max = torch.maximum(running_max, chunk.max(dim=1).values)
        running_sum = running_sum * torch.exp(running_max - new_max) + torch.exp(chunk - new_max[:, None]).sum(1)
        running_max = new_max
    return running_max + torch.log(running_sum)


def test_09_2_online_logsumexp():
    assert check("09.2", online_logsumexp).passed is True
    no_rescale = check("09.2", ch09._no_rescale)
    assert no_rescale.passed is False and "old maximum" in no_rescale.hint
    unshifted = check("09.2", ch09._unshifted)
    assert unshifted.passed is False and "overflows" in unshifted.hint
    assert check("09.2", lambda z, chunk_size: z.max(dim=1).values).passed is False
    assert check("09.2", 3.0).passed is False


def test_09_3_combine():
    assert check("09.3", lambda partial: torch.logsumexp(partial, dim=0)).passed is True
    added = check("09.3", lambda partial: partial.sum(dim=0))
    assert added.passed is False and "do not add" in added.hint
    largest = check("09.3", lambda partial: partial.max(dim=0).values)
    assert largest.passed is False and "drops" in largest.hint
    naive = check("09.3", lambda partial: torch.log(torch.exp(partial).sum(dim=0)))
    assert naive.passed is False and "overflows" in naive.hint
    assert check("09.3", lambda partial: torch.logsumexp(partial, dim=1)).passed is False  # the wrong axis


def test_09_4_shard_memory():
    expected = 2 * 125_000 * 512 * 4 / 2**20
    assert check("09.4", expected).passed is True
    no_gradient = check("09.4", expected / 2)
    assert no_gradient.passed is False and "gradient" in no_gradient.hint
    whole = check("09.4", expected * 8)
    assert whole.passed is False and "1/8" in whole.hint
    for wrong in (no_gradient, whole, check("09.4", 1.0)):
        never_shows(wrong, expected)
