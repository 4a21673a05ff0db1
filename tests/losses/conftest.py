"""Shared reference maths for the loss tests, written from the seed equations with numpy in float64.

Nothing here calls arclib: each test file builds its loss's logits z from the paper's formula with the
helpers below, and compares arclib's loss against ``ref.criterion(z, y)``. The helpers reach the tests
through the ``ref`` fixture (a namespace), so no test module has to import this conftest.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

SEEDS = (0, 1, 2, 3)


def normalise(a: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    return a / np.sqrt((a * a).sum(axis=1, keepdims=True))


def cross_entropy(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """−log( e^{z_y} / Σ_j e^{z_j} ) for each row: the −log-softmax of seeds 000 eq. L1–L3, per sample."""
    top = z.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return log_sum - z[np.arange(len(y)), y]


def sparsemax(z: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row onto the simplex (Martins & Astudillo 2016, Algorithm 1), row by row."""
    out = np.empty_like(z)
    for i, row in enumerate(z):
        srt = np.sort(row)[::-1]
        csum = np.cumsum(srt)
        ks = np.arange(1, len(row) + 1)
        rho = ks[1 + ks * srt > csum].max()
        tau = (csum[rho - 1] - 1) / rho
        out[i] = np.maximum(row - tau, 0)
    return out


def sparsemax_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Martins & Astudillo eq. 19: L(z, y) = −z_y + ½ Σ_{j∈S(z)} (z_j² − τ²) + ½, per sample."""
    out = np.empty(len(y))
    for i, row in enumerate(z):
        p = sparsemax(row[None])[0]
        support = p > 0
        tau = (row[support] - p[support])[0]
        out[i] = -row[y[i]] + 0.5 * ((row[support] ** 2 - tau**2).sum()) + 0.5
    return out


def criterion(z: np.ndarray, y: np.ndarray, name: str = "softmax") -> np.ndarray:
    return sparsemax_loss(z, y) if name == "sparsemax" else cross_entropy(z, y)


def angles(cos: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(cos, -1.0, 1.0))


def target_mask(y: np.ndarray, num_classes: int) -> np.ndarray:
    mask = np.zeros((len(y), num_classes), dtype=bool)
    mask[np.arange(len(y)), y] = True
    return mask


def random_shape(rng: np.random.Generator) -> tuple[int, int, int]:
    """Random batch size N, class count C and embedding size d."""
    return int(rng.integers(1, 24)), int(rng.integers(2, 40)), int(rng.integers(2, 17))


def check_formula(factory, logits_fn, crit: str = "softmax", seeds=SEEDS, cos_low: float = -1.0,
                  cos_high: float = 1.0, features: bool = True) -> None:
    """arclib's loss == criterion(logits_fn(cos θ, y)) for random inputs, through both of its input paths.

    ``factory(**kw)`` builds the loss (``kw`` empty: cosines in; ``num_classes``/``embedding_dim``: features in).
    ``logits_fn(cos, y)`` is the paper's logit matrix z (N, C) in numpy float64. ``cos_low``/``cos_high``
    bound the cosines of the first path; ``features=False`` skips the second.
    """
    for seed in seeds:
        rng = np.random.default_rng(seed)
        n, c, d = random_shape(rng)
        y = rng.integers(0, c, n)
        labels = torch.from_numpy(y)

        # 1. cosines passed directly, spread over the requested part of [−1, 1]
        cos = rng.uniform(cos_low, cos_high, (n, c))
        loss = factory()
        want = criterion(logits_fn(cos, y), y, crit)
        got = loss(torch.from_numpy(cos), labels, reduction="none")
        assert got.dtype == torch.float64 and got.shape == (n,)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(loss(torch.from_numpy(cos), labels).item(), want.mean(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(loss(torch.from_numpy(cos), labels, reduction="sum").item(), want.sum(),
                                   rtol=1e-9, atol=1e-9)

        # 2. features through the loss's own head: normalise x and W here, take the dot product
        if not features:
            continue
        loss = factory(num_classes=c, embedding_dim=d).double()
        x = rng.normal(size=(n, d))
        w = loss.head.weight.detach().numpy()
        assert w.shape == (c, d)
        cos = normalise(x) @ normalise(w).T
        want = criterion(logits_fn(cos, y), y, crit)
        got = loss(torch.from_numpy(x), labels, reduction="none")
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-7, atol=1e-7)


def check_target_logit(loss, psi_fn, dpsi_fn, s: float, theta_max: float = math.pi) -> None:
    """``loss.target_logit`` on a θ grid: values s·ψ(θ) and autograd slope s·ψ'(θ) from the formula."""
    theta = torch.linspace(0, theta_max, 181, dtype=torch.float64, requires_grad=True)
    out = loss.target_logit(theta)
    assert out.shape == theta.shape
    (grad,) = torch.autograd.grad(out.sum(), theta)
    th = theta.detach().numpy()
    np.testing.assert_allclose(out.detach().numpy(), s * psi_fn(th), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad.numpy(), s * dpsi_fn(th), rtol=1e-8, atol=1e-8)


def check_oracle(ours, oracle, x, y, oracle_centres_grad, tol: float = 1e-5) -> None:
    """``ours(x, y)`` and an independent ``oracle(x, y)`` agree, and so do their gradients with respect to the
    features and the class centres. ``oracle_centres_grad()`` reads the oracle's centre gradient as (C, d)."""
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = ours(x1, y), oracle(x2, y)
    torch.testing.assert_close(a, b.to(a.dtype), rtol=tol, atol=tol)
    a.backward()
    ours_grad = ours.head.weight.grad.clone()
    ours.head.weight.grad = None  # the oracle may share our head
    b.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(ours_grad, oracle_centres_grad().to(ours_grad.dtype), rtol=tol, atol=tol)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tests use tiny tensors: one intra-op thread avoids OpenMP wake-ups that dominate on a busy machine
    (a 10×30 log_softmax took 16 ms with 2 threads under load, 3 µs with 1). Restored after each module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seeded():
    """Heads draw their initial weights from torch's global generator: seed it so every run sees the same W."""
    torch.manual_seed(12345)


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    return SimpleNamespace(
        SEEDS=SEEDS, normalise=normalise, cross_entropy=cross_entropy, sparsemax=sparsemax,
        sparsemax_loss=sparsemax_loss, criterion=criterion, angles=angles, target_mask=target_mask,
        random_shape=random_shape, check_formula=check_formula, check_target_logit=check_target_logit,
        check_oracle=check_oracle,
    )
