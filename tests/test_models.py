"""arclib.models: shapes, embedding sizes, rebuilding from config."""

from __future__ import annotations

import pytest
import torch

from arclib import models


@pytest.mark.parametrize("dim", [2, 3, 128])
def test_mnistnet_embedding_dims(dim):
    net = models.MnistNet(dim)
    out = net(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, dim) and out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_mnistnet_is_small():
    n = sum(p.numel() for p in models.MnistNet(128).parameters())
    assert 100_000 < n < 1_000_000


@pytest.mark.parametrize("dim,width", [(512, 8), (2, 4)])
def test_cifar_resnet_shapes(dim, width):
    net = models.CifarResNet(dim, width=width)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, dim)


def test_cifar_resnet18_default_size():
    net = models.CifarResNet(512)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # stem + 8 basic blocks × 2: ResNet-18's 3×3 convolutions
    assert 11e6 < sum(p.numel() for p in net.features.parameters()) < 11.5e6


def test_for_dataset_and_build():
    assert isinstance(models.for_dataset("mnist", 2), models.MnistNet)
    assert isinstance(models.for_dataset("fashion_mnist", 3), models.MnistNet)
    net = models.for_dataset("cifar10", 64, width=8)
    assert isinstance(net, models.CifarResNet) and net.width == 8
    again = models.build("CifarResNet", **net.config())
    assert again.config() == net.config()
    with pytest.raises(ValueError, match="name must be one of"):
        models.for_dataset("imagenet", 2)
    with pytest.raises(ValueError, match="model class must be one of"):
        models.build("VGG")


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"embedding_dim must be in \[1, 65536\]"):
        models.MnistNet(0)
    with pytest.raises(ValueError, match="dropout must be in"):
        models.MnistNet(2, dropout=1.0)


def test_eval_mode_is_deterministic():
    net = models.MnistNet(8).eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(net(x), net(x))


def test_centred_embedding_has_zero_batch_mean_and_round_trips():
    torch.manual_seed(0)
    model = models.CifarResNet(16, width=4, centred=True).train()
    emb = model(torch.randn(32, 3, 32, 32))
    assert emb.mean(0).abs().max() < 1e-5  # the last BN may not shift the batch away from the origin
    assert not any("neck.4" in name for name, _ in model.named_parameters())
    rebuilt = models.build("CifarResNet", **model.config())
    assert rebuilt.config()["centred"] is True
    assert models.MnistNet(8).config()["centred"] is False
