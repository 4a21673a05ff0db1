"""Ship a finished training run inside arclib: compact checkpoint, evaluation, manifest entry.

    python scripts/ship.py NAME RUN_DIR     # RUN_DIR holds checkpoint.pt and metrics.json from `python -m arclib train`

Writes ``arclib/checkpoints/NAME.pt`` (``arclib.pretrained.export``), loads it back through the same path a chapter
uses, evaluates the *shipped* weights on the run's test split (all of it, and the first ``QUICK_IMAGES`` images for
the quick test), and records in ``arclib/checkpoints/MANIFEST.json``: sha256, size, the command that trained the
run, the metrics, the history, wall time, device and versions. Run it again after retraining; the entry is replaced.
The recorded command names its output folder ``runs/NAME`` whatever folder the run used (it changes nothing else).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

import arclib
from arclib import data, metrics, pretrained, train

QUICK_IMAGES = 1000
MAX_BYTES = 2_000_000


def test_split(meta: dict, args: dict) -> torch.utils.data.Dataset:
    test = data.load(meta["dataset"], train=False, download=False)
    return data.select(test, meta.get("classes"), args.get("test_limit"))


def evaluate(model, loss, dataset) -> dict:
    loader = torch.utils.data.DataLoader(dataset, batch_size=500)
    emb, labels = train.embed(model, loader, "cpu")
    predictions = loss.predict(emb)
    correct = predictions == labels
    return {"test_accuracy": correct.float().mean().item(), "test_images": len(labels),
            "quick_accuracy": correct[:QUICK_IMAGES].float().mean().item(),
            "quick_images": min(QUICK_IMAGES, len(labels)),
            "angle_stats": metrics.angle_stats(emb, labels, loss.head.weight)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="shipped name, e.g. cifar10-arcface")
    parser.add_argument("run", type=Path, help="folder with checkpoint.pt and metrics.json")
    a = parser.parse_args(argv)
    run_metrics = json.loads((a.run / "metrics.json").read_text())
    if run_metrics.get("quick"):
        sys.exit(f"ship.py: {a.run} is a quick-mode run; ship only full runs")
    model, loss, meta = train.load_checkpoint(a.run / "checkpoint.pt")
    argv = shlex.split(run_metrics["command"])
    command = shlex.join(argv[:4] + pretrained.drop_options(argv[4:], ("--out",)) + ["--out", f"runs/{a.name}"])
    path = pretrained.export(model, loss, pretrained.DIR / f"{a.name}.pt",
                             meta={"name": a.name, "dataset": meta["dataset"], "classes": meta.get("classes"),
                                   "command": command})
    if path.stat().st_size > MAX_BYTES:
        sys.exit(f"ship.py: {path} is {path.stat().st_size:,} bytes, over the {MAX_BYTES:,} allowed per file")
    shipped_model, shipped_loss, _ = pretrained.load_file(path)
    result = evaluate(shipped_model, shipped_loss, test_split(meta, run_metrics["args"]))
    entry = {"file": path.name, "sha256": pretrained.sha256(path), "bytes": path.stat().st_size,
             "command": command, "dataset": meta["dataset"], "classes": meta.get("classes"),
             "loss": shipped_loss.name, "loss_hparams": shipped_loss.hparams(), "model": type(shipped_model).__name__,
             "model_config": shipped_model.config(), **result,
             "run_test_accuracy": run_metrics["test_accuracy"], "history": run_metrics["history"],
             "epochs": run_metrics["epochs"], "train_images": run_metrics["train_images"],
             "train_time_s": run_metrics["train_time_s"], "device": run_metrics["device"],
             "torch_threads": run_metrics["torch_threads"], "torch": run_metrics["torch"],
             "arclib_version": arclib.__version__}
    manifest = pretrained.manifest()
    manifest["models"][a.name] = entry
    manifest["models"] = dict(sorted(manifest["models"].items()))
    pretrained.MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{a.name}: {path.stat().st_size:,} bytes, test accuracy {100 * result['test_accuracy']:.2f} % "
          f"(run: {100 * run_metrics['test_accuracy']:.2f} %) on {result['test_images']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
