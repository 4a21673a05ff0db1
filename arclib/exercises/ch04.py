"""Chapter 04 — CIFAR-10: the warm-up length, what the margin costs, AdaCos's scale, losses at two scales, and who
clears the margin in a collapsed run (predict, then measure)."""

from __future__ import annotations

import math

import torch

from arclib import data, losses, metrics, pretrained, train
from arclib.exercises import exercise, expect_number, expect_prediction

#: the chapter's recipe: 50,000 images, batch 128 (the last partial batch dropped), 15 epochs of one-cycle
IMAGES, BATCH, EPOCHS = 50_000, 128, 15


def _peak_epoch(pct_start: float | None = None) -> float:
    """The epoch (a float) at which ``fit``'s one-cycle learning rate peaks, read off the scheduler itself."""
    steps_per_epoch = IMAGES // BATCH
    total = EPOCHS * steps_per_epoch
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    if pct_start is None:
        sched = train.make_scheduler(opt, "onecycle", 0.1, total)
    else:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total, pct_start=pct_start)
    rates = []
    for _ in range(total):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak_step = max(range(total), key=rates.__getitem__)
    return peak_step / steps_per_epoch


@exercise("04.1", "what warm-up length")
def warmup_length(answer) -> str:
    peak = _peak_epoch()
    expect_number(answer, peak, what="the warm-up length", digits=3,
                  mistakes={"that is PyTorch's default pct_start (0.3); read make_scheduler for fit's": _peak_epoch(0.3),
                            "that is in optimiser steps; the question asks for epochs": peak * (IMAGES // BATCH),
                            "that is the share of the run, not a number of epochs": peak / EPOCHS},
                  hint="find where the one-cycle schedule reaches its peak learning rate (make_scheduler in "
                       "arclib/train.py), as a share of the run, then convert to epochs")
    return "a warm-up that ends near the learning-rate peak; the chapter's 3 epochs end a little before it"


@exercise("04.2", "what the margin costs at 60°")
def margin_cost(answer) -> str:
    arc = losses.make("arcface", s=16, m=0.5)
    theta = torch.tensor([math.radians(60.0)])
    expected = (arc.target_logit(theta) / arc.s - torch.cos(theta)).item()
    expect_number(answer, expected, what="the margin cost", digits=3,
                  mistakes={"m = 0.5 is in radians, not degrees": math.cos(math.radians(60.5)) - 0.5,
                            "the margin is added to the angle, not subtracted": math.cos(math.radians(60) - 0.5) - 0.5,
                            "that is the target logit divided by s, not its difference from cos θ":
                                math.cos(math.radians(60) + 0.5),
                            "divide by s: the cost is measured before the scale": 16 * expected},
                  hint="ψ(θ) − cos θ with ψ(θ) = cos(θ + m), both at θ = 60°")
    return "nearly half a unit of cosine: at wide angles the margin is expensive, on the centre it costs 1 − cos m"


@exercise("04.3", "AdaCos's scale for five classes")
def adacos_scale(answer) -> str:
    classes = 5
    expected = math.sqrt(2) * math.log(classes - 1)
    expect_number(answer, expected, what="the scale", digits=3,
                  mistakes={"the formula has C − 1, the number of other classes": math.sqrt(2) * math.log(classes),
                            "ln is the natural logarithm": math.sqrt(2) * math.log10(classes - 1),
                            "the √2 is missing": math.log(classes - 1)},
                  hint="s̃ = √2 · ln(C − 1)")
    return "a recommended fixed scale for few classes; the chapter trains at s = 16, well above it"


@exercise("04.4", "the same geometry at two scales")
def loss_at_two_scales(answer) -> str:
    degrees = torch.tensor([[60.0] + [75.0] * 9], dtype=torch.float64)
    cos, target = torch.cos(torch.deg2rad(degrees)), torch.tensor([0])
    at_16 = losses.make("normface", s=16)(cos, target).item()
    expected = losses.make("normface", s=32)(cos, target).item()
    expect_number(answer, expected, what="the loss at s = 32", decimals=3,
                  mistakes={"that is the loss at s = 16: the scale changes the loss of the same geometry": at_16,
                            "doubling s does not double the loss: it doubles every logit inside the softmax":
                                2 * at_16},
                  hint="logits s·cos θ_j for all ten classes, then −log of the target's softmax probability")
    return "same angles, a loss many times smaller: compare losses only at the same s"


#: exercise 04.5 looks at the first 2,000 test images: seconds for a ResNet on a CPU
MARGIN_IMAGES = 2000


def cleared_margin(name: str, images: int = MARGIN_IMAGES) -> tuple[float, float]:
    """(share that clears the margin, accuracy), both in %, of the shipped CIFAR-10 model ``name`` on the first
    ``images`` test images. An image clears ArcFace's margin when θ_y + m is below its angle to every other centre:
    the condition the loss trains for."""
    from torch.utils.data import DataLoader, Subset

    model, loss, _ = pretrained.load(name)
    test = Subset(data.load("cifar10", train=False), range(images))
    x, labels = train.embed(model, DataLoader(test, batch_size=500), "cpu")
    own, others = metrics.angles_to_centres(x, labels, loss.head.weight)
    margin = math.degrees(loss.m)
    return 100 * float((own + margin < others).float().mean()), 100 * float((own < others).float().mean())


def _cleared_outcome(cleared: float, accuracy: float) -> str:
    return "c" if cleared < accuracy / 4 else ("b" if cleared < 0.75 * accuracy else "a")


@exercise("04.5", "who clears the margin in a collapsed run (predict, then measure)")
def collapsed_margin(answer) -> str:
    choices = {"a": "about as many as it classifies correctly", "b": "about half of those", "c": "almost none"}
    cleared, accuracy, verdict = expect_prediction(
        answer, choices, lambda: cleared_margin("cifar10-short-arcface"), _cleared_outcome,
        decimals=2, what="the share that clears the margin (in %)",
        hint="per image: θ_y from its own centre, the smallest θ_j over the other centres, and count θ_y + m < that")
    warm_cleared, warm_accuracy = cleared_margin("cifar10-short-arcface-warmup")
    note = (f"{cleared:.2f} % clear the margin, {accuracy:.2f} % are classified correctly — {verdict}. The run "
            f"with the one-epoch warm-up (otherwise the same recipe and seed): {warm_cleared:.2f} % and "
            f"{warm_accuracy:.2f} %.")
    if _cleared_outcome(cleared, accuracy) == "c":
        note += (" The collapsed run classifies by a thin lead and almost never meets the margin it trains for, so "
                 "nearly every image is still being pushed")
    return note
