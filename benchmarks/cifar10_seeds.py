"""CIFAR-10, chapter 04's comparison made fair: softmax, NormFace and the margin losses over three seeds, so that
normalising, then adding a margin, is measured on its own and against the spread the seed alone makes.

Every run is ``python -m arclib train`` on chapter 04's short budget (15,000 training images, 5 epochs,
augmentation, CifarResNet width 16, 128-D, SGD one-cycle to lr 0.1, weight decay 5e-4, one-epoch margin warm-up for
the margin losses) with ``--seed`` 0, 1, 2: the seed fixes the network's initial weights, the class centres, the
15,000 images and the batches, the same for every loss at that seed. A finished run's figures go to
``benchmarks/cifar10_seeds/<run>.json``; its checkpoint (for ``--resume``) to ``runs/cifar10-seeds/<run>/``.
Finished runs are skipped, so the same command continues an interrupted study.

    python benchmarks/cifar10_seeds.py --workers 2        # the grid
    python benchmarks/cifar10_seeds.py --report           # benchmarks/cifar10_seeds.md and arclib's copy
    python benchmarks/cifar10_seeds.py --quick            # a smoke run (quick mode, into a temp folder)

Data: ``$ARCLIB_DATA`` holds ``cifar-10-batches-py`` (``ARCLIB_CIFAR10_CHECKSUMS=offline-mirror`` for the mirror).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the shared helpers in benchmarks/machine.py
from machine import write_result  # noqa: E402

RESULTS = HERE / "cifar10_seeds"
RUNS = HERE.parent / "runs" / "cifar10-seeds"

S = 16.0  # chapter 04's scale, the same for every cosine loss
RECIPE = ["--data", "cifar10", "--width", "16", "--embedding-dim", "128", "--augment", "--train-limit", "15000",
          "--epochs", "5", "--threads", "1", "--no-progress"]
#: label -> the options that differ between the losses (everything else is RECIPE)
LOSSES = {
    "softmax": ["--loss", "softmax"],
    "normface": ["--loss", "normface", "--s", f"{S:g}"],
    "cosface": ["--loss", "cosface", "--s", f"{S:g}", "--m", "0.35", "--margin-warmup", "1"],
    "arcface": ["--loss", "arcface", "--s", f"{S:g}", "--m", "0.5", "--margin-warmup", "1"],
}
SEEDS = (0, 1, 2)


def grid(labels: tuple[str, ...] = tuple(LOSSES)) -> list[dict]:
    return [{"run": f"{label}-seed{seed}", "label": label, "seed": seed,
             "argv": RECIPE + LOSSES[label] + ["--seed", str(seed)]} for seed in SEEDS for label in labels]


def run_one(spec: dict, results: Path = RESULTS, runs: Path = RUNS, quick: bool = False) -> dict | None:
    out = results / f"{spec['run']}.json"
    if out.exists():
        return json.loads(out.read_text())
    folder = runs / spec["run"]
    argv = [sys.executable, "-m", "arclib", "train", *spec["argv"], "--out", str(folder)]
    if quick:
        argv.append("--quick")
    if (folder / "checkpoint.pt").is_file() and not (folder / "metrics.json").is_file():
        argv += ["--resume", str(folder / "checkpoint.pt")]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=HERE.parent, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{spec['run']}: FAILED\n{done.stderr[-2000:]}", flush=True)
        return None
    m = json.loads((folder / "metrics.json").read_text())
    h, a = m["history"], m["angle_stats"]
    result = {"run": spec["run"], "label": spec["label"], "seed": spec["seed"],
              "command": "python -m arclib train " + " ".join(spec["argv"]),
              "test_accuracy": 100 * m["test_accuracy"], "train_accuracy": 100 * h["train_acc"][-1],
              "test_accuracy_per_epoch": [100 * v for v in h["test_acc"]],
              "own_angle": a["intra"], "nearest_other_centre": a["to_nearest_other_centre"],
              "centre_angle_min": a["inter_centre_min"], "centre_angle_mean": a.get("inter_centre_mean"),
              "train_seconds": m["train_time_s"], "wall_seconds": time.perf_counter() - start,
              "torch": m["torch"]}
    write_result(out, result)
    print(f"{spec['run']}: {result['test_accuracy']:.2f} % ({result['train_seconds'] / 60:.1f} min)", flush=True)
    return result


# ---- the report --------------------------------------------------------------------------------------------

METRICS = (("test_accuracy", "test accuracy %", 2), ("train_accuracy", "train accuracy %", 2),
           ("own_angle", "test images to own centre °", 1), ("centre_angle_min", "closest two centres °", 1))


def load_results(results: Path = RESULTS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]


def summary(rows: list[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{label: {metric: (mean, sample standard deviation over seeds, seeds)}}."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for label in LOSSES:
        mine = [r for r in rows if r["label"] == label]
        if not mine:
            continue
        out[label] = {}
        for metric, _, _ in METRICS:
            values = [r[metric] for r in mine]
            out[label][metric] = (statistics.fmean(values),
                                  statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
    return out


def report(results: Path = RESULTS) -> str:
    sys.path.insert(0, str(HERE))
    from machine import describe

    rows = load_results(results)
    cells = summary(rows)
    head = "| loss | seeds | " + " | ".join(h for _, h, _ in METRICS) + " |"
    table = [head, "|" + "---|" * (2 + len(METRICS))]
    for label, c in cells.items():
        n = c["test_accuracy"][2]
        table.append(f"| {label} | {n} | " + " | ".join(f"{c[m][0]:.{p}f} ± {c[m][1]:.{p}f}" for m, _, p in METRICS)
                     + " |")
    per_seed = ["| loss | " + " | ".join(f"seed {s}" for s in SEEDS) + " |", "|" + "---|" * (1 + len(SEEDS))]
    for label in cells:
        by_seed = {r["seed"]: r["test_accuracy"] for r in rows if r["label"] == label}
        per_seed.append(f"| {label} | " + " | ".join(f"{by_seed[s]:.2f} %" if s in by_seed else "—" for s in SEEDS)
                        + " |")
    commands = [f"    {r['command']} --out runs/cifar10-seeds/{r['run']}" for r in rows if r["seed"] == 0]
    minutes = sum(r["train_seconds"] for r in rows) / 60
    return "\n".join([
        "# CIFAR-10 over three seeds: " + ", ".join(cells) + " (chapter 04)", "",
        "Generated by `python benchmarks/cifar10_seeds.py --report` from `benchmarks/cifar10_seeds/*.json`; the runs:",
        "`python benchmarks/cifar10_seeds.py --workers 2`. Chapter 04's short budget: CifarResNet width 16, 128-D,",
        "15,000 training images, 5 epochs, augmentation, SGD one-cycle to lr 0.1, weight decay 5e-4, batch 128; the",
        "full 10,000 test images. The seed fixes the initial weights, the class centres, the 15,000 images and the",
        "batches — the same for every loss at a seed. What differs between rows:", "",
        "- softmax → NormFace: the normalisation of x and W, the scale s = 16, no bias;",
        "- NormFace → CosFace / ArcFace (where run): the margin alone (m = 0.35 on the cosine / m = 0.5 on the",
        "  angle, grown linearly from 0 over the first epoch), at the same s.", "",
        "Mean ± sample standard deviation over the seeds:", "", *table, "",
        "Test accuracy per seed:", "", *per_seed, "",
        "The commands at seed 0 (seeds 1 and 2: `--seed 1`, `--seed 2`):", "", *commands, "",
        f"{len(rows)} runs, {minutes:.0f} CPU-minutes of training (one thread per run, another training run beside it).", "",
        "Machine:", describe(), ""])


def ship(results: Path = RESULTS) -> Path:
    """Write the runs' figures into arclib (``arclib.pretrained.recorded_study("cifar10-seeds")`` reads them), so
    chapter 04 draws its seed table from the same numbers on any machine."""
    from arclib import pretrained

    rows = load_results(results)
    out = pretrained.DIR / pretrained.STUDIES["cifar10-seeds"]
    study = {"runs": rows, "commands": ["python benchmarks/cifar10_seeds.py --workers 2",
                                        "python benchmarks/cifar10_seeds.py --report"],
             "cpu_minutes": round(sum(r["train_seconds"] for r in rows) / 60, 1)}
    out.write_text(json.dumps(study, indent=1, sort_keys=True) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--losses", nargs="+", choices=tuple(LOSSES), default=tuple(LOSSES), help="run only these losses")
    p.add_argument("--quick", action="store_true", help="seed 0 of softmax and ArcFace in quick mode, temp dir")
    p.add_argument("--report", action="store_true",
                   help="write benchmarks/cifar10_seeds.md and arclib/checkpoints/CIFAR10_SEEDS.json")
    args = p.parse_args(argv)
    if args.quick:
        tmp = Path(tempfile.mkdtemp(prefix="cifar10-seeds-quick-"))
        for spec in grid(("softmax", "arcface"))[:2]:
            if run_one(spec, tmp / "results", tmp / "runs", quick=True) is None:
                raise SystemExit(f"{spec['run']} failed")
        print(report(tmp / "results"))
        return
    if args.report:
        (HERE / "cifar10_seeds.md").write_text(report())
        print(f"wrote {HERE / 'cifar10_seeds.md'} and {ship()}")
        return
    specs = [s for s in grid(tuple(args.losses)) if not (RESULTS / f"{s['run']}.json").exists()]
    print(f"{len(specs)} runs to go", flush=True)
    if args.workers <= 1:
        for s in specs:
            run_one(s)
    else:
        with mp.get_context("fork").Pool(args.workers) as pool:
            for _ in pool.imap(run_one, specs):
                pass


if __name__ == "__main__":
    main()
