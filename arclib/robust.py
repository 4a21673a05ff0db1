"""Training data that lies: labels flipped at random and images of mixed quality (chapter 11).

- ``flip_labels``: a share of the training labels replaced by another class, uniformly (symmetric noise).
- ``degrade`` / ``mixed_quality``: images brought down to a lower resolution and back up (levels 1-3:
  14×14, 10×10, 7×7 for a 28×28 digit), a share of a training set at random levels.
- ``train_run``: one run of the chapter's recipe (``MnistNet``, a random MNIST subset fixed per seed, one-cycle
  SGD) on clean, noisy or mixed-quality data; ``subcentre_report`` and ``quality_report`` measure what the
  sub-centres and the feature norms did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from arclib._checks import check_int, check_range, check_tensor

#: The study's results and shipped models (``benchmarks/family_study.py --ship`` writes it).
STUDY = Path(__file__).resolve().parent / "checkpoints" / "FAMILY.json"

#: Resolution of each degradation level, for 28×28 images (level 0: untouched).
LEVEL_SIZES = {1: 14, 2: 10, 3: 7}
LEVELS = (0, *LEVEL_SIZES)


def flip_labels(targets: Tensor, fraction: float, num_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """(noisy targets, flipped mask): exactly round(fraction·N) labels, chosen at random, each replaced by one
    of the *other* classes uniformly. Deterministic given ``seed``."""
    targets = check_tensor("targets", targets, "(N,)")
    fraction = check_range("fraction", fraction, 0.0, 1.0)
    num_classes = check_int("num_classes", num_classes, 2, 1 << 30)
    if targets.dim() != 1 or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be an integer tensor of shape (N,), got {tuple(targets.shape)} {targets.dtype}")
    if len(targets) and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets must be in [0, {num_classes}) (num_classes), got values in "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    gen = torch.Generator().manual_seed(seed)
    n = len(targets)
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[torch.randperm(n, generator=gen)[: round(fraction * n)]] = True
    shift = torch.randint(1, num_classes, (n,), generator=gen)  # never 0: the new class is another one
    noisy = torch.where(flipped, (targets + shift) % num_classes, targets)
    return noisy, flipped


def degrade(images: Tensor, level: int) -> Tensor:
    """``images`` (N, C, H, W) down to ``LEVEL_SIZES[level]`` pixels a side (area average) and back up
    (bilinear): the detail finer than the lower resolution is gone. Level 0 returns the images unchanged."""
    images = check_tensor("images", images, "(N, C, H, W)")
    level = check_int("level", level, 0, max(LEVEL_SIZES))
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if level == 0 or len(images) == 0:
        return images.clone()
    height, width = images.shape[-2:]
    side = LEVEL_SIZES[level]  # per dimension: a non-square image loses detail along both sides alike
    small = F.interpolate(images, size=(max(1, side * height // 28), max(1, side * width // 28)), mode="area")
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)


def mixed_quality(images: Tensor, share: float, seed: int) -> tuple[Tensor, Tensor]:
    """(images, levels): a random ``share`` of ``images`` degraded, each at a level drawn uniformly from 1-3;
    the rest untouched (level 0)."""
    images = check_tensor("images", images, "(N, C, H, W)")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    share = check_range("share", share, 0.0, 1.0)
    gen = torch.Generator().manual_seed(seed)
    n = len(images)
    levels = torch.zeros(n, dtype=torch.long)
    chosen = torch.randperm(n, generator=gen)[: round(share * n)]
    levels[chosen] = torch.randint(1, len(LEVELS), (len(chosen),), generator=gen)
    out = images.clone()
    for level in LEVEL_SIZES:
        rows = (levels == level).nonzero().squeeze(1)
        if len(rows):
            out[rows] = degrade(images[rows], level)
    return out, levels


def training_subset(num_images: int, seed: int, available: int = 60000) -> Tensor:
    """The indices of a run's training images: ``num_images`` drawn without replacement, fixed by ``seed``."""
    num_images = check_int("num_images", num_images, 1, available)
    return torch.randperm(available, generator=torch.Generator().manual_seed(10_000 + seed))[:num_images].sort().values


def training_data(train, seed: int, noise: float = 0.0, degraded_share: float = 0.0, num_images: int = 20000
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(indices, images, labels, flipped, levels) of a run's training set, rebuilt exactly from its seed: the
    subset of ``train``, its images (a share degraded), its labels (a share flipped) and the masks."""
    indices = training_subset(num_images, seed, len(train))
    labels, flipped = flip_labels(train.targets[indices], noise, len(train.classes), seed)
    images, levels = mixed_quality(train.images[indices], degraded_share, seed)
    return indices, images, labels, flipped, levels


def train_run(train, loss_name: str, seed: int, loss_kw: dict | None = None, noise: float = 0.0,
              degraded_share: float = 0.0, num_images: int = 20000, keep: Tensor | None = None,
              epochs: int = 6, embedding_dim: int = 64, batch_size: int = 128, lr: float = 0.1,
              weight_decay: float = 5e-4, margin_warmup: float = 1.0, record_every: int = 0,
              max_steps: int | None = None, checkpoint=None, resume=None) -> dict:
    """Train ``MnistNet`` + ``loss_name`` on ``num_images`` images of ``train`` (an MNIST ``TensorImages``).

    A comparison with the same ``seed`` shares the images, the flipped labels (``noise``), the degraded images
    (``degraded_share``), the network initialisation (``torch.manual_seed(seed)`` right before the model), the
    class centres' generator state and the batches. ``keep``: a bool mask over the subset (the samples a cleaning
    step kept); the rest are left out. ``record_every``: every that many steps, record the loss's ``s`` (AdaCos
    changes it). Returns ``{"model", "loss", "history", "indices", "labels", "flipped", "levels", "scales"}``
    (``labels``: the labels trained on, noisy where flipped).
    """
    from torch.utils.data import DataLoader

    from arclib import losses, models
    from arclib.data import TensorImages
    from arclib.train import fit

    indices, images, labels, flipped, levels = training_data(train, seed, noise, degraded_share, num_images)
    if keep is not None:
        keep = check_tensor("keep", keep, f"({len(indices)},)")
        if keep.dtype != torch.bool or keep.shape != (len(indices),):
            raise ValueError(f"keep must be a bool tensor of shape ({len(indices)},) (one per training image), "
                             f"got {tuple(keep.shape)} {keep.dtype}")
    rows = torch.arange(len(indices)) if keep is None else keep.nonzero().squeeze(1)
    subset = TensorImages(images[rows], labels[rows], train.classes)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    model = models.MnistNet(embedding_dim)
    loss = losses.make(loss_name, num_classes=len(train.classes), embedding_dim=embedding_dim, **(loss_kw or {}))
    scales: list[tuple[int, float]] = []

    def record(step, loss_module, *_):
        if record_every and step % record_every == 0:
            scales.append((step, float(loss_module.s)))

    history = fit(model, loss, loader, None, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed,
                  progress=False, margin_warmup=margin_warmup, on_step=record, max_steps=max_steps,
                  checkpoint=checkpoint, resume=resume,
                  settings={"data": "mnist", "num_images": num_images, "noise": noise,
                            "degraded_share": degraded_share, "kept": int(len(rows))})
    return {"model": model, "loss": loss, "history": history, "indices": indices, "labels": labels,
            "flipped": flipped, "levels": levels, "scales": scales}


@torch.no_grad()
def subcentre_report(loss, embeddings: Tensor, labels: Tensor, flipped: Tensor,
                     threshold_degrees: float = 75.0) -> dict[str, float]:
    """What the sub-centres did with the training samples (embedded in eval mode, ``labels`` as trained on):

    - ``clean_on_dominant`` / ``noisy_on_dominant``: the share of clean / flipped samples whose nearest sub-centre
      of their (given) class is the class's dominant one;
    - ``outliers_noisy``: of the samples beyond ``threshold_degrees`` from their dominant sub-centre, the share
      that were flipped (precision of the cleaning step); ``noisy_found``: the share of flipped samples it finds
      (recall); ``outliers``: the share of all samples it would drop.
    """
    flipped = check_tensor("flipped", flipped, "(N,)")
    if flipped.dtype != torch.bool or flipped.shape != (len(labels),):
        raise ValueError(f"flipped must be a bool tensor of shape ({len(labels)},) (one per sample), "
                         f"got {tuple(flipped.shape)} {flipped.dtype}")
    sub = loss.head.sub_cosines(embeddings)
    rows = torch.arange(len(labels))
    nearest = sub[rows, labels].argmax(dim=1)
    dominant = loss.dominant_sub_centres(embeddings, labels)
    on_dominant = nearest == dominant[labels]
    out = loss.outliers(embeddings, labels, threshold_degrees)
    noisy, clean = flipped, ~flipped
    return {
        "clean_on_dominant": float(on_dominant[clean].float().mean()) if clean.any() else math.nan,
        "noisy_on_dominant": float(on_dominant[noisy].float().mean()) if noisy.any() else math.nan,
        "outliers": float(out.float().mean()),
        "outliers_noisy": float(flipped[out].float().mean()) if out.any() else math.nan,
        "noisy_found": float(out[noisy].float().mean()) if noisy.any() else math.nan,
    }


@torch.no_grad()
def quality_report(model, loss, test, levels: Sequence[int] = LEVELS, batch_size: int = 1000) -> dict[str, list]:
    """Test accuracy and the mean feature norm ‖x‖ (with its std) of the whole ``test`` split at each degradation
    level: ``{"levels", "accuracy", "norm_mean", "norm_std"}``."""
    from torch.utils.data import DataLoader

    from arclib.data import TensorImages
    from arclib.train import embed

    out = {"levels": list(levels), "accuracy": [], "norm_mean": [], "norm_std": []}
    for level in levels:
        images = degrade(test.images, level)
        emb, labels = embed(model, DataLoader(TensorImages(images, test.targets, test.classes), batch_size=batch_size))
        norms = emb.norm(dim=1)
        out["accuracy"].append(float((loss.predict(emb) == labels).float().mean()))
        out["norm_mean"].append(float(norms.mean()))
        out["norm_std"].append(float(norms.std()))
    return out


def study() -> dict:
    """The recorded study (``FAMILY.json``): every run's result, the recipe, and the shipped models' entries."""
    import json

    if not STUDY.is_file():
        raise FileNotFoundError(f"{STUDY} is missing: run `python benchmarks/family_study.py --ship` (or reinstall)")
    return json.loads(STUDY.read_text())


def shipped(name: str) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """(model, loss, entry) of a model of the study, both in eval mode, its sha256 checked."""
    from arclib import pretrained

    return pretrained.load_from_study(study(), STUDY.parent, name, "family study")
