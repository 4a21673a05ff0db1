"""The heads: CosineHead (cos θ_j = ⟨x/‖x‖, W_j/‖W_j‖⟩) and LinearHead (W_jᵀx + b_j, softmax L1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclib import CosineHead, LinearHead


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP wake-up latency on a busy machine. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cosine_head_is_normalised_dot_product():
    torch.manual_seed(0)
    head = CosineHead(embedding_dim=5, num_classes=7).double()
    assert head.weight.shape == (7, 5)  # one class centre per row, like nn.Linear
    x = torch.randn(11, 5, dtype=torch.float64)
    w = head.weight.detach().numpy()
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = head(x)
    assert cos.shape == (11, 7)
    np.testing.assert_allclose(cos.detach().numpy(), xn @ wn.T, rtol=1e-12, atol=1e-12)
    assert (cos.abs() <= 1 + 1e-12).all()


def test_cosine_head_ignores_lengths():
    torch.manual_seed(1)
    head = CosineHead(3, 4).double()
    x = torch.randn(6, 3, dtype=torch.float64)
    before = head(x)
    with torch.no_grad():
        head.weight.mul_(torch.tensor([[0.1], [3.0], [7.0], [1e3]], dtype=torch.float64))
    torch.testing.assert_close(head(x * 42.0), before)


def test_cosine_head_angles_in_2d():
    """Seed 001's worked example: [5, 2] and [10.5, 6] point at angles that differ by ~8°, whatever their lengths."""
    head = CosineHead(2, 2).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[5.0, 2.0], [0.0, 1.0]]))
    cos = head(torch.tensor([[10.5, 6.0], [5.0, 2.0], [-5.0, -2.0]], dtype=torch.float64))
    want = math.cos(math.atan2(6, 10.5) - math.atan2(2, 5))
    assert cos[0, 0].item() == pytest.approx(want, rel=1e-12)
    assert cos[1, 0].item() == pytest.approx(1.0, abs=1e-15)
    assert cos[2, 0].item() == pytest.approx(-1.0, abs=1e-15)
    assert cos[0, 1].item() == pytest.approx(6.0 / math.hypot(10.5, 6.0), rel=1e-12)


def test_cosine_head_gradients_flow_and_are_tangent():
    torch.manual_seed(2)
    head = CosineHead(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    head(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()
    # cos θ does not change with ‖x‖, so its gradient is orthogonal to x (and to each W_j for the weights)
    torch.testing.assert_close((x.grad * x.detach()).sum(1), torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close((head.weight.grad * head.weight.detach()).sum(1), torch.zeros(3, dtype=torch.float64))
    assert torch.autograd.gradcheck(head, (torch.randn(3, 4, dtype=torch.float64, requires_grad=True),))


def test_cosine_head_under_bf16_autocast():
    torch.manual_seed(4)
    head = CosineHead(8, 6)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos = head(x)
    assert cos.dtype == torch.bfloat16
    torch.testing.assert_close(cos.float(), head(x), rtol=0, atol=2e-2)


def test_linear_head_is_biased_linear_layer():
    torch.manual_seed(3)
    head = LinearHead(embedding_dim=5, num_classes=4).double()
    assert isinstance(head, torch.nn.Linear) and head.bias is not None
    assert head.weight.shape == (4, 5) and head.bias.shape == (4,)
    assert (head.embedding_dim, head.num_classes) == (5, 4)
    x = torch.randn(7, 5, dtype=torch.float64)
    torch.testing.assert_close(head(x), x @ head.weight.T + head.bias)


@pytest.mark.parametrize("cls", [CosineHead, LinearHead])
@pytest.mark.parametrize(("kw", "match"), [({"embedding_dim": 0, "num_classes": 3}, "embedding_dim"),
                                           ({"embedding_dim": 2.5, "num_classes": 3}, "embedding_dim"),
                                           ({"embedding_dim": 4, "num_classes": 1}, "num_classes"),
                                           ({"embedding_dim": 4, "num_classes": -3}, "num_classes"),
                                           ({"embedding_dim": 4, "num_classes": 3.5}, "num_classes")])
def test_bad_sizes_name_the_argument(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


def test_repr():
    assert "embedding_dim=3, num_classes=5" in repr(CosineHead(3, 5))


@pytest.mark.parametrize("dim, at_least", [(2, 35.0), (3, 60.0)])
def test_centres_start_spread_on_a_circle_or_sphere(dim, at_least):
    torch.manual_seed(0)
    random = torch.nn.functional.normalize(torch.randn(10, dim), dim=1)
    torch.manual_seed(0)
    head = CosineHead(dim, 10)
    w = torch.nn.functional.normalize(head.weight.detach(), dim=1)
    closest = lambda v: math.degrees(math.acos(float((v @ v.T).fill_diagonal_(-1).max())))  # noqa: E731
    assert closest(random) < 10 < at_least <= closest(w)  # seed 0 starts two centres within a few degrees


def test_centres_stay_random_in_high_dimensions():
    torch.manual_seed(0)
    expected = torch.randn(10, 128)
    torch.manual_seed(0)
    assert torch.equal(CosineHead(128, 10).weight.detach(), expected)
