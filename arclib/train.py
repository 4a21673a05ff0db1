"""The one training loop of the project: every notebook and ``python -m arclib train`` call ``fit``.

Design choices, each for a reason:

- **The optimizer covers the model and the loss.** The loss owns the class centres W (its head), which are
  learned like any weight.
- **Margin maths in float32.** Under mixed precision (CUDA only by default) the model's forward runs in
  autocast, but the loss gets ``embeddings.float()`` outside autocast: cos(θ + m) near θ = 0 needs more than
  fp16's 11 bits.
- **Reproducible resumption.** At the start of epoch e every RNG (torch, numpy, random, and the training
  loader's shuffling generator) is reseeded from (seed, e). The batches and dropout masks of epoch e then depend
  only on (seed, e), so a run resumed from the checkpoint of epoch k repeats the uninterrupted run's
  epoch k+1 bit for bit on CPU.
- **Checkpoints load with ``torch.load(weights_only=True)``**: they hold only tensors, dicts, lists, strings
  and numbers, and are written atomically (temp file in the same folder, then ``os.replace``), so a crash
  mid-write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from arclib import losses as _losses
from arclib import models as _models
from arclib._checks import check_choice, check_int, check_range

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("onecycle", "cosine", "none")
DEFAULT_LR = {"sgd": 0.1, "adam": 3e-3}
CHECKPOINT_FORMAT = 1


@dataclass
class History:
    """Per-epoch curves of a run: mean training loss and accuracy (on the batches as trained, dropout on),
    test accuracy (None without a test loader), the learning rate at the epoch's first step, and seconds."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(**{k: list(d.get(k, [])) for k in cls.__dataclass_fields__})

    @property
    def epochs(self) -> int:
        return len(self.train_loss)


def default_device() -> torch.device:
    """cuda, else mps, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and random."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``: a fixed function of (seed, epoch), so resuming needs no RNG bookkeeping."""
    return (seed * 1_000_003 + epoch * 7_919 + 1) % (1 << 62)


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and conv kernels only, not on biases and BatchNorm parameters."""
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (decay if p.dim() > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(modules: list[nn.Module], optimizer: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """"sgd": SGD with Nesterov momentum 0.9; "adam": AdamW (decoupled weight decay)."""
    groups = _param_groups(modules, weight_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, lr: float, total_steps: int):
    """Stepped once per batch. "onecycle": warm up for 25 % of the steps, then anneal; "cosine": cosine to 0.

    Runs of fewer than 8 steps (quick tests) keep ``lr`` constant: OneCycle's phases need a few steps each.
    """
    if schedule == "onecycle" and total_steps >= 8:
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps, pct_start=0.25)
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


@torch.no_grad()
def embed(model: nn.Module, loader: DataLoader, device: torch.device | str | None = None,
          amp: bool | None = None) -> tuple[Tensor, Tensor]:
    """(embeddings, labels) of everything in ``loader``, in eval mode: float32 and int64 tensors on the CPU."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    amp = device.type == "cuda" if amp is None else amp
    was_training = model.training
    model.eval()
    out, labels = [], []
    try:
        for x, y in loader:
            with _autocast(device, amp):
                e = model(x.to(device, non_blocking=True))
            out.append(e.float().cpu())
            labels.append(torch.as_tensor(y).long())
    finally:
        model.train(was_training)
    dim = getattr(model, "embedding_dim", 0)
    return (torch.cat(out) if out else torch.empty(0, dim)), (torch.cat(labels) if labels else torch.empty(0).long())


@torch.no_grad()
def evaluate(model: nn.Module, loss: nn.Module, loader: DataLoader, device: torch.device | str | None = None) -> float:
    """Closed-set test accuracy: the nearest class centre (argmax of ``loss.scores``)."""
    emb, labels = embed(model, loader, device)
    if len(labels) == 0:
        return float("nan")
    loss_device = next(loss.parameters()).device
    return (loss.predict(emb.to(loss_device)).cpu() == labels).float().mean().item()


# ---- checkpoints ------------------------------------------------------------------------------------------

def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def save_checkpoint(path: str | os.PathLike, model: nn.Module, loss: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None, epoch: int = 0,
                    history: History | dict | None = None, meta: dict | None = None) -> Path:
    """Write a checkpoint atomically: to a temp file in the same folder, fsync, then ``os.replace``.

    It holds the model's class and ``config()``, the loss's name and ``hparams()``, all states, the history as a
    dict and ``meta`` (the dataset name and the like): enough for ``load_checkpoint`` to rebuild both modules.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(history, History):
        history = history.to_dict()
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": int(epoch),
        "model": {"class": type(model).__name__,
                  "config": model.config() if hasattr(model, "config") else {},
                  "state": model.state_dict()},
        "loss": {"name": loss.name, "hparams": loss.hparams(), "state": loss.state_dict()},
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "history": history or History().to_dict(),
        "meta": dict(meta or {}),
        "rng": _rng_state(),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The raw checkpoint dict, loaded with ``weights_only=True`` (no arbitrary code runs while loading)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an arclib checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module, dict]:
    """(model, loss, meta) rebuilt from a checkpoint; ``meta`` also carries "epoch" and "history"."""
    state = read_checkpoint(path, map_location)
    model = _models.build(state["model"]["class"], **state["model"]["config"])
    model.load_state_dict(state["model"]["state"])
    loss = _losses.make(state["loss"]["name"], **state["loss"]["hparams"])
    loss.load_state_dict(state["loss"]["state"])
    meta = dict(state["meta"], epoch=state["epoch"], history=state["history"])
    return model, loss, meta


def _margin_warmup(loss: nn.Module, step: int, warmup_steps: float):
    """The margin fraction of global step ``step`` (0, 1, …): (step + 1) / warmup_steps, capped at 1."""
    if warmup_steps <= 0 or step + 1 >= warmup_steps or not hasattr(loss, "margin_fraction"):
        return contextlib.nullcontext()
    return loss.margin_fraction((step + 1) / warmup_steps)


# ---- the loop ---------------------------------------------------------------------------------------------

def fit(model: nn.Module, loss: nn.Module, train_loader: DataLoader, test_loader: DataLoader | None = None,
        epochs: int = 5, lr: float | None = None, optimizer: str = "sgd", weight_decay: float = 5e-4,
        schedule: str = "onecycle", device: torch.device | str | None = None, amp: bool | None = None,
        seed: int = 0, checkpoint: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
        max_steps: int | None = None, progress: bool = True, meta: dict | None = None,
        on_step: Callable[[int, nn.Module, Tensor, Tensor], None] | None = None,
        margin_warmup: float = 0.0) -> History:
    """Train ``model`` (features) and ``loss`` (class centres) together; return the per-epoch ``History``.

    ``lr`` is the peak learning rate (default 0.1 for SGD, 3e-3 for Adam). ``max_steps`` caps the batches per
    epoch (quick mode). ``checkpoint``: a path written after every epoch. ``resume``: a checkpoint of this same
    run to continue from (its model, loss, optimizer and scheduler states and history are restored and the
    remaining epochs of ``epochs`` are run). ``amp``: None means on for CUDA, off elsewhere. ``meta`` is stored
    in the checkpoint as is (plain types only). ``on_step(step, loss, embeddings, labels)`` is called after
    every optimizer step, without gradients, with the global step (0, 1, …), the loss module and the batch just
    trained on: a way to watch something during training (chapter 07 counts the classes sparsemax keeps).
    ``margin_warmup``: epochs (a float) over which every margin of the loss grows linearly, step by step, from
    none to its value (``MarginLoss.margin_fraction``); 0 trains with the full margin from the first step. Losses
    without a margin ignore it, so one recipe serves a whole comparison.
    """
    epochs = check_int("epochs", epochs, 1, 1 << 20)
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    schedule = check_choice("schedule", schedule, SCHEDULES)
    lr = check_range("lr", DEFAULT_LR[optimizer] if lr is None else lr, 0, math.inf, low_open=True)
    weight_decay = check_range("weight_decay", weight_decay, 0, math.inf)
    margin_warmup = check_range("margin_warmup", margin_warmup, 0, epochs)
    steps = len(train_loader) if max_steps is None else min(len(train_loader), check_int("max_steps", max_steps, 1, 1 << 40))
    if steps == 0:
        raise ValueError("train_loader must yield at least one batch")
    device = default_device() if device is None else torch.device(device)
    amp = device.type == "cuda" if amp is None else bool(amp)

    seed_everything(seed)
    model.to(device)
    loss.to(device)
    opt = make_optimizer([model, loss], optimizer, lr, weight_decay)
    sched = make_scheduler(opt, schedule, lr, epochs * steps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda"
                                  and not torch.cuda.is_bf16_supported())
    history, start = History(), 0
    if resume is not None:
        state = read_checkpoint(resume, map_location=device)
        model.load_state_dict(state["model"]["state"])
        loss.load_state_dict(state["loss"]["state"])
        if state["optimizer"] is not None:
            opt.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None:
            sched.load_state_dict(state["scheduler"])
        history, start = History.from_dict(state["history"]), int(state["epoch"])
        _set_rng_state(state["rng"])

    generator = getattr(train_loader, "generator", None)
    for epoch in range(start, epochs):
        seed_everything(epoch_seed(seed, epoch))
        if isinstance(generator, torch.Generator):
            generator.manual_seed(epoch_seed(seed, epoch))
        model.train()
        loss.train()
        t0, total, correct, seen = time.perf_counter(), 0.0, 0, 0
        lr_now = opt.param_groups[0]["lr"]
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for step, (x, y) in enumerate(train_loader):
            if step >= steps:
                break
            x, y = x.to(device, non_blocking=True), torch.as_tensor(y).to(device, non_blocking=True)
            with _autocast(device, amp):
                emb = model(x)
            emb = emb.float()
            with _margin_warmup(loss, epoch * steps + step, margin_warmup * steps):
                value = loss(emb, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(value).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            with torch.no_grad():
                n = y.shape[0]
                total += value.item() * n
                correct += int((loss.predict(emb.detach()) == y).sum())
                seen += n
                if on_step is not None:
                    on_step(epoch * steps + step, loss, emb.detach(), y)
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        test_acc = evaluate(model, loss, test_loader, device) if test_loader is not None else None
        history.train_loss.append(total / seen)
        history.train_acc.append(correct / seen)
        history.test_acc.append(test_acc)
        history.lr.append(lr_now)
        history.seconds.append(time.perf_counter() - t0)
        if progress:
            shown = "" if test_acc is None else f" test_acc {test_acc:.4f}"
            tqdm.write(f"epoch {epoch + 1}/{epochs}: loss {total / seen:.4f} train_acc {correct / seen:.4f}{shown} "
                       f"({history.seconds[-1]:.1f} s)")
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, loss, opt, sched, epoch + 1, history, meta)
    return history


def train_fresh(dataset: str, loss_name: str, embedding_dim: int, train_loader: DataLoader,
                test_loader: DataLoader | None = None, *, seed: int = 0, num_classes: int | None = None,
                model_kw: dict | None = None, loss_kw: dict | None = None, **fit_kw) -> dict:
    """A fresh seeded model for ``dataset`` and a fresh loss by name, trained by ``fit``: what a chapter compares.

    The model and the class centres are initialised right after ``torch.manual_seed(seed)``, so every loss of a
    comparison starts from the same network. Returns ``{"model", "loss", "history", "seconds"}`` (wall time of
    ``fit``). ``model_kw`` goes to ``models.for_dataset`` (e.g. ``width``), ``loss_kw`` to ``losses.make``
    (e.g. ``s``, ``m``), everything else to ``fit``. ``num_classes`` defaults to the labels of an arclib dataset.
    """
    if num_classes is None:
        from arclib.data import num_classes as dataset_classes

        num_classes = dataset_classes(train_loader.dataset)
    torch.manual_seed(seed)
    model = _models.for_dataset(dataset, embedding_dim, **(model_kw or {}))
    loss = _losses.make(loss_name, num_classes=num_classes, embedding_dim=embedding_dim, **(loss_kw or {}))
    start = time.perf_counter()
    history = fit(model, loss, train_loader, test_loader, seed=seed, **fit_kw)
    return {"model": model, "loss": loss, "history": history, "seconds": time.perf_counter() - start}


def sweep(dataset: str, loss_name: str, embedding_dim: int, train_loader: DataLoader, test_loader: DataLoader,
          param: str, values: Sequence[float], *, seeds: Sequence[int] = (0,), loss_kw: dict | None = None,
          **train_kw) -> dict[float, list[float]]:
    """Final test accuracy of ``train_fresh`` for each value of one loss hyperparameter and each seed.

    ``{value: [accuracy per seed]}``: the experiment behind "accuracy against s" and "against m" (seed 002,
    Fig. 3 and 4). Everything but ``param`` stays as in ``loss_kw`` and ``train_kw`` (passed to ``train_fresh``).
    """
    if not values:
        raise ValueError("values must name at least one setting of the swept parameter")
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if param in train_kw or param in (loss_kw or {}):
        raise ValueError(f"param {param!r} is swept; do not also fix it in loss_kw or the training arguments")
    out: dict[float, list[float]] = {}
    for value in values:
        out[value] = [train_fresh(dataset, loss_name, embedding_dim, train_loader, test_loader, seed=seed,
                                  loss_kw={**(loss_kw or {}), param: value}, **train_kw)["history"].test_acc[-1]
                      for seed in seeds]
    return out
