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
- **Checkpoints live in ``arclib.checkpoint``**: written atomically, verified by a sha256, and carrying the
  run's settings, so that a resume under other settings is refused. Their public names (``save_checkpoint``,
  ``read_checkpoint``, ``load_checkpoint``, ``checkpoint_digest``, ``run_settings``, ``CheckpointError``,
  ``ResumeMismatch``, ``CHECKPOINT_FORMAT``, ``READABLE_FORMATS``) are importable from here too, as before.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from arclib import losses as _losses
from arclib import models as _models
from arclib._checks import check_choice, check_int, check_range
from arclib.checkpoint import (  # noqa: F401 (re-exported: these were defined here before arclib.checkpoint)
    CHECKPOINT_FORMAT,
    READABLE_FORMATS,
    CheckpointError,
    ResumeMismatch,
    _check_resume,
    _hparams,
    _same_file,
    _set_rng_state,
    checkpoint_digest,
    load_checkpoint,
    read_checkpoint,
    run_settings,
    save_checkpoint,
)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("onecycle", "cosine", "none")
DEFAULT_LR = {"sgd": 0.1, "adam": 3e-3}


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: the message says which input went non-finite and what usually helps."""


@dataclass
class History:
    """Per-epoch curves of a run: mean training loss and accuracy (on the batches as trained, dropout on),
    test accuracy (None without a test loader), the learning rate at the epoch's first step, and seconds.

    Two angles watch the geometry (both in degrees): ``own_angle``, the mean angle of the epoch's training
    embeddings to their own class centre, and ``centre_angle_min``, the smallest angle between two centres at
    the epoch's end. A collapse shows in them first: centres closing in on each other, embeddings drifting away.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float | None] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    own_angle: list[float] = field(default_factory=list)
    centre_angle_min: list[float] = field(default_factory=list)

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


def resolve_device(device: torch.device | str | None = None, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` (None: ``default_device()``); a ValueError naming ``name`` unless it is cpu,
    cuda[:N] or mps and this machine has it."""
    if device is None:
        return default_device()
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{name} must be cpu, cuda, cuda:N or mps; got {str(device)!r}")
    device = parsed
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} {str(device)!r}: this machine has no CUDA device (torch {torch.__version__}); "
                             f"use cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{name} {str(device)!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise ValueError(f"{name} 'mps': Apple's Metal backend is not available on this machine; use cpu")
    return device


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


def _own_angles(loss: nn.Module, emb: Tensor, labels: Tensor) -> Tensor:
    """Angle in degrees between each embedding and its own class centre (a row of the head's weight)."""
    if getattr(loss, "head", None) is None:
        return torch.full(labels.shape, math.nan)
    centres = torch.nn.functional.normalize(loss.head.weight.detach().float(), dim=1)
    cos = (torch.nn.functional.normalize(emb.float(), dim=1) * centres[labels]).sum(1)
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))


def _centre_angle_min(loss: nn.Module) -> float:
    """The smallest angle in degrees between two class centres."""
    if getattr(loss, "head", None) is None:
        return math.nan
    w = torch.nn.functional.normalize(loss.head.weight.detach().float(), dim=1)
    cos = (w @ w.T).fill_diagonal_(-1).max()
    return math.degrees(math.acos(float(cos.clamp(-1, 1))))


def _margin_warmup(loss: nn.Module, step: int, warmup_steps: float):
    """The margin fraction of global step ``step`` (0, 1, …): (step + 1) / warmup_steps, capped at 1."""
    if warmup_steps <= 0 or step + 1 >= warmup_steps or not hasattr(loss, "margin_fraction"):
        return contextlib.nullcontext()
    return loss.margin_fraction((step + 1) / warmup_steps)


# ---- the loop ---------------------------------------------------------------------------------------------

def _non_finite(tensors) -> bool:
    return any(not torch.isfinite(t).all() for t in tensors)


def _diverged(model: nn.Module, loss: nn.Module, emb: Tensor, epoch: int, step: int, lr: float) -> TrainingDiverged:
    """The error for a non-finite loss, naming the first input that went non-finite, upstream first."""
    if _non_finite(model.parameters()):
        what = "the model's weights"
    elif _non_finite([emb]):
        what = "the embeddings (the model's output)"
    elif _non_finite(loss.parameters()):
        what = "the class centres (the loss's weights)"
    else:
        what = "the loss value"
    remedies = [f"a lower lr (now {lr:g})"]
    if "s" in _hparams(loss):
        remedies.append(f"a smaller s (now {loss.s:g})")
    if getattr(loss, "neutral_margins", None):
        remedies.append("a margin warm-up (margin_warmup, --margin-warmup)")
    return TrainingDiverged(f"training diverged at epoch {epoch + 1}, step {step + 1}: {what} became non-finite "
                            f"(NaN or inf); what usually helps: {', '.join(remedies)}")


def fit(model: nn.Module, loss: nn.Module, train_loader: DataLoader, test_loader: DataLoader | None = None,
        epochs: int = 5, lr: float | None = None, optimizer: str = "sgd", weight_decay: float = 5e-4,
        schedule: str = "onecycle", device: torch.device | str | None = None, amp: bool | None = None,
        seed: int = 0, checkpoint: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
        max_steps: int | None = None, progress: bool = True, meta: dict | None = None,
        on_step: Callable[[int, nn.Module, Tensor, Tensor], None] | None = None,
        margin_warmup: float = 0.0, settings: dict | None = None) -> History:
    """Train ``model`` (features) and ``loss`` (class centres) together; return the per-epoch ``History``.

    ``lr`` is the peak learning rate (default 0.1 for SGD, 3e-3 for Adam). ``max_steps`` caps the batches per
    epoch (quick mode). ``checkpoint``: a path written after every epoch. ``resume``: a checkpoint of this same
    run to continue from (its model, loss, optimizer and scheduler states and history are restored and the
    remaining epochs of ``epochs`` are run). ``amp``: None means on for CUDA, off elsewhere. ``meta`` is stored
    in the checkpoint as is (plain types only). ``settings``: what else defines the run, beyond fit's own
    arguments, the model, the loss and the loaders' sizes (the CLI passes the dataset, classes, augmentation
    and limits); plain types only.

    The checkpoint stores the run's settings (``run_settings``) and ``resume`` refuses, with a ResumeMismatch
    naming each setting and both values, a checkpoint whose settings differ from this call's: another loss,
    s, m, lr, seed, schedule, batch size, training set, … would silently mix two runs. ``epochs`` may differ only
    under ``schedule="none"`` (and not below the epochs already trained): there the learning rate does not depend
    on it, so a finished run extended to more epochs is exactly the run that asked for them from the start. The
    other schedules span exactly the epochs a run started with, so a finished one-cycle run cannot be extended;
    train a new one. Device and ``amp`` may change (resuming a GPU run on a CPU is allowed).

    ``on_step(step, loss, embeddings, labels)`` is called after every optimizer step, without gradients, with the
    global step (0, 1, …), the loss module and the batch just trained on: a way to watch something during
    training (chapter 07 counts the classes sparsemax keeps).
    ``margin_warmup``: epochs (a float) over which every margin of the loss grows linearly, step by step, from
    none to its value (``MarginLoss.margin_fraction``); 0 trains with the full margin from the first step. Losses
    without a margin ignore it, so one recipe serves a whole comparison.

    A loss that becomes NaN or infinite stops the run with a TrainingDiverged error that says what went
    non-finite first and what usually helps.
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
    device = resolve_device(device)
    amp = device.type == "cuda" if amp is None else bool(amp)
    run = run_settings(model, loss, train_loader, test_loader, settings, epochs=epochs, lr=lr, optimizer=optimizer,
                       weight_decay=weight_decay, schedule=schedule, seed=seed, max_steps=max_steps,
                       steps_per_epoch=steps, margin_warmup=margin_warmup)
    state = None
    if resume is not None:  # checked before anything is built or moved: a refused resume changes nothing
        state = read_checkpoint(resume)
        _check_resume(resume, state, run)

    seed_everything(seed)
    model.to(device)
    loss.to(device)
    opt = make_optimizer([model, loss], optimizer, lr, weight_decay)
    sched = make_scheduler(opt, schedule, lr, epochs * steps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda"
                                  and not torch.cuda.is_bf16_supported())
    history, start = History(), 0
    if state is not None:
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
        t0, total, correct, seen, own_degrees = time.perf_counter(), 0.0, 0, 0, 0.0
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
                try:
                    value = loss(emb, y)
                except ValueError:  # the loss refuses non-finite features: that is divergence, unless they are fine
                    if torch.isfinite(emb).all():
                        raise
                    raise _diverged(model, loss, emb, epoch, step, lr) from None
            value_now = value.item()  # the one sync per step the running mean needs anyway
            if not math.isfinite(value_now):
                raise _diverged(model, loss, emb, epoch, step, lr)
            opt.zero_grad(set_to_none=True)
            scaler.scale(value).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            with torch.no_grad():
                n = y.shape[0]
                total += value_now * n
                correct += int((loss.predict(emb.detach()) == y).sum())
                own_degrees += float(_own_angles(loss, emb.detach(), y).sum())
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
        history.own_angle.append(own_degrees / seen)
        history.centre_angle_min.append(_centre_angle_min(loss))
        if progress:
            shown = "" if test_acc is None else f" test_acc {test_acc:.4f}"
            tqdm.write(f"epoch {epoch + 1}/{epochs}: loss {total / seen:.4f} train_acc {correct / seen:.4f}{shown} "
                       f"({history.seconds[-1]:.1f} s)")
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, loss, opt, sched, epoch + 1, history, meta, run)
    if start >= epochs and checkpoint is not None and not _same_file(checkpoint, resume):
        # a finished run resumed into another folder: that folder still gets its checkpoint
        save_checkpoint(checkpoint, model, loss, opt, sched, start, history, meta, run)
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


def sweep_s_then_m(dataset: str, losses: dict[str, tuple[str, float]], embedding_dim: int, train_loader: DataLoader,
                   test_loader: DataLoader, s_values: Sequence[float], m_values: Sequence[float], *,
                   seeds: Sequence[int] = (0,), **train_kw) -> dict:
    """The two sweeps of the Angular SparseMax paper (seed 002, Fig. 3 then Fig. 4), for several losses.

    ``losses`` maps a label to ``(loss name, m)``. For each: test accuracy against s at that m, then against m at
    the best s found (the mean over ``seeds``). Returns ``{"s": {label: {s: [acc per seed]}}, "best_s": {label:
    s}, "m": {label: {m: [acc per seed]}}}``; everything else as in ``sweep``.
    """
    out: dict = {"s": {}, "best_s": {}, "m": {}}
    for label, (name, m) in losses.items():
        by_s = sweep(dataset, name, embedding_dim, train_loader, test_loader, "s", s_values, seeds=seeds,
                     loss_kw={"m": m}, **train_kw)
        best = max(by_s, key=lambda s: float(np.mean(by_s[s])))
        out["s"][label], out["best_s"][label] = by_s, best
        out["m"][label] = sweep(dataset, name, embedding_dim, train_loader, test_loader, "m", m_values, seeds=seeds,
                                loss_kw={"s": best}, **train_kw)
    return out
