"""Checkpoints: written atomically, read and verified, and checked before a resume continues a run.

``arclib.train.fit`` writes one after every epoch and resumes from one; ``python -m arclib evaluate`` and
``arclib.pretrained`` read them. Every public name here is also importable from ``arclib.train``, as before.

- **Checkpoints load with ``torch.load(weights_only=True)``**: they hold only tensors, dicts, lists, strings
  and numbers, and are written atomically (temp file in the same folder, then ``os.replace``), so a crash
  mid-write never leaves a truncated checkpoint behind.
- **A sha256 of their contents** (``checkpoint_digest``) catches a file damaged later (torch's zip reader checks
  no checksums).
- **The run's settings travel with them** (``run_settings``), so that a resume under other settings is refused
  (``ResumeMismatch``) instead of silently mixing two runs.
- **Stored settings are tried on PyTorch's meta device first** (``_rebuild``): a checkpoint cannot make arclib
  allocate more than its weights take.

This module imports no training code (``arclib.train`` imports it), so there is no import cycle.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from arclib import losses as _losses
from arclib import models as _models

#: 2 added "settings" (what a resume must match) and "sha256" (of the contents); format 1 still loads.
CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, unreadable, damaged, inconsistent); the message names the file."""


class ResumeMismatch(ValueError):
    """``resume`` names a checkpoint trained under other settings: ``mismatches`` holds (setting, then, now)."""

    def __init__(self, path, mismatches: list[tuple[str, object, object]], hint: str) -> None:
        self.path, self.mismatches, self.hint = path, mismatches, hint
        super().__init__(self.describe())

    def describe(self, name: Callable[[str], str] = str) -> str:
        """The one-line message; ``name`` turns a setting into what the caller calls it (the CLI: ``--lr``)."""
        diffs = "; ".join(f"{name(k)} was {then!r}, now {now!r}" for k, then, now in self.mismatches)
        return f"cannot resume from {self.path}: its run had other settings ({diffs}); {self.hint}"


# ---- RNG states, the digest, writing and reading ------------------------------------------------------

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


def _feed(h, obj) -> None:
    """Every key, value and tensor byte of ``obj`` into the hash, in order, each tagged with its type and size
    (so 1, 1.0 and "1" differ, and no two layouts run together)."""
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)};".encode())
        h.update(t.view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, (list, tuple)):  # one tag for both: the digest is of the values, not of container types
        h.update(f"L{len(obj)};".encode())
        for value in obj:
            _feed(h, value)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def checkpoint_digest(state: dict) -> str:
    """sha256 of a checkpoint's contents (all but its "sha256" entry): what format 2 stores and checks.

    It hashes the loaded values, not the file's bytes, so the stored digest can live inside the file it checks.
    It guards against damage, not against someone who rewrites the file and its digest on purpose.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "sha256"})
    return h.hexdigest()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale_temp_files(path: Path) -> None:
    """Delete the temp files that saves of ``path`` killed mid-write left behind (127 MB each for ResNet-18).

    A temp file's name carries its writer's pid (``.checkpoint.pt.pid123.xxxx.tmp``): one whose writer is gone
    is garbage, one whose writer lives is not touched. Names without a pid (arclib before format 2) are removed
    once an hour old, by when no save can still be writing them.
    """
    prefix = _temp_prefix(path)
    for tmp in path.parent.glob(glob.escape(prefix) + "*.tmp"):
        tag = tmp.name[len(prefix):].split(".", 1)[0]
        try:
            if tag.startswith("pid") and tag[3:].isdigit():
                stale = not _process_alive(int(tag[3:]))
            else:
                stale = time.time() - tmp.stat().st_mtime > 3600
            if stale:
                tmp.unlink()
        except FileNotFoundError:  # removed meanwhile, by its writer or another cleanup
            pass


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def save_checkpoint(path: str | os.PathLike, model: nn.Module, loss: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, scheduler=None, epoch: int = 0,
                    history=None, meta: dict | None = None,
                    settings: dict | None = None) -> Path:
    """Write a checkpoint atomically: to a temp file in the same folder, fsync, then ``os.replace``.

    It holds the model's class and ``config()``, the loss's name and ``hparams()``, all states, the history as a
    dict, ``meta`` (the dataset name and the like), the run's ``settings`` (what ``fit(resume=...)`` compares;
    ``fit`` fills them in) and the sha256 of all that (``checkpoint_digest``). Temp files of earlier saves of
    ``path`` that were killed mid-write are removed first. ``history``: an ``arclib.train.History`` (anything
    with ``to_dict()``), its dict, or None (no epochs yet).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    if hasattr(history, "to_dict"):  # arclib.train.History, without importing the training code here
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
        "history": dict(history or {}),  # History.from_dict reads {} as no epochs
        "meta": dict(meta or {}),
        "settings": dict(settings or {}),
        "rng": _rng_state(),
    }
    state["sha256"] = checkpoint_digest(state)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_temp_prefix(path)}pid{os.getpid()}.", suffix=".tmp")
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


# What every readable checkpoint holds, and what format 2 adds; (kinds) as isinstance takes them.
_LAYOUT: dict[str, tuple[type, ...]] = {
    "epoch": (int,), "model": (dict,), "loss": (dict,), "optimizer": (dict, type(None)),
    "scheduler": (dict, type(None)), "history": (dict,), "meta": (dict,), "rng": (dict,)}
_LAYOUT_2 = {"settings": (dict,)}
_PARTS = {"model": {"class": (str,), "config": (dict,), "state": (dict,)},
          "loss": {"name": (str,), "hparams": (dict,), "state": (dict,)}}


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(err).__name__}: {line[:200]}" if line else type(err).__name__


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The raw checkpoint dict, loaded with ``weights_only=True`` (no arbitrary code runs while loading) and
    checked: a CheckpointError naming the file if it is missing, unreadable, of an unknown format, incomplete,
    or (format 2) its contents do not match the sha256 stored when it was written.

    Format-1 checkpoints (arclib before settings and digests were stored) load without the hash check.
    """
    if not Path(path).exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a damaged archive fails in the zip reader, the unpickler, UTF-8 decoding, …: all one
        raise CheckpointError(f"checkpoint {path} is unreadable (damaged, truncated or not a torch file): "
                              f"{_first_line(err)}") from err
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path} is not an arclib checkpoint (a {type(state).__name__} without a format)")
    if state["format"] not in READABLE_FORMATS or isinstance(state["format"], bool):
        raise CheckpointError(f"checkpoint {path} has format {state['format']!r}; this arclib reads formats "
                              f"{', '.join(map(str, READABLE_FORMATS))}")
    if state["format"] >= 2:
        if not isinstance(state.get("sha256"), str):
            raise CheckpointError(f"checkpoint {path} is damaged: it lacks the sha256 every format-2 file stores")
        if state["sha256"] != checkpoint_digest(state):
            raise CheckpointError(f"checkpoint {path} is damaged: its contents do not match the sha256 stored when "
                                  f"it was written")
    layout = {**_LAYOUT, **(_LAYOUT_2 if state["format"] >= 2 else {})}
    for key, kinds in layout.items():
        _require(path, state, key, kinds, key)
    for part, fields in _PARTS.items():
        for key, kinds in fields.items():
            _require(path, state[part], key, kinds, f"{part}.{key}")
    return state


def _require(path, holder: dict, key: str, kinds: tuple[type, ...], name: str) -> None:
    if not isinstance(holder.get(key), kinds):
        allowed = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
        raise CheckpointError(f"checkpoint {path} is incomplete: its {name!r} is missing or not a {allowed}")


def _shape(shape) -> str:
    return "missing" if shape is None else f"of shape {tuple(shape)}"


def _rebuild(path, what: str, build: Callable[[], nn.Module], weights: dict) -> nn.Module:
    """``build()`` loaded with ``weights``, after a dry run on the meta device: stored settings that disagree
    with the stored weights, or ask for absurd sizes, fail there before any memory is allocated for them."""
    try:
        with torch.device("meta"):
            skeleton = build()
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} stores an invalid {what}: {err}") from None
    want = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    have = {k: tuple(v.shape) if isinstance(v, Tensor) else None for k, v in weights.items()}
    if want != have:
        key = next(k for k in sorted(want.keys() | have.keys()) if want.get(k) != have.get(k))
        raise CheckpointError(f"checkpoint {path}: its {what} settings disagree with its weights: {key!r} is "
                              f"{_shape(have.get(key))} in the file, {_shape(want.get(key))} for the settings")
    module = build()
    module.load_state_dict(weights)
    return module


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module, dict]:
    """(model, loss, meta) rebuilt from a checkpoint; ``meta`` also carries "epoch", "history" and "settings"
    (empty for format 1). Every problem with the file is a CheckpointError naming it (see ``read_checkpoint``)."""
    state = read_checkpoint(path, map_location)
    m, lo = state["model"], state["loss"]
    model = _rebuild(path, "model", lambda: _models.build(m["class"], **m["config"]), m["state"])
    loss = _rebuild(path, "loss", lambda: _losses.make(lo["name"], **lo["hparams"]), lo["state"])
    meta = dict(state["meta"], epoch=state["epoch"], history=state["history"], settings=state.get("settings", {}))
    return model, loss, meta


# ---- run settings and resume checks -------------------------------------------------------------------

def _hparams(loss: nn.Module) -> dict:
    return loss.hparams() if hasattr(loss, "hparams") else {}


def _examples(loader) -> int | None:
    dataset = getattr(loader, "dataset", None)
    return len(dataset) if hasattr(dataset, "__len__") else None


def run_settings(model: nn.Module, loss: nn.Module, train_loader, test_loader=None, extra: dict | None = None,
                 **fit_args) -> dict:
    """What ``fit`` stores as a run's settings and a resume must match, as one flat dict of plain values.

    ``extra`` (the CLI's dataset, classes, augmentation, limits), the loss's name (``"loss"``) and ``hparams()``,
    the model's class (``"model"``) and ``config()``, ``fit_args`` (fit's own: epochs, lr, optimizer, …), and the
    loaders' batch size and numbers of images. The model's entries win a clash with the loss's (embedding_dim).
    """
    out = dict(extra or {})
    out.update(loss=getattr(loss, "name", type(loss).__name__), **_hparams(loss))
    out.update(model=type(model).__name__, **(model.config() if hasattr(model, "config") else {}))
    out.update(fit_args)
    out.update(batch_size=getattr(train_loader, "batch_size", None), train_images=_examples(train_loader),
               test_images=None if test_loader is None else _examples(test_loader))
    return out


def _check_resume(path, state: dict, now: dict) -> None:
    """Refuse to continue the run of ``state`` under settings ``now`` that differ from its own (fit's docstring)."""
    then = state.get("settings")
    if not then:
        raise CheckpointError(f"cannot resume from {path}: it stores no run settings to check this run against "
                              f"(format {state['format']}, or not written by fit); start a new run in another folder")
    done = int(state["epoch"])
    extendable = then.get("schedule") == now.get("schedule") == "none"
    diffs = [(k, then.get(k), now.get(k)) for k in dict.fromkeys([*then, *now])
             if then.get(k) != now.get(k) and not (k == "epochs" and extendable)]
    if any(k == "epochs" for k, *_ in diffs):
        finished = "the run finished all its epochs, and " if done >= then.get("epochs", 0) else ""
        hint = (f"{finished}epochs can change only with schedule 'none' (the others span exactly the epochs a run "
                f"started with): start a new run in another folder")
    else:
        hint = "resume with the same settings, or start a new run in another folder"
    if diffs:
        raise ResumeMismatch(path, diffs, hint)
    if now["epochs"] < done:
        raise ResumeMismatch(path, [("epochs", then["epochs"], now["epochs"])],
                             f"the checkpoint has trained {done} epochs already; ask for at least that many")


def _same_file(a, b) -> bool:
    return b is not None and Path(a).resolve() == Path(b).resolve()
