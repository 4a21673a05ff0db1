"""Chapter 11 exercises: sub-centre cosines by hand, AdaFace's margin at one angle, the feature norm of degraded
images (predict, then measure), and AdaCos's fixed scale.

Reference values come from arclib's own losses and from the study arclib ships (``arclib.robust.study()``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from arclib import robust
from arclib.exercises import exercise, expect_number, expect_same_function
from arclib.losses import SubCenterHead, make


def _reference_subcentres(x: Tensor, weight: Tensor, k: int) -> Tensor:
    # arclib's own head, called with the given weight so that gradients reach it too
    head = SubCenterHead(x.shape[1], weight.shape[0] // k, k).to(weight.dtype)
    return torch.func.functional_call(head, {"weight": weight}, (x,))


def _subcentre_inputs() -> list[tuple]:
    g = torch.Generator().manual_seed(11)
    return [(torch.randn(6, 8, generator=g, dtype=torch.float64),
             torch.randn(4 * 3, 8, generator=g, dtype=torch.float64), 3),
            (torch.randn(5, 3, generator=g, dtype=torch.float64) * 7,
             torch.randn(2 * 5, 3, generator=g, dtype=torch.float64) / 3, 5)]


@exercise("11.1", "sub-centre cosines by hand")
def subcentre_cosines(answer) -> str:
    expect_same_function(
        answer, _reference_subcentres, _subcentre_inputs(), what="your subcentre_cosines(x, weight, k)",
        mistakes={
            "that takes the mean over each class's sub-centres; the paper takes the largest (the nearest)":
                lambda x, w, k: (F.normalize(x, dim=1) @ F.normalize(w, dim=1).T).view(len(x), -1, k).mean(dim=2),
            "that groups the rows k-th by k-th (row j + C·i); arclib's W is class by class (row j·k + i)":
                lambda x, w, k: (F.normalize(x, dim=1) @ F.normalize(w, dim=1).T).view(len(x), k, -1).max(dim=1).values,
            "that forgets to normalise: it compares dot products, not cosines":
                lambda x, w, k: (x @ w.T).view(len(x), -1, k).max(dim=2).values,
        },
        hint="normalise x and the rows of W, take every cosine (N, C·k), view it as (N, C, k) and keep the largest")
    return "each class is scored by its nearest sub-centre: a mislabelled sample can sit on a sub-centre of its own"


@exercise("11.2", "AdaFace's margin for a poor image")
def adaface_poor_image(answer) -> str:
    loss = make("adaface", s=16.0, m=0.4)
    theta = math.radians(60)
    expected = float(loss.target_logit(torch.tensor(theta, dtype=torch.float64), quality=-1.0))
    expect_number(answer, expected, what="the target logit", digits=3, mistakes={
        "that is ẑ = +1 (a high norm); a poor image has a low norm, ẑ = −1": float(
            loss.target_logit(torch.tensor(theta, dtype=torch.float64), quality=1.0)),
        "that is CosFace's logit (ẑ = 0)": 16 * (math.cos(theta) - 0.4),
        "that is ψ without the scale s = 16": expected / 16,
        "that adds the margin in degrees, not radians": 16 * math.cos(math.radians(60 + 0.4)),
    }, hint="with ẑ = −1, g_angle = +m and g_add = 0: s·cos(θ + m), θ in radians")
    return "for a low-norm sample AdaFace is ArcFace, and its pull fades for hard (large-angle) samples"


@exercise("11.3", "the feature norm of a degraded image")
def norm_ratio(answer) -> str:
    entry = next(r for r in robust.study()["runs"] if r["run"] == robust.study()["models"][
        "family-quality-adaface"]["run"])
    means = entry["quality"]["norm_mean"]
    expected = means[3] / means[0]
    expect_number(answer, expected, what="the ratio of mean norms", digits=2, mistakes={
        "that is level 0 over level 3; the question asks level 3 over level 0": means[0] / means[3],
        "that is level 1 (14×14) over level 0, not level 3 (7×7)": means[1] / means[0],
    }, hint="robust.quality_report(model, loss, test) gives norm_mean per level: divide level 3's by level 0's")
    return ("the network was never told which images were degraded, yet their features come out shorter: that is "
            "the proxy AdaFace reads" if expected < 1 else
            "here the degraded images do not come out shorter: the norm would be a poor proxy of quality")


@exercise("11.4", "AdaCos's fixed scale for 1,000 classes")
def adacos_fixed_scale(answer) -> str:
    expected = make("adacos", num_classes=1000).s
    expect_number(answer, expected, what="s", digits=3, mistakes={
        "that uses log base 10; the formula uses the natural logarithm": math.sqrt(2) * math.log10(999),
        "that forgets the √2": math.log(999),
        "that is C = 10, the chapter's MNIST": math.sqrt(2) * math.log(9),
    }, hint="√2 · ln(C − 1) with C = 1000")
    return "about 9.8: more classes need a larger s before the softmax can make p_y close to 1"
