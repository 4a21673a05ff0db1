"""The trained models behind the training chapters (03, 04, 07, 08), shipped inside arclib and verified.

Every file in ``arclib/checkpoints/`` was trained by the project's own CLI (``python -m arclib train ...``) and
exported by ``scripts/ship.py``. ``MANIFEST.json`` holds, per name: the file's sha256 and size, the exact command
that trained it, the metrics the *shipped* weights reach on the test split (evaluated after export, so a test
can reproduce them), the training history, and the arclib and torch versions. ``load`` refuses a file whose
sha256 is not the manifest's.

Shipped files are compact: no optimizer state, and float tensors of at least ``HALF_MIN`` elements (conv kernels,
linear layers, class centres) stored as float16 and restored to float32 on load; batch-norm statistics and biases
stay float32. A CifarResNet of width 16 is 1.9 MB this way instead of 7.7 MB with its optimizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
from pathlib import Path

import torch
from torch import nn

from arclib import losses as _losses
from arclib import models as _models

DIR = Path(__file__).resolve().parent / "checkpoints"
MANIFEST = DIR / "MANIFEST.json"
FORMAT = "arclib-shipped-1"
HALF_MIN = 1024


class ChecksumError(ValueError):
    """A shipped checkpoint whose bytes are not the ones the manifest describes."""


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(path: str | os.PathLike = MANIFEST) -> dict:
    """The manifest: ``{"models": {name: entry}}``; an empty one if the file does not exist yet."""
    path = Path(path)
    if not path.exists():
        return {"models": {}}
    return json.loads(path.read_text())


def names(prefix: str = "") -> list[str]:
    """Names of the shipped models, optionally only those starting with ``prefix`` (e.g. ``"mnist2d-"``)."""
    return sorted(n for n in manifest()["models"] if n.startswith(prefix))


def info(name: str) -> dict:
    """The manifest entry of one shipped model (command, metrics, history, sha256, ...)."""
    models = manifest()["models"]
    if name not in models:
        listed = ", ".join(sorted(models)) or "none yet"
        raise ValueError(f"name must be a shipped model ({listed}); got {name!r}")
    return models[name]


def _compact(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if isinstance(v, torch.Tensor) and v.is_floating_point() and v.numel() >= HALF_MIN else v
            for k, v in state.items()}  # non-tensors: a module's extra state (AdaCos's current s)


def _restore(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if isinstance(v, torch.Tensor) and v.dtype == torch.float16 else v for k, v in state.items()}


def export(model: nn.Module, loss: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` and ``loss`` as a compact shipped file (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT,
             "model": {"class": type(model).__name__, "config": model.config(),
                       "state": _compact(model.state_dict())},
             "loss": {"name": loss.name, "hparams": loss.hparams(), "state": _compact(loss.state_dict())},
             "meta": dict(meta or {})}
    torch.save(state, path)
    return path


def load_file(path: str | os.PathLike, expected_sha256: str | None = None,
              device: torch.device | str = "cpu") -> tuple[nn.Module, nn.Module, dict]:
    """(model in eval mode, loss, meta) from a shipped file, after checking its sha256 when one is given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shipped checkpoint {path} is missing; reinstall arclib or retrain (TRAIN = True)")
    if expected_sha256 is not None:
        actual = sha256(path)
        if actual != expected_sha256:
            raise ChecksumError(f"shipped checkpoint {path} is damaged or was replaced: its sha256 is {actual[:16]}…, "
                                f"the manifest says {expected_sha256[:16]}…; reinstall arclib or retrain (TRAIN = True)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a shipped arclib checkpoint (format {FORMAT})")
    model = _models.build(state["model"]["class"], **state["model"]["config"])
    model.load_state_dict(_restore(state["model"]["state"]))
    loss = _losses.make(state["loss"]["name"], **state["loss"]["hparams"])
    loss.load_state_dict(_restore(state["loss"]["state"]))
    return model.to(device).eval(), loss.to(device), state["meta"]


def load(name: str, device: torch.device | str = "cpu") -> tuple[nn.Module, nn.Module, dict]:
    """(model, loss, manifest entry) of a shipped model; refuses a file whose sha256 is not the manifest's.

    The model comes back in eval mode; ``entry["history"]`` holds the per-epoch curves of its training and
    ``entry["command"]`` the command that trained it.
    """
    entry = info(name)
    model, loss, _ = load_file(DIR / entry["file"], entry["sha256"], device)
    return model, loss, entry


def load_from_study(study: dict, folder: str | os.PathLike, name: str, what: str
                    ) -> tuple[nn.Module, nn.Module, dict]:
    """(model and loss in eval mode, entry) of a model that a recorded study ships in ``folder``, beside its JSON.

    ``study["models"]`` maps each name to its entry (file, sha256, ...), as ``arclib.fewshot.study()`` and
    ``arclib.robust.study()`` return it; ``what`` names the study in the error for an unknown name.
    """
    models = study["models"]
    if name not in models:
        raise ValueError(f"name must be a shipped model of the {what} ({', '.join(sorted(models))}); got {name!r}")
    entry = models[name]
    model, loss, _ = load_file(Path(folder) / entry["file"], entry["sha256"])
    return model, loss.eval(), entry


#: recorded studies without a checkpoint per run, shipped beside the models: name -> file in ``DIR``
STUDIES = {"cifar10-seeds": "CIFAR10_SEEDS.json"}


def recorded_study(name: str) -> dict:
    """A recorded multi-seed study as its benchmark script wrote it into ``DIR``: ``{"runs": [one dict per run:
    label, seed, command, metrics ...], "commands": [...], "cpu_minutes": ...}``.

    ``"cifar10-seeds"``: chapter 04's losses over three seeds (``python benchmarks/cifar10_seeds.py``).
    """
    if name not in STUDIES:
        raise ValueError(f"name must be a recorded study ({', '.join(sorted(STUDIES))}); got {name!r}")
    path = DIR / STUDIES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall arclib or rerun the study's script")
    return json.loads(path.read_text())


def retrain_args(command: str, quick: bool, out: str | os.PathLike) -> list[str]:
    """The CLI arguments that rerun a recorded ``python -m arclib train ...`` command in a notebook.

    Kept: every option that defines the recipe. Changed: ``--out`` (a folder of the reader's), ``--threads`` and
    ``--device`` dropped (the reader's machine decides: cuda > mps > cpu), no progress bars. In quick mode the same
    command runs on the tiny subsets for at most 2 epochs, the margin warm-up shortened to fit.
    """
    argv = shlex.split(command)
    if argv[:4] != ["python", "-m", "arclib", "train"]:
        raise ValueError(f"command must be a recorded 'python -m arclib train ...' command; got {command!r}")
    args = drop_options(argv[4:], ("--out", "--threads", "--device"))
    if quick:
        values = dict(zip(args, args[1:]))
        epochs = min(2, int(values.get("--epochs", 5)))
        warmup = min(float(values.get("--margin-warmup", 0)), epochs / 2)
        args = drop_options(args, ("--epochs", "--margin-warmup", "--train-limit", "--test-limit"))
        args += ["--epochs", str(epochs), "--margin-warmup", str(warmup), "--quick"]
    return args + ["--out", str(out), "--no-progress"]


def drop_options(args: list[str], options: tuple[str, ...]) -> list[str]:
    """``args`` without the given options and their values (``--opt value`` or ``--opt=value``)."""
    kept, skip = [], False
    for word in args:
        if skip:
            skip = False
        elif word in options:
            skip = True
        elif not word.startswith(tuple(f"{o}=" for o in options)):
            kept.append(word)
    return kept


def get(name: str, retrain: bool = False, out: str | os.PathLike | None = None,
        device: torch.device | str | None = None) -> dict:
    """A training chapter's model: the shipped one, or (``retrain=True``) a fresh run of its recorded command.

    Returns ``{"model", "loss", "history", "seconds", "entry", "retrained"}``: the model in eval mode on ``device``
    (default: cuda > mps > cpu), its loss with the class centres on the CPU (where ``train.embed`` returns the
    embeddings it is compared with), the per-epoch ``History``, the training wall
    time in seconds, and the manifest entry. ``out`` is where a retrained run writes its checkpoint (default: a
    new temporary folder). Quick mode (``ARCLIB_QUICK=1``) retrains on the tiny subsets, as every chapter's tests do.
    """
    from arclib import cli, config, train  # the CLI imports the data stack; only a retrain needs it

    entry = info(name)
    device = train.default_device() if device is None else torch.device(device)
    if not retrain:
        model, loss, _ = load_file(DIR / entry["file"], entry["sha256"], device)
        loss.cpu()
        history = train.History.from_dict(entry["history"])
        return {"model": model, "loss": loss, "history": history, "seconds": entry["train_time_s"],
                "entry": entry, "retrained": False}
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"arclib-{name}-"))
    argv = ["train", *retrain_args(entry["command"], config.quick_mode(), out)]
    if device.type != "cpu":
        argv += ["--device", str(device)]
    if cli.main(argv) != 0:
        raise RuntimeError(f"retraining {name} failed: python -m arclib {shlex.join(argv)}")
    model, loss, meta = train.load_checkpoint(out / "checkpoint.pt", map_location=device)
    history = train.History.from_dict(meta["history"])
    return {"model": model.eval(), "loss": loss.cpu(), "history": history, "seconds": sum(history.seconds),
            "entry": entry, "retrained": True}


# ---- recorded sweeps: results without a checkpoint ---------------------------------------------------------

def run_sweeps(spec: dict, quick: bool | None = None) -> dict:
    """Run ``arclib.train.sweep_s_then_m`` as ``spec`` describes (a manifest's ``results`` entry holds one).

    ``spec``: dataset, embedding_dim, train_limit, batch_size, epochs, seeds, losses {label: [name, m]},
    s_values, m_values. Quick mode (default: ``ARCLIB_QUICK``) keeps one seed and two steps per run.
    """
    from arclib import config, data, train

    quick = config.quick_mode() if quick is None else quick
    train_loader, test_loader = data.loaders(spec["dataset"], batch_size=spec["batch_size"],
                                             train_limit=spec["train_limit"], quick=quick)
    num_classes = data.num_classes(train_loader.dataset) if not quick else 10
    seeds = spec["seeds"][:1] if quick else spec["seeds"]
    return train.sweep_s_then_m(spec["dataset"], {k: tuple(v) for k, v in spec["losses"].items()},
                                spec["embedding_dim"], train_loader, test_loader, spec["s_values"], spec["m_values"],
                                seeds=seeds, num_classes=num_classes, epochs=spec["epochs"],
                                max_steps=2 if quick else None, progress=False)


def _float_keys(result: dict) -> dict:
    return {"s": {label: {float(k): v for k, v in by.items()} for label, by in result["s"].items()},
            "best_s": {label: float(v) for label, v in result["best_s"].items()},
            "m": {label: {float(k): v for k, v in by.items()} for label, by in result["m"].items()}}


def sweeps(name: str, rerun: bool = False) -> dict:
    """Recorded sweep results by name, or (``rerun=True``) the same sweeps run again on this machine.

    Returns ``{"spec", "result", "seconds", "entry"}``; ``result`` as ``train.sweep_s_then_m`` returns it.
    """
    import time

    results = manifest().get("results", {})
    if name not in results:
        raise ValueError(f"name must be a recorded result ({', '.join(sorted(results)) or 'none yet'}); got {name!r}")
    entry = results[name]
    if not rerun:
        return {"spec": entry["spec"], "result": _float_keys(entry["result"]), "seconds": entry["seconds"],
                "entry": entry}
    start = time.perf_counter()
    result = run_sweeps(entry["spec"])
    return {"spec": entry["spec"], "result": result, "seconds": time.perf_counter() - start, "entry": entry}
