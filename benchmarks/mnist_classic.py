"""MNIST wall time on the CPU, as a Markdown table: arclib's ArcFace vs the classic PyTorch MNIST example.

The claim to check (issue): "MNIST on this 2-core CPU: ArcFace reaches >= 99.4 % in less wall time than the
classic PyTorch MNIST example (CE, Adadelta, batch 64) needs for 98.9 %".

- **Classic**: a faithful copy of github.com/pytorch/examples, ``mnist/main.py`` (its ``Net``, Adadelta
  lr = 1.0, StepLR(step_size=1, gamma=0.7), batch 64, test batch 1000, nll_loss on log_softmax). It trains
  epoch by epoch, is evaluated on the full 10,000 test images after every epoch, and stops at the first epoch
  whose test accuracy is >= ``--target`` (98.9 %) or after ``--max-epochs`` (14, the example's default).
- **ArcFace**: ``arclib.train.train_fresh("mnist", "arcface", 128, ...)`` with s = 30, m = 0.5 and batch 128.
  Its one-cycle schedule spans the run's epoch count, so an E-epoch run is not the first E epochs of a longer
  one: each E in ``--arcface-epochs`` is a fresh run of exactly E epochs.

"training wall s" excludes evaluation on both sides (the classic loop times it apart; for arclib, whose
``History.seconds`` includes the end-of-epoch evaluation, the evaluation calls are timed and subtracted);
"eval s" is the evaluation time spent up to that point. Both sides read the same MNIST tensors
(``arclib.data.load``: decoded once and normalised with the classic (0.1307,), (0.3081,)), so neither pays for
PIL decoding per image. Examples::

    python benchmarks/mnist_classic.py                       # classic to 98.9 % vs ArcFace for 2 and 3 epochs
    python benchmarks/mnist_classic.py --threads 2 --arcface-epochs 1 2 3
    python benchmarks/mnist_classic.py --quick               # a smoke run on tiny subsets
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from machine import describe  # benchmarks/machine.py, beside this script
from torch import nn
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, Dataset, Subset

import arclib.train
from arclib.data import load, loaders
from arclib.train import seed_everything, train_fresh

QUICK_TRAIN, QUICK_TEST, QUICK_MAX_EPOCHS = 512, 256, 2  # the sizes of ARCLIB_QUICK (arclib.data.loaders)


@dataclass
class Run:
    """One row of the table. ``curve``: (epoch, test accuracy, cumulative training s) after every epoch."""

    name: str
    epochs: int
    test_acc: float
    train_s: float
    eval_s: float
    target: float
    curve: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return self.test_acc >= self.target


# ---- (a) the classic example ------------------------------------------------------------------------------

class Net(nn.Module):
    """The network of github.com/pytorch/examples, mnist/main.py, unchanged (its forward, step by step)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def classic_train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer) -> None:
    """The example's ``train``: one pass over the training set (its logging left out)."""
    model.train()
    for data, target in loader:
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def classic_test(model: nn.Module, loader: DataLoader) -> float:
    """The example's ``test``: accuracy of the argmax over the whole test set."""
    model.eval()
    correct = sum(int((model(data).argmax(dim=1) == target).sum()) for data, target in loader)
    return correct / len(loader.dataset)


def run_classic(train_set: Dataset, test_set: Dataset, target: float, max_epochs: int, seed: int) -> Run:
    seed_everything(seed)  # the example's torch.manual_seed(args.seed), before the model is built
    model = Net()
    # The example shuffles with the global RNG; a generator of our own keeps the batches independent of how
    # many random numbers the model's initialisation happened to draw.
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True,
                              generator=torch.Generator().manual_seed(seed))
    test_loader = DataLoader(test_set, batch_size=1000)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    run = Run("classic example (CE, Adadelta, batch 64)", 0, 0.0, 0.0, 0.0, target)
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        classic_train_epoch(model, train_loader, optimizer)
        # after test() in the example; it only sets the next epoch's lr, so stepping it here changes nothing
        scheduler.step()
        run.train_s += time.perf_counter() - start
        start = time.perf_counter()
        run.test_acc = classic_test(model, test_loader)
        run.eval_s += time.perf_counter() - start
        run.epochs = epoch
        run.curve.append((epoch, run.test_acc, run.train_s))
        print(f"classic epoch {epoch}: test acc {100 * run.test_acc:.2f} %, training {run.train_s:.1f} s "
              f"(cumulative), eval {run.eval_s:.1f} s", file=sys.stderr, flush=True)
        if run.reached:
            break
    return run


# ---- (b) arclib's ArcFace ---------------------------------------------------------------------------------

@contextlib.contextmanager
def timed_evaluate(spent: list[float]):
    """Time every call of ``arclib.train.evaluate`` into ``spent``.

    ``fit`` measures an epoch's seconds from its first batch to after the test evaluation, so its
    ``History.seconds`` include evaluation; ``fit`` looks ``evaluate`` up in its module at each call, so a
    wrapper there sees exactly the evaluation it runs, and training time = epoch seconds − evaluation
    seconds.
    """
    original = arclib.train.evaluate

    def wrapper(*args, **kwargs) -> float:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    arclib.train.evaluate = wrapper
    try:
        yield
    finally:
        arclib.train.evaluate = original


def run_arcface(epochs: int, target: float, seed: int, quick: bool) -> Run:
    train_loader, test_loader = loaders("mnist", batch_size=128, quick=quick, seed=seed)
    eval_s: list[float] = []
    with timed_evaluate(eval_s):
        result = train_fresh("mnist", "arcface", 128, train_loader, test_loader,
                             loss_kw={"s": 30, "m": 0.5}, epochs=epochs, device="cpu", progress=False,
                             num_classes=10, seed=seed)
    history = result["history"]
    if len(eval_s) != len(history.seconds):  # fit changed how (or whether) it evaluates: refuse to guess
        raise RuntimeError(f"timed {len(eval_s)} evaluations for {len(history.seconds)} epochs")
    run = Run(f"arclib ArcFace (s 30, m 0.5, batch 128), {epochs}-epoch run", epochs, history.test_acc[-1],
              sum(history.seconds) - sum(eval_s), sum(eval_s), target)
    cumulative = 0.0
    for epoch, (acc, seconds, ev) in enumerate(zip(history.test_acc, history.seconds, eval_s), start=1):
        cumulative += seconds - ev
        run.curve.append((epoch, acc, cumulative))
    # train_fresh's own wall time adds the set-up (seeding, optimiser, scheduler) around fit's epochs
    print(f"arcface {epochs}-epoch run: test acc {100 * run.test_acc:.2f} %, training {run.train_s:.1f} s, "
          f"eval {run.eval_s:.1f} s (train_fresh wall {result['seconds']:.1f} s)",
          file=sys.stderr, flush=True)
    return run


# ---- report -----------------------------------------------------------------------------------------------

def table(runs: list[Run]) -> str:
    lines = ["| run | epochs | test accuracy | training wall s | eval s | reached target? |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in runs:
        lines.append(f"| {r.name} | {r.epochs} | {100 * r.test_acc:.2f} % | {r.train_s:.1f} | "
                     f"{r.eval_s:.1f} | {'yes' if r.reached else 'no'} (≥ {100 * r.target:.2f} %) |")
    lines.append("")
    for r in runs:
        curve = ", ".join(f"{e}: {100 * a:.2f} % @ {s:.1f} s" for e, a, s in r.curve)
        lines.append(f"- {r.name}, per epoch (test accuracy @ cumulative training s): {curve}")
    return "\n".join(lines)


def verdict(classic: Run, arcface: list[Run]) -> str:
    """Whether some ArcFace run reached its target in less training time than the classic run needed."""
    hits = [r for r in arcface if r.reached]
    if not hits:
        return f"Claim not shown: no ArcFace run reached {100 * arcface[0].target:.2f} %." if arcface else ""
    best = min(hits, key=lambda r: r.train_s)
    if not classic.reached:  # its time is then only a lower bound on what it needs for the target
        return (f"The classic example did not reach {100 * classic.target:.2f} % in {classic.epochs} epochs "
                f"({classic.train_s:.1f} s of training); ArcFace reached {100 * best.test_acc:.2f} % in "
                f"{best.train_s:.1f} s ({best.epochs} epochs).")
    holds = best.train_s < classic.train_s
    return (f"Claim {'holds' if holds else 'does not hold'}: ArcFace reached {100 * best.test_acc:.2f} % "
            f"(≥ {100 * best.target:.2f} %) in {best.train_s:.1f} s of training ({best.epochs} epochs); "
            f"the classic example needed {classic.train_s:.1f} s ({classic.epochs} epochs) for "
            f"{100 * classic.test_acc:.2f} % (≥ {100 * classic.target:.2f} %): "
            f"ratio {best.train_s / classic.train_s:.2f}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op CPU threads (both sides)")
    parser.add_argument("--target", type=float, default=98.9,
                        help="classic side: stop at this test accuracy (%%)")
    parser.add_argument("--arcface-target", type=float, default=99.4,
                        help="the ArcFace accuracy to reach (%%)")
    parser.add_argument("--max-epochs", type=int, default=14,
                        help="classic side: most epochs (the example's 14)")
    parser.add_argument("--arcface-epochs", type=int, nargs="+", default=[2, 3],
                        help="one fresh fixed-length ArcFace run per value")
    parser.add_argument("--seed", type=int, default=1, help="seed of both sides (the example's default is 1)")
    parser.add_argument("--skip-classic", action="store_true", help="only the ArcFace runs")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_TRAIN} train / {QUICK_TEST} test images, classic at most "
                             f"{QUICK_MAX_EPOCHS} epochs, ArcFace 1 epoch; checks the pipeline, not the "
                             "claim")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    max_epochs = min(args.max_epochs, QUICK_MAX_EPOCHS) if args.quick else args.max_epochs
    arcface_epochs = [1] if args.quick else args.arcface_epochs

    print("# MNIST on the CPU: ArcFace vs the classic PyTorch example\n")
    given = sys.argv[1:] if argv is None else argv
    print(f"Command: `python {shlex.join(['benchmarks/mnist_classic.py', *given])}`\n")
    print(describe())
    quick_note = "; QUICK: tiny subsets, the accuracies mean nothing" if args.quick else ""
    print(f"- seed {args.seed}; classic target {args.target:g} % (at most {max_epochs} epochs), "
          f"ArcFace target {args.arcface_target:g} %{quick_note}\n", flush=True)

    runs: list[Run] = []
    classic = None
    if not args.skip_classic:
        train_set, test_set = load("mnist", train=True), load("mnist", train=False)
        if args.quick:
            train_set, test_set = Subset(train_set, range(QUICK_TRAIN)), Subset(test_set, range(QUICK_TEST))
        classic = run_classic(train_set, test_set, args.target / 100, max_epochs, args.seed)
        runs.append(classic)
    arcface = [run_arcface(e, args.arcface_target / 100, args.seed, args.quick) for e in arcface_epochs]
    runs += arcface
    print(table(runs))
    if classic is not None:
        print("\n" + verdict(classic, arcface))
    return 0


if __name__ == "__main__":
    sys.exit(main())
