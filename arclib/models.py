"""The embedding networks: image in, embedding out. The class centres live in the loss, not here.

Both end in ArcFace's output block "BN-Dropout-FC-BN" (Deng et al. 2019, §3.2, setting E): batch norm on the
last feature map, dropout, a fully connected layer to the embedding, and a final batch norm. The last BN keeps
the embedding centred and of steady scale, which is what lets a cosine head with a large s train from step 1.

- ``MnistNet``: three 3×3 conv blocks, each followed by 2×2 max-pooling (28 → 14 → 7 → 3), about 0.25 M
  parameters at width 32. Pooling after *every* conv keeps the FLOPs low enough for a few-minute MNIST run on
  a 2-core CPU. The net keeps its conv weights and activations channels-last: on that CPU a
  training step is ~5–10× faster than in the default NCHW layout (oneDNN's fast path needs both).
- ``CifarResNet``: ResNet-18 for 32×32 inputs (3×3 stem, no max-pool), base width 64 by default, or
  narrower (``width=16``) for a CPU run.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from arclib._checks import check_int, check_range


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class Neck(nn.Sequential):
    """BN-Dropout-FC-BN: feature map (N, C, H, W) → embedding (N, embedding_dim).

    ``centred``: the last BN learns no shift (and no scale), so every batch of embeddings is centred on the origin.
    With a learned shift the whole embedding can drift into one cone of the sphere, taking the class centres with it.
    """

    def __init__(self, channels: int, spatial: int, embedding_dim: int, dropout: float, centred: bool = False) -> None:
        super().__init__(nn.BatchNorm2d(channels), nn.Dropout(dropout), nn.Flatten(),
                         nn.Linear(channels * spatial * spatial, embedding_dim),
                         nn.BatchNorm1d(embedding_dim, affine=not centred))


class EmbeddingNet(nn.Module):
    """What every arclib model shares: checked sizes, a channels-last forward, and ``config()`` to rebuild it.

    A subclass builds ``self.features`` (image → feature map) and ``self.neck`` (feature map → embedding).
    """

    def __init__(self, embedding_dim: int, width: int, dropout: float, in_channels: int,
                 centred: bool = False) -> None:
        super().__init__()
        self.centred = bool(centred)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, 1, 1 << 16)
        self.width = check_int("width", width, 1, 1024)
        self.dropout = check_range("dropout", dropout, 0.0, 1.0, high_open=True)
        self.in_channels = check_int("in_channels", in_channels, 1, 16)

    def forward(self, x: Tensor) -> Tensor:
        # channels-last is a layout, not a change of maths: the same numbers, much faster on CPU.
        return self.neck(self.features(x.contiguous(memory_format=torch.channels_last)))

    def config(self) -> dict:
        return {"embedding_dim": self.embedding_dim, "width": self.width, "dropout": self.dropout,
                "in_channels": self.in_channels, "centred": self.centred}


class MnistNet(EmbeddingNet):
    """28×28 grey image → embedding. Width ``width`` (32) doubles per block: 32, 64, 128 channels."""

    def __init__(self, embedding_dim: int = 128, width: int = 32, dropout: float = 0.1, in_channels: int = 1,
                 centred: bool = False) -> None:
        super().__init__(embedding_dim, width, dropout, in_channels, centred)
        w = self.width
        self.features = nn.Sequential(
            *_conv_bn(in_channels, w), nn.MaxPool2d(2),  # 28 → 14
            *_conv_bn(w, 2 * w), nn.MaxPool2d(2),  # 14 → 7
            *_conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),  # 7 → 3
        )
        self.neck = Neck(4 * w, 3, embedding_dim, dropout, self.centred)
        self.to(memory_format=torch.channels_last)  # the conv weights too, or oneDNN falls back to a slow path


class BasicBlock(nn.Module):
    """ResNet's two 3×3 convs with an identity (or 1×1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out, stride),
                                  nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class CifarResNet(EmbeddingNet):
    """ResNet-18 on 32×32 (3×3 stem, no max-pool; stages of width w, 2w, 4w, 8w at 32, 16, 8, 4 px) → embedding."""

    def __init__(self, embedding_dim: int = 512, width: int = 64, dropout: float = 0.0, in_channels: int = 3,
                 centred: bool = False) -> None:
        super().__init__(embedding_dim, width, dropout, in_channels, centred)
        w = self.width
        layers: list[nn.Module] = list(_conv_bn(in_channels, w))
        c = w
        for i, c_out in enumerate((w, 2 * w, 4 * w, 8 * w)):
            layers += [BasicBlock(c, c_out, 1 if i == 0 else 2), BasicBlock(c_out, c_out, 1)]
            c = c_out
        self.features = nn.Sequential(*layers)
        self.neck = Neck(8 * w, 4, embedding_dim, dropout, self.centred)
        self.to(memory_format=torch.channels_last)


MODELS: dict[str, type[EmbeddingNet]] = {"MnistNet": MnistNet, "CifarResNet": CifarResNet}


def build(class_name: str, **config) -> EmbeddingNet:
    """Rebuild a model from its class name and ``config()`` (what a checkpoint stores)."""
    if class_name not in MODELS:
        raise ValueError(f"model class must be one of {', '.join(MODELS)}; got {class_name!r}")
    return MODELS[class_name](**config)


def for_dataset(name: str, embedding_dim: int, **kw) -> EmbeddingNet:
    """The model arclib trains on ``name``: MnistNet for (Fashion-)MNIST, CifarResNet for CIFAR-10."""
    if name in ("mnist", "fashion_mnist"):
        return MnistNet(embedding_dim, **kw)
    if name == "cifar10":
        return CifarResNet(embedding_dim, **kw)
    raise ValueError(f"name must be one of 'mnist', 'fashion_mnist', 'cifar10'; got {name!r}")

