"""arclib.scale: the chunked and the fused margin loss equal arclib's loss, value and gradients, and the chunked one
never holds an N×C buffer."""

from __future__ import annotations

import pytest
import torch

from arclib.losses import make
from arclib.scale import chunked_margin_loss, fused_margin_loss, peak_memory

ELIGIBLE = ["normface", "sphereface", "cosface", "arcface", "combined"]


def value_and_grads(fn, loss, x, labels):
    x = x.detach().clone().requires_grad_()
    loss.head.weight.grad = None
    value = fn(loss, x, labels)
    value.backward()
    return value.detach(), x.grad, loss.head.weight.grad


def assert_same(got, expected, rtol=1e-5):
    for g, e in zip(got, expected, strict=True):
        # 1e-5 relative to the tensor's own scale: entries near zero carry rounding of the large ones
        torch.testing.assert_close(g, e, rtol=rtol, atol=rtol * float(e.abs().max()))


def setup(name, num_classes=37, dim=8, batch=11, dtype=torch.float32, seed=0, **hparams):
    torch.manual_seed(seed)
    loss = make(name, num_classes=num_classes, embedding_dim=dim, **hparams).to(dtype)
    x = torch.randn(batch, dim, dtype=dtype)
    labels = torch.randint(0, num_classes, (batch,))
    labels[0] = num_classes - 1  # a target in the last, possibly partial chunk
    return loss, x, labels


def reference(loss, x, labels):
    return loss(x, labels)


@pytest.mark.parametrize("name", ELIGIBLE)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_and_fused_equal_the_unchunked_loss(name, dtype):
    loss, x, labels = setup(name, dtype=dtype)
    expected = value_and_grads(reference, loss, x, labels)
    for chunk in (1, 5, 8, 36, 37, 1000):  # 5 and 8 do not divide 37; 1000 > C
        assert_same(value_and_grads(lambda *a, c=chunk: chunked_margin_loss(*a, chunk_size=c), loss, x, labels),
                    expected)
    assert_same(value_and_grads(fused_margin_loss, loss, x, labels), expected)


@pytest.mark.parametrize("tail", ["continuous", "fallback", "straight_through", "easy", "none"])
def test_every_arcface_tail_and_far_samples(tail):
    # a large margin and samples close to their centre's antipode: the tails differ there. In float64: near θ = π,
    # dθ/dcos θ = −1/sin θ magnifies float32 rounding of cos θ (a sum of products here, a matmul there)
    loss, x, labels = setup("arcface", m=1.2, tail=tail, s=30.0, dtype=torch.float64)
    with torch.no_grad():
        x[:5] = -loss.head.weight[labels[:5]] + 0.05 * torch.randn(5, x.shape[1], dtype=x.dtype)
    expected = value_and_grads(reference, loss, x, labels)
    assert_same(value_and_grads(lambda *a: chunked_margin_loss(*a, chunk_size=6), loss, x, labels), expected)
    assert_same(value_and_grads(fused_margin_loss, loss, x, labels), expected)


def test_reductions_and_margin_warmup():
    loss, x, labels = setup("cosface")
    for reduction in ("sum", "none"):
        torch.testing.assert_close(chunked_margin_loss(loss, x, labels, chunk_size=4, reduction=reduction),
                                   loss(x, labels, reduction=reduction), rtol=1e-5, atol=1e-6)
    # the margin in force at forward time is the one differentiated, even if backward runs after the block
    with loss.margin_fraction(0.5):
        expected = value_and_grads(reference, loss, x, labels)
        x2 = x.clone().requires_grad_()
        loss.head.weight.grad = None
        value = chunked_margin_loss(loss, x2, labels, chunk_size=4)
    value.backward()
    assert_same((value.detach(), x2.grad, loss.head.weight.grad), expected)


@pytest.mark.parametrize("name,hparams", [("qamface", {}), ("sparsemax", {}), ("angular_sparsemax", {}),
                                          ("softmax", {}), ("arcface", {"criterion": "sparsemax"})])
def test_refuses_losses_it_cannot_compute_exactly(name, hparams):
    loss = make(name, num_classes=5, embedding_dim=3, **hparams)
    x, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    for fn in (chunked_margin_loss, fused_margin_loss):
        with pytest.raises(ValueError, match="loss must be a MarginLoss with embedding_dim"):
            fn(loss, x, labels)


@pytest.mark.parametrize("name", ["subcenter_arcface", "adaface", "adacos"])
def test_refuses_the_losses_that_are_not_scalable_naming_them(name):
    """Sub-center ArcFace (a max over K sub-centres per class), AdaFace (a margin set by the feature norms) and AdaCos
    (s set by the whole N×C batch) are not blockwise computable: refused, by name, by every path."""
    from arclib.distributed import ShardedMarginLoss

    x, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    match = f"^loss must be a MarginLoss.*got '{name}' with criterion 'softmax': .*scalable = False"
    for fn in (chunked_margin_loss, fused_margin_loss):
        with pytest.raises(ValueError, match=match):
            fn(make(name, num_classes=5, embedding_dim=3), x, labels)
    for loss in (make(name), make(name, num_classes=5, embedding_dim=3)):
        with pytest.raises(ValueError, match=match):
            ShardedMarginLoss(loss, 5, 3)


def test_bad_arguments():
    loss, x, labels = setup("arcface")
    with pytest.raises(ValueError, match="loss must be a MarginLoss"):
        chunked_margin_loss(make("arcface"), x, labels)  # no head: no W to chunk
    with pytest.raises(ValueError, match=r"chunk_size must be in \[1, "):
        chunked_margin_loss(loss, x, labels, chunk_size=0)
    with pytest.raises(ValueError, match="features must have shape"):
        fused_margin_loss(loss, x[:, :3], labels)
    with pytest.raises(ValueError, match="labels must be in"):
        chunked_margin_loss(loss, x, labels + 37)
    with pytest.raises(ValueError, match="reduction must be one of"):
        fused_margin_loss(loss, x, labels, reduction="avg")


PATHS = {
    "chunked": lambda loss, x, labels, **kw: chunked_margin_loss(loss, x, labels, chunk_size=5, **kw),
    "fused": fused_margin_loss,
}


@pytest.mark.parametrize("path", list(PATHS))
def test_backward_twice_with_retain_graph(path):
    loss, x, labels = setup("arcface")
    x.requires_grad_()
    value = PATHS[path](loss, x, labels)
    value.backward(retain_graph=True)
    once = x.grad.clone(), loss.head.weight.grad.clone()
    value.backward()  # the saved state is intact: the gradients add up again
    torch.testing.assert_close(x.grad, 2 * once[0])
    torch.testing.assert_close(loss.head.weight.grad, 2 * once[1])


@pytest.mark.parametrize("name", ["arcface", "cosface"])
@pytest.mark.parametrize("path", list(PATHS))
def test_gradcheck(path, name):
    # float64, small; seed 3: every cos θ inside (−0.8, 0.9), away from ArcFace's kink at θ* and the clamp at ±1
    loss, x, labels = setup(name, num_classes=7, dim=4, batch=5, dtype=torch.float64, seed=3)
    with torch.no_grad():
        cos = loss.head(x)
    assert float(cos.min()) > -0.8 and float(cos.max()) < 0.9
    x.requires_grad_()
    # gradcheck perturbs its inputs in place: W is passed as loss.head.weight itself, which the path reads
    assert torch.autograd.gradcheck(lambda x, w: PATHS[path](loss, x, labels, reduction="none"),
                                    (x, loss.head.weight))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("path", list(PATHS))
def test_non_finite_features_are_refused_by_name(path, value):
    loss, x, labels = setup("arcface")
    x[3, 1] = value
    with pytest.raises(ValueError, match=r"^features must be finite \(values in \(-inf, inf\), no NaN\)"):
        PATHS[path](loss, x, labels)


@pytest.mark.parametrize("path", list(PATHS))
def test_zero_centre_is_refused_naming_its_class(path):
    loss, x, labels = setup("arcface")
    with torch.no_grad():
        loss.head.weight[5] = 0  # its gradient would be about 1e12
    with pytest.raises(ValueError, match=r"^weight rows \(class centres\) must have norm >= 1e-12.*class 5 "):
        PATHS[path](loss, x, labels)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_every_path_promotes_features_alike(dtype):
    """float16 / bfloat16 / float64 features with a float32 W, outside autocast: the plain loss, chunked, fused and
    sharded all run in the wider of the two and float32, and give one value and one gradient."""
    from arclib.distributed import ShardedMarginLoss

    loss, x, labels = setup("arcface")
    x = x.to(dtype)
    sharded = ShardedMarginLoss(make("arcface"), 37, 8, weight=loss.head.weight, chunk_size=5)
    paths = {"plain": reference, **PATHS, "sharded": lambda _, x, labels: sharded(x, labels)}
    results = {}
    for name, fn in paths.items():
        xg = x.detach().clone().requires_grad_()
        value = fn(loss, xg, labels)
        value.backward()
        assert value.dtype == torch.promote_types(dtype, torch.float32), name
        assert xg.grad.dtype == dtype, name
        results[name] = value.detach(), xg.grad.double()
    for got in results.values():
        assert_same(got, results["plain"], rtol=1e-5 if dtype == torch.float64 else 1e-3)


def test_chunked_path_holds_no_n_by_c_buffer():
    torch.set_num_threads(1)
    batch, num_classes, dim = 64, 100_000, 16
    loss, x, labels = setup("arcface", num_classes=num_classes, dim=dim, batch=batch)
    x.requires_grad_()
    n_by_c = batch * num_classes * 4
    w_grad = num_classes * dim * 4  # the gradient of W is part of any training step

    def step(fn):
        x.grad = loss.head.weight.grad = None  # freed before the measurement, not inside it
        return peak_memory(lambda: fn().backward())

    unchunked = step(lambda: loss(x, labels))
    chunked = step(lambda: chunked_margin_loss(loss, x, labels, chunk_size=1024))
    fused = step(lambda: fused_margin_loss(loss, x, labels))
    assert unchunked > 2 * n_by_c  # the measurement sees N×C buffers where there are some
    assert chunked - w_grad < 0.1 * n_by_c
    assert n_by_c < fused - w_grad < 1.6 * n_by_c  # one N×C buffer (and a C×d temporary)


def test_peak_rss_sees_a_large_allocation():
    from arclib.scale import peak_rss

    before = peak_rss()
    block = torch.ones(before // 4 + 64 * 2**20 // 4)  # more than the peak so far, touched
    assert peak_rss() > before + 60 * 2**20
    del block
