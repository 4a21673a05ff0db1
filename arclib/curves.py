"""Curves of a loss against the target angle θ: the target logit, its slope, and a two-class loss.

Every number here comes from the loss object itself (``loss.target_logit``, ``loss.forward``), never from a
re-typed formula, so the curves chapter plots exactly what the training chapters optimise.

The two-class ("binary") setting follows QAMFace (seed 004, Fig. 2 and 3): a feature x of class i at angle θ
from its centre W_i, a second centre W_j at a fixed angle δ = θ_ij from W_i, and all three vectors in one
plane. Where x sits in that plane decides its angle to W_j (``other_angle``):

- ``"far"``: x on the far side of W_i from W_j, so θ_j = θ + δ (wrapped to [0, π]). With δ = π/6 this is the
  placement that reproduces the paper's claims: ArcFace's loss *rises* as θ shrinks, QAMFace's falls.
- ``"near"``: x between the centres (then beyond W_j), so θ_j = |θ − δ|: at θ = δ the feature sits on W_j.

Plotting code imports matplotlib/ipywidgets lazily: they are optional (notebook) dependencies of arclib.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from arclib.losses import MarginLoss, make
from arclib.widgets import LivePicture, time_slider_updates  # noqa: F401 (re-exported)

PLACEMENTS = ("far", "near")


def _as_tensor(thetas) -> torch.Tensor:
    return torch.as_tensor(np.asarray(thetas, dtype=np.float64))


def target_logit_curve(loss: MarginLoss, thetas, scaled: bool = False, **condition) -> tuple[np.ndarray, np.ndarray]:
    """ψ(θ) and dψ/dθ at each θ, both from ``loss.target_logit`` (the slope by autograd).

    ``scaled=True`` returns the logit s·ψ(θ) and its slope instead. The slope is what back-propagation sees,
    so for ``tail="straight_through"`` it is NormFace's −sin θ although the value is cos(θ + m). ``condition``
    goes to ``target_logit``: AdaFace's curve depends on the sample's normalised norm, e.g. ``quality=-1``.
    """
    theta = _as_tensor(thetas).requires_grad_(True)
    value = loss.target_logit(theta, **condition)
    if not scaled:
        value = value / loss.s
    (slope,) = torch.autograd.grad(value.sum(), theta)
    return value.detach().numpy(), slope.numpy()


def other_angle(thetas, inter_angle: float = math.pi / 6, placement: str = "far") -> np.ndarray:
    """The angle θ_j between the feature and the other centre, for feature, W_i and W_j in one plane.

    With W_i at polar angle 0 and W_j at +δ, ``"far"`` puts x at −θ and ``"near"`` at +θ; the geodesic
    angle is then min(θ + δ, 2π − θ − δ) or |θ − δ|.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}; got {placement!r}")
    theta = np.asarray(thetas, dtype=np.float64)
    if placement == "far":
        return np.minimum(theta + inter_angle, 2 * math.pi - theta - inter_angle)
    return np.abs(theta - inter_angle)


def binary_cosines(thetas, inter_angle: float = math.pi / 6, placement: str = "far") -> torch.Tensor:
    """The (N, 2) cosine matrix [cos θ, cos θ_j] of the two-class setting; the target is column 0."""
    theta = np.asarray(thetas, dtype=np.float64)
    cos = np.stack([np.cos(theta), np.cos(other_angle(theta, inter_angle, placement))], axis=1)
    return torch.as_tensor(np.clip(cos, -1.0, 1.0))


@torch.no_grad()
def binary_loss_curve(loss: MarginLoss, thetas, inter_angle: float = math.pi / 6,
                      placement: str = "far") -> np.ndarray:
    """The per-sample loss of the two-class setting (module docstring) as the target angle θ moves.

    Computed by ``loss(cos, labels, reduction="none")``: the same forward pass as training, on cosines.
    """
    cos = binary_cosines(thetas, inter_angle, placement)
    labels = torch.zeros(cos.shape[0], dtype=torch.long)
    return loss(cos, labels, reduction="none").numpy()


# ---- interactive curves (matplotlib picture + ipywidgets sliders) -----------------------------------------

#: What the explorer compares: the cosine family shares one logit scale, so one s slider fits them all.
EXPLORER_LOSSES: tuple[tuple[str, dict, str], ...] = (
    ("normface", {}, "NormFace cos θ"),
    ("cosface", {"m": "m"}, "CosFace cos θ − m"),
    ("arcface", {"m": "m", "tail": "none"}, "ArcFace cos(θ + m), no tail"),
    ("arcface", {"m": "m"}, "ArcFace, continuous tail"),
)
_COLOURS = ("#1f77b4", "#2ca02c", "#d62728", "#ff7f0e")
#: The explorer's axes stay put while the sliders move (a curve's size then shows s), up to s = 64.
S_MAX, LOSS_RANGE = 64.0, (1e-4, 300.0)


def _explorer_losses(s: float, m: float) -> list[tuple[MarginLoss, str]]:
    out = []
    for name, params, label in EXPLORER_LOSSES:
        hp = {k: (m if v == "m" else v) for k, v in params.items()}
        out.append((make(name, s=s, **hp), label))
    return out


def _curve_data(s: float, m: float, inter_angle: float, thetas: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """(s·ψ, s·dψ/dθ, binary loss) for every explorer loss."""
    data = []
    for loss, _ in _explorer_losses(s, m):
        value, slope = target_logit_curve(loss, thetas, scaled=True)
        data.append((value, slope, binary_loss_curve(loss, thetas, inter_angle)))
    return data


def _curves_title(s: float, m: float) -> str:
    return f"Cosine-family curves at s = {s:.1f}, m = {m:.2f}"


class CurvePicture(LivePicture):
    """The target logit s·ψ(θ), its slope and the two-class loss (θ_ij = ``inter_angle``, far side) of NormFace,
    CosFace and ArcFace (with and without its tail), redrawn by an s slider and an m slider.

    A ``LivePicture``: a matplotlib figure published as PNG through a display handle, so it works in JupyterLab
    and Colab alike and a saved notebook shows its starting state. Fixed axes (logit and slope within ±64, the
    loss on a log scale) let the curves grow and shrink with s instead of the axes.
    """

    m_range = (0.0, 1.2, 0.05)

    def __init__(self, s: float = 64.0, m: float = 0.5, inter_angle: float = math.pi / 6, n: int = 361) -> None:
        self.inter_angle, self.thetas = inter_angle, np.linspace(0, math.pi, n)
        super().__init__(s, m)

    def build(self, s: float, m: float):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(12, 4.2), layout="constrained")
        axes = fig.subplots(1, 3)
        self.lines = []
        for k, (_, _, label) in enumerate(EXPLORER_LOSSES):
            style = {"color": _COLOURS[k], "ls": "--" if "no tail" in label else "-", "lw": 1.8, "animated": True,
                     "zorder": 3 if "no tail" in label else 2}
            self.lines.append([ax.plot(self.thetas, np.ones_like(self.thetas), label=label, **style)[0]
                               for ax in axes])
        for ax, title, ylabel in zip(axes, ("target logit s·ψ(θ)", "its slope s·dψ/dθ (autograd)",
                                            f"two-class loss, θ_ij = {self.inter_angle:.3f}, far side"),
                                     ("logit", "d logit / dθ", "loss (log scale)")):
            ax.set(xlabel="target angle θ (rad)", ylabel=ylabel, title=title, xlim=(0, math.pi))
            ax.grid(alpha=0.3)
        axes[0].set_ylim(-1.05 * S_MAX, 1.05 * S_MAX)
        axes[1].set_ylim(-1.05 * S_MAX, 0.3 * S_MAX)
        axes[2].set_yscale("log")
        axes[2].set_ylim(*LOSS_RANGE)
        fig.legend(handles=[row[0] for row in self.lines], loc="outside lower center", ncols=4, fontsize=9)
        self.title = fig.suptitle(" ", animated=True)
        return fig

    def update(self, s: float, m: float) -> None:
        self.s, self.m = s, m
        for row, values in zip(self.lines, _curve_data(s, m, self.inter_angle, self.thetas)):
            for line, y in zip(row, values):
                line.set_ydata(y)
        self.title.set_text(_curves_title(s, m))

    def status(self) -> str:
        return _curves_title(self.s, self.m)


def explore_curves(s: float = 64.0, m: float = 0.5, inter_angle: float = math.pi / 6) -> CurvePicture:
    """The curve explorer for every kernel (JupyterLab, Colab, ...): display the returned ``CurvePicture``."""
    return CurvePicture(s, m, inter_angle)
