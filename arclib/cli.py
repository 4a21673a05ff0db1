"""``python -m arclib train|evaluate``: the command line over ``arclib.train.fit`` and ``arclib.metrics``.

``train`` writes ``OUT/checkpoint.pt`` and ``OUT/metrics.json`` (test accuracy, angle statistics, history, wall
time, device and the exact command). ``evaluate`` rebuilds a run from its checkpoint and prints accuracy, angle
statistics and LFW-style verification, optionally on classes the model never saw (``--open-set-classes``).
Bad hyperparameters, devices and checkpoints end with one line on stderr (the library's ValueError) and exit
code 2, without a traceback. ``train --resume`` refuses a checkpoint whose run had other settings, naming each
option with both values (``arclib.train.fit`` explains what may change).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from arclib import data, losses, metrics, models, train
from arclib._checks import check_int
from arclib.config import quick_mode

#: Loss hyperparameters passed to ``losses.make`` only when given on the command line.
LOSS_FLAGS = {
    "s": (float, "scale s of the logits (softmax has none)"),
    "m": (float, "margin m: angular (arcface, qamface, angular_sparsemax), cosine (cosface), integer (sphereface)"),
    "m1": (float, "combined: multiplicative angular margin m1"),
    "m2": (float, "combined: additive angular margin m2"),
    "m3": (float, "combined: additive cosine margin m3"),
    "tail": (str, f"arcface/combined/angular_sparsemax: treatment past θ = π − m, one of {', '.join(losses.TAILS)}"),
    "lam": (float, "sphereface: annealing weight λ ≥ 0"),
}


class UsageError(Exception):
    """A bad option value: printed as ``arclib: error: ...`` with exit code 2."""


def _command() -> str:
    return shlex.join(["python", "-m", "arclib", *sys.argv[1:]])


def _classes(spec: str | None, what: str) -> list[int] | None:
    try:
        return data.parse_classes(spec)
    except ValueError as err:
        raise UsageError(f"{what}: {err}") from None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arclib", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate}")

    t = sub.add_parser("train", help="train a model with a margin loss; write a checkpoint and metrics.json",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train an embedding network with a margin loss on MNIST, Fashion-MNIST or CIFAR-10.")
    t.add_argument("--data", choices=data.DATASETS, default="mnist", help="dataset")
    t.add_argument("--loss", choices=losses.NAMES, default="arcface", help="loss (arclib.losses.make name)")
    for flag, (kind, text) in LOSS_FLAGS.items():
        t.add_argument(f"--{flag}", type=kind, default=None, help=f"{text}; the loss's default when omitted")
    t.add_argument("--embedding-dim", type=int, default=128, help="embedding dimension d (2 or 3 for plots)")
    t.add_argument("--width", type=int, default=None,
                   help="base channels of the network (default: 32 for MnistNet, 64 for CifarResNet)")
    t.add_argument("--dropout", type=float, default=None, help="dropout in the BN-Dropout-FC-BN neck (model default)")
    t.add_argument("--centred-embedding", action="store_true",
                   help="the neck's last BN learns no shift or scale: every batch of embeddings is centred on the origin")
    t.add_argument("--epochs", type=int, default=5, help="training epochs")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.1 for sgd, 3e-3 for adam)")
    t.add_argument("--batch-size", type=int, default=128, help="training batch size")
    t.add_argument("--optimizer", choices=train.OPTIMIZERS, default="sgd",
                   help="sgd (Nesterov momentum 0.9) or adam (AdamW)")
    t.add_argument("--weight-decay", type=float, default=5e-4, help="weight decay on weights (not BN or biases)")
    t.add_argument("--schedule", choices=train.SCHEDULES, default="onecycle", help="learning-rate schedule per step")
    t.add_argument("--margin-warmup", type=float, default=0.0,
                   help="epochs over which the margin grows linearly from 0 to its value (0: full margin from step 1)")
    t.add_argument("--augment", action="store_true", help="random crop+flip (CIFAR) / small affine jitter (MNIST)")
    t.add_argument("--classes", default=None,
                   help="train on these class ids only, e.g. 0-6 or 1,3,5 (for open-set experiments)")
    t.add_argument("--out", default=None, help="output folder (default runs/DATA-LOSS-DIMd)")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda > mps > cpu)")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision for the model forward (default: on for CUDA only)")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--quick", action="store_true",
                   help="tiny fixed subsets (512 train / 256 test images), as ARCLIB_QUICK=1 does")
    t.add_argument("--train-limit", type=int, default=None,
                   help="keep only the first N training images (after --classes): a fixed subset for a CPU budget")
    t.add_argument("--test-limit", type=int, default=None,
                   help="keep only the first N test images (after --classes)")
    t.add_argument("--max-steps", type=int, default=None, help="cap on batches per epoch (default: all; 4 in quick mode)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    t.add_argument("--data-root", default=None, help="data folder (default: $ARCLIB_DATA, else ./data)")
    t.add_argument("--cifar10-checksums", choices=tuple(data.CIFAR10_CHECKSUMS), default=None,
                   help="also accept the offline mirror's CIFAR-10 md5s (default: $ARCLIB_CIFAR10_CHECKSUMS)")
    t.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="fetch missing data from the internet (default: only when not found locally)")
    t.add_argument("--resume", default=None, help="checkpoint of this run to continue from")
    t.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")

    e = sub.add_parser("evaluate", help="accuracy, angle statistics and verification of a checkpoint",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Evaluate a checkpoint written by `arclib train` on its dataset's test split.")
    e.add_argument("checkpoint", help="path to checkpoint.pt")
    e.add_argument("--open-set-classes", default=None,
                   help="verification on these (unseen) test classes, e.g. 7-9; default: the trained classes")
    e.add_argument("--n-pairs", type=int, default=6000, help="verification pairs (half same, half different)")
    e.add_argument("--batch-size", type=int, default=512, help="evaluation batch size")
    e.add_argument("--device", default=None, help="cpu, cuda, mps (default: cuda > mps > cpu)")
    e.add_argument("--quick", action="store_true", help="first 256 test images only")
    e.add_argument("--seed", type=int, default=0, help="seed of the verification pairs")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    e.add_argument("--data-root", default=None, help="data folder (default: $ARCLIB_DATA, else ./data)")
    e.add_argument("--cifar10-checksums", choices=tuple(data.CIFAR10_CHECKSUMS), default=None,
                   help="also accept the offline mirror's CIFAR-10 md5s")
    e.add_argument("--download", action=argparse.BooleanOptionalAction, default=None,
                   help="fetch missing data from the internet (default: only when not found locally)")
    e.add_argument("--json", default=None, help="also write the results here")
    return parser


def _loss_hparams(args) -> dict:
    return {k: getattr(args, k) for k in LOSS_FLAGS if getattr(args, k) is not None}


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        try:
            torch.set_num_threads(check_int("--threads", threads, 1, 4096))
        except ValueError as err:
            raise UsageError(str(err)) from None


def _device(spec: str | None) -> torch.device:
    try:
        return train.resolve_device(spec, "--device")
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_train(args) -> int:
    _set_threads(args.threads)
    quick = args.quick or quick_mode()
    classes = _classes(args.classes, "--classes")
    out = Path(args.out or f"runs/{args.data}-{args.loss}-{args.embedding_dim}d")
    device = _device(args.device)
    if args.resume is not None and not Path(args.resume).is_file():  # before the data loads, which can take a while
        raise UsageError(f"--resume: no such file {args.resume}")
    t_start = time.perf_counter()
    # model and loss first: a bad hyperparameter fails before any data is read
    n_classes = len(classes) if classes is not None else data.NUM_CLASSES[args.data]
    model_kw = {k: v for k, v in (("width", args.width), ("dropout", args.dropout)) if v is not None}
    if args.centred_embedding:
        model_kw["centred"] = True
    train.seed_everything(args.seed)  # the initial weights and class centres depend on --seed alone
    model = models.for_dataset(args.data, args.embedding_dim, **model_kw)
    loss = losses.make(args.loss, num_classes=n_classes, embedding_dim=args.embedding_dim, **_loss_hparams(args))
    train_loader, test_loader = data.loaders(args.data, args.batch_size, args.data_root, classes, quick,
                                             args.num_workers, args.seed, augment=args.augment,
                                             download=args.download, cifar10_checksums=args.cifar10_checksums,
                                             train_limit=args.train_limit, test_limit=args.test_limit)
    meta = {"dataset": args.data, "classes": classes, "quick": quick, "command": _command()}
    # what defines the run beyond fit's own arguments: a resume must match these too
    settings = {"data": args.data, "classes": classes, "augment": args.augment, "quick": quick,
                "train_limit": args.train_limit, "test_limit": args.test_limit}
    max_steps = args.max_steps if args.max_steps is not None else (4 if quick else None)
    try:
        history = train.fit(model, loss, train_loader, test_loader, epochs=args.epochs, lr=args.lr,
                            optimizer=args.optimizer, weight_decay=args.weight_decay, schedule=args.schedule,
                            device=device, amp=args.amp, seed=args.seed, checkpoint=out / "checkpoint.pt",
                            resume=args.resume, max_steps=max_steps, progress=not args.no_progress, meta=meta,
                            margin_warmup=args.margin_warmup, settings=settings)
    except train.ResumeMismatch as err:
        # the stored settings by the options that set them: --lr, --batch-size (derived ones, e.g. num_classes, as is)
        raise UsageError(err.describe(lambda k: "--" + k.replace("_", "-") if hasattr(args, k) else k)) from None
    emb, labels = train.embed(model, test_loader, device)
    result = {
        "command": meta["command"],
        "dataset": args.data,
        "classes": classes,
        "loss": loss.name,
        "loss_hparams": loss.hparams(),
        "model": type(model).__name__,
        "model_config": model.config(),
        "test_accuracy": metrics.accuracy(loss, emb, labels),
        "angle_stats": metrics.angle_stats(emb, labels, loss.head.weight),
        "history": history.to_dict(),
        "epochs": history.epochs,
        "wall_time_s": time.perf_counter() - t_start,
        "train_time_s": sum(history.seconds),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "quick": quick,
        "train_images": len(train_loader.dataset),
        "test_images": len(test_loader.dataset),
        "args": vars(args),
    }
    out.mkdir(parents=True, exist_ok=True)  # a finished run resumed into a new --out trains no epoch
    (out / "metrics.json").write_text(json.dumps(_jsonable(result), indent=2))
    a = result["angle_stats"]
    print(f"test accuracy {result['test_accuracy']:.4f}  intra {a['intra']:.1f}°  nearest other centre "
          f"{a['to_nearest_other_centre']:.1f}°  min inter-centre {a['inter_centre_min']:.1f}°  "
          f"wall {result['wall_time_s']:.0f} s on {device}")
    print(f"wrote {out / 'checkpoint.pt'} and {out / 'metrics.json'}")
    return 0


def cmd_evaluate(args) -> int:
    _set_threads(args.threads)
    device = _device(args.device)
    if not Path(args.checkpoint).is_file():
        raise UsageError(f"checkpoint: no such file {args.checkpoint}")
    model, loss, meta = train.load_checkpoint(args.checkpoint)
    if not isinstance(meta.get("dataset"), str):
        raise UsageError(f"checkpoint {args.checkpoint} does not name its dataset (meta['dataset']): evaluate reads "
                         f"checkpoints written by `arclib train`")
    model.to(device)
    loss.to(device)
    quick = args.quick or quick_mode()
    open_set = _classes(args.open_set_classes, "--open-set-classes")
    name, classes = meta["dataset"], meta.get("classes")
    kw = dict(root=args.data_root, download=args.download, cifar10_checksums=args.cifar10_checksums)
    test = data.load(name, train=False, **kw)
    limit = data.QUICK_TEST if quick else None
    closed = data.select(test, classes, limit)
    loader = torch.utils.data.DataLoader(closed, batch_size=args.batch_size)
    emb, labels = train.embed(model, loader, device)
    result: dict = {"checkpoint": str(args.checkpoint), "dataset": name, "classes": classes,
                    "test_accuracy": metrics.accuracy(loss, emb, labels),
                    "angle_stats": metrics.angle_stats(emb, labels, loss.head.weight)}
    if open_set is not None:
        trained = set(classes) if classes is not None else set(range(len(getattr(test, "classes", [])) or 10))
        seen = sorted(trained & set(open_set))
        if seen:
            print(f"note: --open-set-classes {seen} were also trained on; the set is not fully open", file=sys.stderr)
        ver_set = data.select(test, open_set, limit)
        emb_v, labels_v = train.embed(model, torch.utils.data.DataLoader(ver_set, batch_size=args.batch_size), device)
    else:
        emb_v, labels_v = emb, labels
    ver = metrics.verification(emb_v, labels_v, n_pairs=args.n_pairs, seed=args.seed)
    result["verification"] = {"classes": open_set if open_set is not None else classes,
                              **{k: v for k, v in ver.items() if k not in ("roc", "positive_angles", "negative_angles")},
                              "positive_angle_mean": float(ver["positive_angles"].mean()),
                              "negative_angle_mean": float(ver["negative_angles"].mean())}
    a, v = result["angle_stats"], result["verification"]
    print(f"checkpoint {args.checkpoint}: {name}, {loss.name} {loss.hparams()}")
    print(f"closed-set test accuracy {result['test_accuracy']:.4f} on {len(labels)} images")
    print("angles (degrees): " + ", ".join(f"{k} {val:.2f}" for k, val in a.items()))
    what = f"classes {open_set}" if open_set is not None else "the trained classes"
    print(f"verification on {what}, {ver['n_pairs']} pairs: AUC {v['auc']:.4f}, "
          + ", ".join(f"TAR@FAR={far:g} {tar:.4f}" for far, tar in v["tar_at_far"].items())
          + f", 10-fold accuracy {v['accuracy_mean']:.4f} ± {v['accuracy_std']:.4f}"
          + f", mean angle same {v['positive_angle_mean']:.1f}° / different {v['negative_angle_mean']:.1f}°")
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable(result), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = cmd_train if args.command == "train" else cmd_evaluate
    try:
        return handler(args)
    except (ValueError, UsageError, data.DatasetNotFoundError) as err:
        # Argument checks across arclib raise ValueError naming the argument and its range: show that message
        # alone. ARCLIB_DEBUG=1 shows the traceback instead.
        if os.environ.get("ARCLIB_DEBUG"):
            raise
        print(f"arclib: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
