"""Small matplotlib helpers the notebooks share: arrows in the plane, the binary decision picture in the
(θ1, θ2) angle plane, a box-and-arrow flow diagram, and a slider-driven figure.

Each helper draws on an ``Axes`` it is given (or returns a handle) and computes nothing a loss does not
already define: the decision picture calls the loss's own ``target_logit`` and ``other_logit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["arrows", "angle_arc", "margin_boundary", "binary_decision", "flow_diagram", "live_figure",
           "plot_embedding_2d", "centre_angles", "angle_histogram", "plot_histories", "metric_against_classes"]


# ---- vectors in the plane -------------------------------------------------------------------------------
def arrows(ax, vectors: Sequence[Sequence[float]], labels: Sequence[str] | None = None,
           colors: Sequence[str] | None = None, distances: Sequence[tuple[int, int]] = (),
           pad: float = 0.15):
    """Draw 2-D vectors as arrows from the origin; ``distances`` lists index pairs (i, j) whose tips are
    joined by a dashed segment labelled with the Euclidean distance ‖v_i − v_j‖. Equal aspect, origin shown."""
    vecs = [np.asarray(v, dtype=float) for v in vectors]
    if any(v.shape != (2,) for v in vecs):
        raise ValueError("arrows draws 2-D vectors: every vector must have shape (2,)")
    labels = list(labels) if labels is not None else [f"v{i}" for i in range(len(vecs))]
    colors = list(colors) if colors is not None else [f"C{i}" for i in range(len(vecs))]
    for v, label, color in zip(vecs, labels, colors):
        ax.annotate("", xy=v, xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=2, shrinkA=0, shrinkB=0))
        ax.plot(*v, "o", color=color, ms=4, label=f"{label} = [{v[0]:.4g}, {v[1]:.4g}]")
    for i, j in distances:
        (x0, y0), (x1, y1) = vecs[i], vecs[j]
        ax.plot([x0, x1], [y0, y1], "--", color="0.4", lw=1)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f" {np.linalg.norm(vecs[i] - vecs[j]):.2f}", color="0.25",
                ha="left", va="top", fontsize=9)
    allv = np.vstack(vecs + [np.zeros(2)])
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    span = max(hi - lo) * pad
    ax.set_xlim(lo[0] - span, hi[0] + span)
    ax.set_ylim(lo[1] - span, hi[1] + span)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    ax.axvline(0, color="0.8", lw=0.8, zorder=0)
    ax.grid(alpha=0.3)
    return ax


def angle_arc(ax, u: Sequence[float], v: Sequence[float], radius: float, color: str = "k", label: str | None = None):
    """Mark the angle between 2-D vectors u and v with an arc of the given radius, labelled in degrees
    (or with ``label``). Returns the angle in degrees."""
    a, b = (math.atan2(w[1], w[0]) for w in (u, v))
    if b < a:
        a, b = b, a
    if b - a > math.pi:  # take the short way round
        a, b = b, a + 2 * math.pi
    t = np.linspace(a, b, 50)
    ax.plot(radius * np.cos(t), radius * np.sin(t), color=color, lw=1.2)
    deg = math.degrees(b - a)
    mid = (a + b) / 2
    ax.text(1.12 * radius * math.cos(mid), 1.12 * radius * math.sin(mid), label or f"{deg:.2f}°",
            color=color, fontsize=9, ha="left", va="center")
    return deg


# ---- the binary decision picture in the angle plane -----------------------------------------------------
def _logit_pair(loss, theta1: torch.Tensor, theta2: torch.Tensor, norms, biases):
    with torch.no_grad():
        z_target = norms[0] * loss.target_logit(theta1) + biases[0]
        z_other = norms[1] * loss.other_logit(theta2) + biases[1]
    return z_target, z_other


def margin_boundary(loss, theta2: float, n: int = 20001, norms=(1.0, 1.0), biases=(0.0, 0.0)) -> float:
    """The target angle θ1 at which a class-1 sample stops winning with margin, for a fixed other-class angle θ2:
    the smallest θ1 in [0, π] with target_logit(θ1) ≤ other_logit(θ2) (linear interpolation on an n-point grid).
    NaN if class 1 wins over the whole range, 0 if it never wins."""
    theta1 = torch.linspace(0, math.pi, n, dtype=torch.float64)
    z1, z2 = _logit_pair(loss, theta1, torch.full_like(theta1, float(theta2)), norms, biases)
    f = (z1 - z2).numpy()
    below = np.nonzero(f <= 0)[0]
    if below.size == 0:
        return float("nan")
    k = int(below[0])
    if k == 0:
        return 0.0
    t = theta1.numpy()
    return float(t[k - 1] + (t[k] - t[k - 1]) * f[k - 1] / (f[k - 1] - f[k]))


def binary_decision(ax, loss, title: str | None = None, norms=(1.0, 1.0), biases=(0.0, 0.0), n: int = 361,
                    colors=("C0", "C1")):
    """The binary picture of the ArcFace paper (its Fig. 5) in the (θ1, θ2) plane, in degrees.

    A sample of class 1 is classified with margin where ``target_logit(θ1) > other_logit(θ2)``; a sample of class
    2 where ``target_logit(θ2) > other_logit(θ1)``. Both regions are shaded, the two boundaries drawn dashed, and
    the grey band between them is the margin. ``norms`` and ``biases`` (‖W_j‖‖x‖ and b_j) only matter for the
    unnormalised softmax. Returns the boolean grids (class 1 region, class 2 region).
    """
    t = torch.linspace(0, math.pi, n, dtype=torch.float64)
    t1, t2 = torch.meshgrid(t, t, indexing="xy")  # t1 varies along x, t2 along y
    z1, z2 = _logit_pair(loss, t1, t2, norms, biases)
    win1 = (z1 - z2).numpy()
    z1b, z2b = _logit_pair(loss, t2, t1, norms[::-1], biases[::-1])
    win2 = (z1b - z2b).numpy()
    deg = np.degrees(t.numpy())
    ax.contourf(deg, deg, (win1 > 0).astype(float), levels=[0.5, 1.5], colors=[colors[0]], alpha=0.25)
    ax.contourf(deg, deg, (win2 > 0).astype(float), levels=[0.5, 1.5], colors=[colors[1]], alpha=0.25)
    margin = (win1 <= 0) & (win2 <= 0)
    if margin.any():
        ax.contourf(deg, deg, margin.astype(float), levels=[0.5, 1.5], colors=["0.6"], alpha=0.45)
    ax.contour(deg, deg, win1, levels=[0], colors=[colors[0]], linestyles="--", linewidths=1.5)
    ax.contour(deg, deg, win2, levels=[0], colors=[colors[1]], linestyles="--", linewidths=1.5)
    ax.plot([0, 180], [0, 180], ":", color="0.3", lw=0.8)
    ax.set_xlim(0, 180)
    ax.set_ylim(0, 180)
    ax.set_aspect("equal")
    ax.set_xticks([0, 45, 90, 135, 180])
    ax.set_yticks([0, 45, 90, 135, 180])
    ax.set_xlabel("θ1 (degrees)")
    ax.set_ylabel("θ2 (degrees)")
    if title:
        ax.set_title(title, fontsize=10)
    return win1 > 0, win2 > 0


# ---- a box-and-arrow diagram ----------------------------------------------------------------------------
def flow_diagram(ax, boxes: Sequence[tuple[str, str]], ncols: int = 3, box_w: float = 0.8, box_h: float = 0.62,
                 colors: Sequence[str] | None = None, fontsize: int = 9):
    """Draw ``boxes`` — (heading, body) pairs — as rounded boxes read left to right, row after row (a snake:
    every other row runs right to left so each arrow stays short), with an arrow from each box to the next."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if not boxes:
        raise ValueError("flow_diagram needs at least one box")
    nrows = math.ceil(len(boxes) / ncols)
    centres = []
    for k in range(len(boxes)):
        row, col = divmod(k, ncols)
        if row % 2:
            col = ncols - 1 - col
        centres.append((col + 0.5, nrows - row - 0.5))
    colors = list(colors) if colors is not None else ["#dbe9f6"] * len(boxes)
    for (heading, body), (cx, cy), color in zip(boxes, centres, colors):
        ax.add_patch(FancyBboxPatch((cx - box_w / 2, cy - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.02,rounding_size=0.05", fc=color, ec="0.3", lw=1))
        ax.text(cx, cy + box_h / 2 - 0.06, heading, ha="center", va="top", fontsize=fontsize, fontweight="bold")
        ax.text(cx, cy - 0.04, body, ha="center", va="center", fontsize=fontsize - 1, family="monospace")
    for (x0, y0), (x1, y1) in zip(centres, centres[1:]):
        if y0 == y1:
            sgn = 1 if x1 > x0 else -1
            start, end = (x0 + sgn * box_w / 2, y0), (x1 - sgn * box_w / 2, y1)
        else:
            start, end = (x0, y0 - box_h / 2), (x1, y1 + box_h / 2)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="0.2", lw=1.3))
    ax.set_xlim(0, ncols)
    ax.set_ylim(0, nrows)
    ax.set_axis_off()
    return centres


# ---- a figure redrawn from sliders ----------------------------------------------------------------------
def live_figure(draw: Callable[..., object], **controls):
    """Show ipywidgets ``controls`` and the matplotlib figure ``draw(**values)`` returns; moving a control redraws it.

    The figure is an ordinary display output updated through its display id (not an ``interact`` Output
    widget), so a notebook executed headless keeps the picture at the controls' starting values in its saved
    outputs — what GitHub, nbviewer and an HTML export show — and a live kernel (JupyterLab, Colab) redraws it.
    Returns the display handle.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    if not controls:
        raise ValueError("live_figure needs at least one control, e.g. scale=FloatSlider(...)")

    def render():
        fig = draw(**{name: c.value for name, c in controls.items()})
        plt.close(fig)  # shown through the handle only, never a second time by the inline backend
        return fig

    display(widgets.VBox(list(controls.values())))
    handle = display(render(), display_id=True)

    def redraw(_change):
        handle.update(render())

    for c in controls.values():
        c.observe(redraw, names="value")
    return handle


# ---- trained embeddings (chapter 03) --------------------------------------------------------------------
def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def plot_embedding_2d(ax, emb, labels, centres, normalise: bool = False, max_points: int = 3000,
                      jitter: float = 0.04, seed: int = 0, title: str | None = None, s: float = 3.0):
    """The classic picture of a 2-D embedding: points coloured by class, class centres W as arrows.

    ``normalise=False`` draws the raw features, and the centres' *directions* as arrows scaled to the 95th
    percentile of the feature norms (their lengths live in a different space). ``normalise=True`` puts every
    feature on the unit circle (radius 1 ± ``jitter``, uniform, so that dense stretches show as thick ones)
    with unit-length centre arrows: only angles remain. At most ``max_points`` points (a fixed random subset).
    Returns the points drawn, shape (n, 2).
    """
    x, y, w = _numpy(emb), _numpy(labels).astype(int), _numpy(centres)
    if x.ndim != 2 or x.shape[1] != 2 or w.ndim != 2 or w.shape[1] != 2:
        raise ValueError(f"plot_embedding_2d draws 2-D embeddings: got emb {x.shape}, centres {w.shape}")
    if len(x) != len(y):
        raise ValueError(f"emb and labels differ in length: {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        keep = np.sort(rng.choice(len(x), max_points, replace=False))
        x, y = x[keep], y[keep]
    directions = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    if normalise:
        r = 1.0 + rng.uniform(-jitter, jitter, len(x)) if jitter > 0 else np.ones(len(x))
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) * r[:, None]
        length = 1.0
        t = np.linspace(0, 2 * np.pi, 361)
        ax.plot(np.cos(t), np.sin(t), color="0.75", lw=0.8, zorder=0)
    else:
        length = float(np.percentile(np.linalg.norm(x, axis=1), 95)) if len(x) else 1.0
    cmap = _cmap("tab10")
    ax.scatter(x[:, 0], x[:, 1], c=[cmap(k % 10) for k in y], s=s, alpha=0.6, linewidths=0, rasterized=True)
    for k, d in enumerate(directions):
        tip = d * length
        ax.annotate("", xy=tip, xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color="k", lw=1.6, shrinkA=0, shrinkB=0))
        ax.annotate("", xy=tip, xytext=(0, 0),
                    arrowprops=dict(arrowstyle="-|>", color=cmap(k % 10), lw=0.9, shrinkA=0, shrinkB=0))
        ax.text(*(tip * 1.13), str(k), ha="center", va="center", fontsize=8, fontweight="bold", color=cmap(k % 10))
    lim = 1.25 * max(length, float(np.abs(x).max()) if len(x) else 1.0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return x


def embedding_sample(emb, labels, centres, dim: int, max_points: int, seed: int, what: str):
    """(points, labels, centres) as numpy arrays, checked to be ``dim``-D and of one length, and at most
    ``max_points`` points (a fixed random subset in their original order): what every embedding picture draws."""
    x, y, w = _numpy(emb), _numpy(labels).astype(int), _numpy(centres)
    if x.ndim != 2 or x.shape[1] != dim or w.ndim != 2 or w.shape[1] != dim:
        raise ValueError(f"{what} draws {dim}-D embeddings: got emb {x.shape}, centres {w.shape}")
    if len(x) != len(y):
        raise ValueError(f"emb and labels differ in length: {len(x)} and {len(y)}")
    if len(x) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x, y = x[keep], y[keep]
    return x, y, w


def plot_embedding_sphere(ax, emb, labels, centres, max_points: int = 2000, seed: int = 0,
                          title: str | None = None, s: float = 3.0, view: tuple[float, float] = (20.0, 35.0)):
    """The static picture of a 3-D embedding on a matplotlib 3-D axis (``projection="3d"``): every feature
    normalised onto the unit sphere, coloured by class, the unit class centres as numbered spokes, seen from
    ``view`` = (elevation, azimuth) in degrees. What GitHub and print show where ``sphere.embedding_figure`` (plotly)
    needs JavaScript. At most ``max_points`` points (a fixed random subset). Returns the points drawn, shape (n, 3).
    """
    x, y, w = embedding_sample(emb, labels, centres, 3, max_points, seed, "plot_embedding_sphere")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    directions = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    cmap = _cmap("tab10")
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 37), np.linspace(0, np.pi, 19))
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
    ax.scatter(x[:, 0], x[:, 1], x[:, 2], c=[cmap(k % 10) for k in y], s=s, alpha=0.7, depthshade=False)
    for k, d in enumerate(directions):
        ax.plot([0, d[0]], [0, d[1]], [0, d[2]], color=cmap(k % 10), lw=2)
        ax.text(*(d * 1.18), str(k), ha="center", va="center", fontsize=9, fontweight="bold", color=cmap(k % 10))
    ax.view_init(*view)
    ax.set_box_aspect((1, 1, 1))
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")
    ax.set_zlabel("x₃")
    for axis in (ax.set_xticks, ax.set_yticks, ax.set_zticks):
        axis([-1, 0, 1])
    if title:
        ax.set_title(title, fontsize=10)
    return x


def _cmap(name: str):
    """A matplotlib colour map by name (works across matplotlib versions)."""
    import matplotlib

    return matplotlib.colormaps[name]


def centre_angles(emb, labels, centres) -> tuple[np.ndarray, np.ndarray]:
    """(own, nearest_other) in degrees per embedding: the angle to its own class centre and to the nearest
    *other* centre — the per-sample numbers behind ``arclib.metrics.angle_stats``' ``intra`` and
    ``to_nearest_other_centre``."""
    x, y, w = _numpy(emb), _numpy(labels).astype(int), _numpy(centres)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    cos = np.clip(x @ w.T, -1.0, 1.0)
    own = cos[np.arange(len(y)), y]
    cos[np.arange(len(y)), y] = -np.inf
    return np.degrees(np.arccos(own)), np.degrees(np.arccos(cos.max(axis=1)))


def angle_histogram(ax, emb, labels, centres, bins=None, title: str | None = None):
    """Histograms of ``centre_angles``: the angle to the own centre (blue) and to the nearest other centre
    (orange), with each mean dashed. The wider the empty gap between them, the larger the angular margin the
    embedding keeps. Returns (own, nearest_other) in degrees."""
    own, other = centre_angles(emb, labels, centres)
    bins = np.linspace(0, 180, 91) if bins is None else bins
    ax.hist(own, bins=bins, color="C0", alpha=0.6, label=f"own centre (mean {own.mean():.1f}°)")
    ax.hist(other, bins=bins, color="C1", alpha=0.6, label=f"nearest other (mean {other.mean():.1f}°)")
    for values, color in ((own, "C0"), (other, "C1")):
        ax.axvline(values.mean(), color=color, ls="--", lw=1)
    ax.set_xlabel("angle (degrees)")
    ax.set_ylabel("test images")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return own, other


def plot_histories(axes, histories: dict, style: dict | None = None):
    """Training curves of several runs: mean training loss (``axes[0]``) and test accuracy in % (``axes[1]``)
    per epoch, one line per entry of ``histories`` {label: arclib.train.History}. ``style`` maps a label to
    plot keyword arguments (e.g. ``{"ArcFace": {"color": "C3"}}``)."""
    style = style or {}
    for label, h in histories.items():
        epochs = np.arange(1, h.epochs + 1)
        kw = dict(marker="o", ms=4, **style.get(label, {}))
        axes[0].plot(epochs, h.train_loss, label=label, **kw)
        acc = [np.nan if a is None else 100 * a for a in h.test_acc]
        axes[1].plot(epochs, acc, label=label, **kw)
    axes[0].set_ylabel("mean training loss")
    axes[1].set_ylabel("test accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return axes


def confusion_matrix(ax, labels, predictions, class_names: Sequence[str], title: str | None = None,
                     cmap: str = "Blues") -> np.ndarray:
    """Draw the confusion matrix of ``predictions`` against ``labels`` on ``ax``, each row normalised to the
    percentage of that true class (so every row sums to 100), with the percentage written in each cell.
    Returns the (C, C) matrix of counts: row = true class, column = predicted class."""
    y, p = _numpy(labels).astype(int).ravel(), _numpy(predictions).astype(int).ravel()
    c = len(class_names)
    if y.shape != p.shape or (len(y) and (min(y.min(), p.min()) < 0 or max(y.max(), p.max()) >= c)):
        raise ValueError(f"labels and predictions must have the same length and lie in [0, {c})")
    counts = np.zeros((c, c), dtype=np.int64)
    np.add.at(counts, (y, p), 1)
    pct = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(pct, cmap=_cmap(cmap), vmin=0, vmax=100)
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if pct[i, j] > 50 else "black")
    ax.set_xticks(range(c), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(c), class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=10)
    return counts


__all__ += ["confusion_matrix"]


# ---- open-set verification (chapter 08) ---------------------------------------------------------------------
def pair_angle_histogram(ax, result: dict, bins=None, title: str | None = None, threshold: float | None = None):
    """The angle between the two embeddings of each pair, for positive (same class, blue) and negative
    (different classes, red) pairs, from ``arclib.metrics.verification``'s result — the QAMFace paper's Fig. 4.
    The less the two histograms overlap, the better any threshold separates them. ``threshold`` (degrees) draws
    a decision line. Returns the fraction of negative pairs at a smaller angle than the median positive pair."""
    pos, neg = np.asarray(result["positive_angles"]), np.asarray(result["negative_angles"])
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("result must hold positive_angles and negative_angles (an arclib.metrics.verification result)")
    bins = np.linspace(0, 180, 91) if bins is None else bins
    ax.hist(pos, bins=bins, color="C0", alpha=0.6, density=True, label=f"positive pairs (mean {pos.mean():.1f}°)")
    ax.hist(neg, bins=bins, color="C3", alpha=0.6, density=True, label=f"negative pairs (mean {neg.mean():.1f}°)")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls=":", lw=1.2, label=f"threshold {threshold:.1f}°")
    ax.set_xlabel("angle between the pair's embeddings (degrees)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return float((neg < np.median(pos)).mean())


def roc_curves(ax, results: dict, fars: Sequence[float] = (1e-3, 1e-2, 1e-1)):
    """ROC curves of several ``arclib.metrics.verification`` results {label: result}: true accept rate against
    false accept rate on a log axis (where face recognition reads it), with the FARs of the report marked."""
    for label, r in results.items():
        fpr, tpr = np.asarray(r["roc"]["fpr"]), np.asarray(r["roc"]["tpr"])
        keep = fpr > 0
        ax.plot(fpr[keep], 100 * tpr[keep], label=f"{label} (AUC {r['auc']:.4f})")
    for far in fars:
        ax.axvline(far, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR, %)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return ax


__all__ += ["pair_angle_histogram", "roc_curves"]


def metric_against_classes(ax, runs: Sequence[dict], metric: str, labels: dict[str, str],
                           colours: dict[str, str] | None = None, ylabel: str | None = None) -> dict:
    """One line per loss of ``metric`` against the number of training classes K (log axis), the band ±1 standard
    deviation over seeds. ``runs``: dicts with ``label``, ``K`` and ``metric`` (``arclib.fewshot.study()["runs"]``);
    ``labels`` maps the run labels to draw to their legend names. Returns {label: (K, mean, sd)}."""
    drawn = {}
    for i, (label, name) in enumerate(labels.items()):
        by_k: dict[int, list[float]] = {}
        for run in runs:
            if run["label"] == label:
                by_k.setdefault(int(run["K"]), []).append(float(run[metric]))
        if not by_k:
            raise ValueError(f"labels: no run is labelled {label!r}")
        ks = np.array(sorted(by_k))
        mean = np.array([np.mean(by_k[k]) for k in ks])
        sd = np.array([np.std(by_k[k], ddof=1) if len(by_k[k]) > 1 else 0.0 for k in ks])
        colour = (colours or {}).get(label, f"C{i}")
        ax.plot(ks, mean, marker="o", ms=4, lw=1.8, color=colour, label=name)
        ax.fill_between(ks, mean - sd, mean + sd, color=colour, alpha=0.18, lw=0)
        drawn[label] = (ks, mean, sd)
    ax.set_xscale("log")
    ax.set_xlabel("training classes K (log scale)")
    ax.set_ylabel(ylabel or metric)
    ax.grid(alpha=0.3)
    return drawn
