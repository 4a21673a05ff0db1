"""Test accuracy and angle statistics of every loss on MNIST and CIFAR-10, as a Markdown table.

Each cell is one ``python -m arclib train`` run (so the table is reproducible from the printed commands); its
``metrics.json`` gives the numbers. Examples::

    python benchmarks/accuracy.py --data mnist --losses arcface cosface --epochs 4
    python benchmarks/accuracy.py --data cifar10 --losses arcface softmax           # the full recipe (a GPU job)
    python benchmarks/accuracy.py --data cifar10 --budget cpu --threads 1           # what a 2-core CPU can do
    python benchmarks/accuracy.py --quick            # a smoke run on tiny subsets

The per-loss hyperparameters below are the ones that train on 10 classes (s ≈ 30 or lower; s = 64 is tuned
for thousands of identities and tends to fail here). Override any of them with ``--extra``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from machine import describe  # benchmarks/machine.py, beside this script

DATASETS = ("mnist", "cifar10")
LOSSES = ("softmax", "normface", "cosface", "sphereface", "arcface", "qamface", "angular_sparsemax")

#: Hyperparameters for 10 classes; the flags of ``python -m arclib train``.
HPARAMS: dict[str, list[str]] = {
    "softmax": [],
    "normface": ["--s", "16"],
    "cosface": ["--s", "30", "--m", "0.35"],
    "sphereface": ["--s", "30", "--m", "4", "--lam", "5"],
    "arcface": ["--s", "30", "--m", "0.5"],
    "qamface": ["--s", "6", "--m", "0.5"],
    "angular_sparsemax": [],
}

#: CIFAR-10 with few epochs: s = 30 saturates the softmax before the features have moved (chapter 04's sweep:
#: s = 4–16 beat s = 64 by 14–17 points), so no loss starts above s = 16 there.
CIFAR10_HPARAMS: dict[str, list[str]] = {
    name: [(str(min(float(v), 16.0)).removesuffix(".0") if i > 0 and flags[i - 1] == "--s" else v)
           for i, v in enumerate(flags)]
    for name, flags in HPARAMS.items()
}

#: Training settings per (dataset, budget): (epochs, extra flags). MNIST needs no reduced budget (4 epochs take
#: about 4 minutes on one CPU thread); CIFAR-10's ResNet-18 for 30 epochs is a GPU job, so the ``cpu`` budget is
#: a quarter-width network on the first 15,000 training images for 3 epochs (the full 10,000 test images).
SETTINGS: dict[tuple[str, str], tuple[int, list[str]]] = {
    ("mnist", "full"): (4, ["--embedding-dim", "128", "--batch-size", "128", "--optimizer", "sgd", "--lr", "0.1"]),
    ("cifar10", "full"): (30, ["--embedding-dim", "512", "--batch-size", "128", "--optimizer", "sgd", "--lr", "0.1",
                              "--augment", "--width", "64"]),
    ("cifar10", "cpu"): (3, ["--embedding-dim", "128", "--batch-size", "128", "--optimizer", "sgd", "--lr", "0.1",
                             "--width", "16", "--train-limit", "15000"]),
}
SETTINGS[("mnist", "cpu")] = SETTINGS[("mnist", "full")]


def run(data: str, loss: str, args) -> dict:
    epochs, flags = SETTINGS[(data, args.budget)]
    epochs = args.epochs or epochs
    out = Path(args.out) / f"{data}-{args.budget}-{loss}"
    cmd = [sys.executable, "-m", "arclib", "train", "--data", data, "--loss", loss,
           *(CIFAR10_HPARAMS if data == "cifar10" else HPARAMS)[loss], *flags,
           "--epochs", str(epochs), "--out", str(out), "--no-progress"]
    if args.width and data == "cifar10":
        cmd[cmd.index("--width") + 1] = str(args.width)
    if args.quick:
        cmd.append("--quick")
    if args.device:
        cmd += ["--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.cifar10_checksums and data == "cifar10":
        cmd += ["--cifar10-checksums", args.cifar10_checksums]
    cmd += shlex.split(args.extra)
    shown = shlex.join(["python", *cmd[1:]])
    print(f"$ {shown}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"command": shown, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["command"] = shown
    return metrics


def table(rows: list[tuple[str, str, dict]]) -> str:
    head = ("| data | loss | test acc | intra ° | to nearest other centre ° | min inter-centre ° | "
            "inter-embedding ° | epochs | wall s | device |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for data, loss, m in rows:
        if "error" in m:
            lines.append(f"| {data} | {loss} | failed: {m['error']} | | | | | | | |")
            continue
        a = m["angle_stats"]
        lines.append(f"| {data} | {loss} | {100 * m['test_accuracy']:.2f} % | {a['intra']:.1f} | "
                     f"{a['to_nearest_other_centre']:.1f} | {a['inter_centre_min']:.1f} | {a['inter_embedding']:.1f} | "
                     f"{m['epochs']} | {m['wall_time_s']:.0f} | {m['device']} ({m['torch_threads']} threads) |")
    lines.append("")
    lines += [f"- `{m['command']}`" for _, _, m in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=DATASETS, default=list(DATASETS), help="datasets")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES), help="losses")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: 4 for MNIST; CIFAR-10 30, or 3 with --budget cpu)")
    parser.add_argument("--budget", choices=("full", "cpu"), default="full",
                        help="full: the full recipes (CIFAR-10 wants a GPU); cpu: CIFAR-10 reduced to what a laptop CPU trains in minutes")
    parser.add_argument("--width", type=int, default=None, help="CifarResNet base width (64 = ResNet-18)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--cifar10-checksums", default=None, choices=("torchvision", "offline-mirror"),
                        help="accept the offline mirror's CIFAR-10 (default: $ARCLIB_CIFAR10_CHECKSUMS)")
    parser.add_argument("--quick", action="store_true", help="tiny subsets: checks the pipeline, not accuracy")
    parser.add_argument("--out", default="runs/benchmark", help="folder for the runs' checkpoints and metrics")
    parser.add_argument("--extra", default="", help="more flags for every `arclib train`, e.g. '--seed 1'")
    args = parser.parse_args(argv)
    print(f"# Test accuracy of every loss\n\nCommand: `{shlex.join(['python', 'benchmarks/accuracy.py', *(sys.argv[1:] if argv is None else argv)])}`"
          f"\n\n{describe()}\n")
    rows = [(d, loss, run(d, loss, args)) for d in args.data for loss in args.losses]
    print(table(rows))
    return 1 if any("error" in m for _, _, m in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
