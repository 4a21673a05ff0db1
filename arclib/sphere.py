"""The hypersphere, interactively: class regions under an angular margin, probabilities under a scale s.

Everything lives on the unit sphere in 3-D (and on the unit circle in 2-D), where a normalised embedding x
and the class centres W_j meet through cos θ_j = ⟨x, W_j⟩. Three quantities are drawn:

- **regions** (depend on m only): x is *accepted* for class j when its margin-penalised target logit beats
  every other logit, ψ(θ_j) > max_{k≠j} cos θ_k; for ArcFace cos(θ_j + m) > max_{k≠j} cos θ_k. Each region
  shrinks by an arc of width m from the margin-free boundary; points in between belong to no class
  ("margin zone"). The test uses the loss's own ``target_logit``/``other_logit``.
- **probabilities** (depend on s only): the test-time softmax of s·cos θ; larger s sharpens it.
- **per-sample losses** (depend on both): ``loss(cos, labels, reduction="none")``, as in training.

The configuration is *synthetic* (seeded random centres and samples): it shows the geometry, not a trained
model; a later chapter trains a real 3-D embedding.

The viewers, one per place a reader may be: ``SphereExplorer`` (Jupyter: FigureWidget + ipywidgets sliders),
an ``ipywidgets.interact`` fallback on Colab (ipywidgets 7, where FigureWidget is unreliable) — ``explore``
picks — and ``sphere_slider_figure``, a plain figure with plotly's own ``layout.sliders`` over a precomputed
(s, m) grid that needs no kernel (GitHub, nbviewer, HTML). ``circle_figure`` is the 2-D matplotlib version.
plotly and ipywidgets are imported lazily: they are optional (notebook) dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from arclib.losses import MarginLoss, angle, make
from arclib.plots import embedding_sample
from arclib.widgets import ScaleMarginExplorer, in_colab, time_slider_updates

__all__ = ["SyntheticConfig", "synthetic_config", "Mesh", "sphere_mesh", "regions", "probabilities",
           "sample_losses", "accepted_area", "sphere_figure", "sphere_slider_figure", "SphereExplorer", "explore",
           "circle_figure", "time_slider_updates"]

#: Class colours (colour-blind-safe Okabe–Ito); the margin zone is light grey.
CLASS_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
#: matplotlib's tab10, so a digit has the same colour in the 2-D plots (arclib.plots) and on the sphere
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MARGIN_COLOUR = "#d9d9d9"
SYNTHETIC_NOTE = "synthetic configuration (seeded random centres and samples, not a trained model)"


@dataclass(frozen=True)
class SyntheticConfig:
    """Unit class centres (C, d), unit sample embeddings (N, d) and their labels (N,)."""

    centres: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray
    note: str = SYNTHETIC_NOTE

    @property
    def num_classes(self) -> int:
        return self.centres.shape[0]

    def cosines(self) -> np.ndarray:
        return self.embeddings @ self.centres.T


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def synthetic_config(dim: int = 3, num_classes: int = 5, per_class: int = 12, spread: float = 0.4,
                     seed: int = 0) -> SyntheticConfig:
    """Seeded, *synthetic* centres and samples on the unit sphere (dim 3) or circle (dim 2).

    Centres are spread evenly (Fibonacci points in 3-D, equal angles in 2-D) and then jittered, so some
    pairs of classes sit closer than others and the margin zone between them is visibly narrower.
    Samples are centre + spread·N(0, I), normalised: typical angles to their centre of about spread·√(d−1).
    """
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    rng = np.random.default_rng(seed)
    if dim == 3:
        k = np.arange(num_classes) + 0.5
        polar, azimuth = np.arccos(1 - 2 * k / num_classes), math.pi * (1 + 5**0.5) * k
        base = np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], 1)
    else:
        phi = 2 * math.pi * np.arange(num_classes) / num_classes
        base = np.stack([np.cos(phi), np.sin(phi)], 1)
    centres = _unit(base + 0.25 * rng.standard_normal(base.shape))
    labels = np.repeat(np.arange(num_classes), per_class)
    embeddings = _unit(centres[labels] + spread * rng.standard_normal((labels.size, dim)))
    return SyntheticConfig(centres, embeddings, labels)


@dataclass(frozen=True)
class Mesh:
    """A triangulated unit sphere: vertices (V, 3), faces (F, 3) as vertex indices, per-face unit centroids
    and areas. Colours are per face, so a region boundary never blends two class colours."""

    vertices: np.ndarray
    faces: np.ndarray
    centroids: np.ndarray
    areas: np.ndarray


def sphere_mesh(n_lon: int = 40, n_lat: int = 20) -> Mesh:
    """A latitude–longitude sphere: two poles, n_lat − 1 rings of n_lon vertices; 2·n_lon·(n_lat − 1) faces."""
    lat = np.linspace(0, math.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * math.pi, n_lon, endpoint=False)
    ring = np.stack([np.sin(lat)[:, None] * np.cos(lon), np.sin(lat)[:, None] * np.sin(lon),
                     np.cos(lat)[:, None] * np.ones_like(lon)], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0.0, 0.0, 1.0]], ring, [[0.0, 0.0, -1.0]]])
    south = len(vertices) - 1

    def v(i: int, j: int) -> int:
        return 1 + i * n_lon + j % n_lon

    faces = [(0, v(0, j), v(0, j + 1)) for j in range(n_lon)]
    for i in range(n_lat - 2):
        for j in range(n_lon):
            faces += [(v(i, j), v(i + 1, j), v(i + 1, j + 1)), (v(i, j), v(i + 1, j + 1), v(i, j + 1))]
    faces += [(v(n_lat - 2, j), south, v(n_lat - 2, j + 1)) for j in range(n_lon)]
    faces = np.asarray(faces)
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    return Mesh(vertices, faces, _unit(a + b + c), areas)


def _loss(s: float, m: float, name: str) -> MarginLoss:
    return make(name, s=s) if name == "normface" else make(name, s=s, m=m)


@torch.no_grad()
def regions(points: np.ndarray, centres: np.ndarray, m: float, name: str = "arcface") -> np.ndarray:
    """For each point, the class j it is accepted for (target logit > every other logit), or −1 if none.

    With a margin m ≥ 0 the target logit never exceeds the plain one, so at most one class accepts a point.
    """
    loss = _loss(1.0, m, name)
    theta = angle(torch.as_tensor(points @ centres.T))
    target, other = loss.target_logit(theta), loss.other_logit(theta)
    top2 = other.topk(2, dim=1)
    best_other = torch.where(top2.indices[:, :1] == torch.arange(centres.shape[0]), top2.values[:, 1:],
                             top2.values[:, :1])
    accepted = target > best_other
    return torch.where(accepted.any(1), accepted.float().argmax(1), -1).numpy()


def probabilities(points: np.ndarray, centres: np.ndarray, s: float) -> np.ndarray:
    """Test-time softmax of s·cos θ_j (no margin), shape (P, C)."""
    z = s * (points @ centres.T)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@torch.no_grad()
def sample_losses(config: SyntheticConfig, s: float, m: float, name: str = "arcface") -> np.ndarray:
    """Each sample's training loss at (s, m), by the arclib loss's own forward pass."""
    cos = torch.as_tensor(np.clip(config.cosines(), -1, 1))
    return _loss(s, m, name)(cos, torch.as_tensor(config.labels), reduction="none").numpy()


def accepted_area(centres: np.ndarray, m: float, mesh: Mesh | None = None, name: str = "arcface") -> np.ndarray:
    """Fraction of the sphere's area accepted for each class at margin m (shape (C,))."""
    mesh = mesh or sphere_mesh(80, 40)
    reg = regions(mesh.centroids, centres, m, name)
    return np.array([mesh.areas[reg == j].sum() for j in range(centres.shape[0])]) / mesh.areas.sum()


# ---- plotly figures -------------------------------------------------------------------------------------

def _region_colourscale(num_classes: int) -> list:
    """A stepped colourscale: value 0 → margin zone, value j + 1 → class j."""
    colours = (MARGIN_COLOUR,) + CLASS_COLOURS[:num_classes]
    n = len(colours)
    scale = []
    for k, colour in enumerate(colours):
        scale += [[k / n, colour], [(k + 1) / n, colour]]
    return scale


def _state(config: SyntheticConfig, mesh: Mesh, s: float, m: float) -> dict:
    """Everything the figure shows at (s, m), as plain lists ready for plotly."""
    reg = regions(mesh.centroids, config.centres, m)
    accepted = regions(config.embeddings, config.centres, m) == config.labels
    prob = probabilities(mesh.centroids, config.centres, s).max(1)
    losses = sample_losses(config, s, m)
    return {"region": (reg + 1).tolist(), "prob": np.round(prob, 3).tolist(),
            "symbol": ["circle" if a else "x" for a in accepted], "losses": losses,
            "size": np.round(4 + 4 * np.sqrt(losses), 2).tolist()}


def _title(s: float, m: float, mean_loss: float | None) -> str:
    loss = "" if mean_loss is None else f", mean ArcFace loss {mean_loss:.3f}"
    return f"s = {s:.1f}, m = {m:.2f}{loss} — {SYNTHETIC_NOTE}"


def sphere_figure(s: float = 16.0, m: float = 0.3, config: SyntheticConfig | None = None,
                  mesh: Mesh | None = None, show_loss: bool = True):
    """Two views of one sphere: left, class regions at margin m (grey = margin zone); right, the test-time
    probability of the nearest class at scale s. Arrows are the class centres W_j, dots the samples
    (left: ✕ = not yet past its margin; right: marker size grows with the sample's loss when ``show_loss``).

    Trace order is fixed (0 region mesh, 1 probability mesh, 2 and 3 samples, then centres): the explorers
    update traces by index.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    config = config or synthetic_config()
    mesh = mesh or sphere_mesh()
    st = _state(config, mesh, s, m)
    C = config.num_classes
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=("class regions at margin m (grey: margin zone)",
                                        "p(nearest class) at scale s"), horizontal_spacing=0.02)
    x, y, z = mesh.vertices.T
    i, j, k = mesh.faces.T
    fig.add_trace(go.Mesh3d(x=x, y=y, z=z, i=i, j=j, k=k, intensity=st["region"], intensitymode="cell",
                            colorscale=_region_colourscale(C), cmin=-0.5, cmax=C + 0.5, showscale=False,
                            hoverinfo="skip", name="regions", flatshading=True), row=1, col=1)
    fig.add_trace(go.Mesh3d(x=x, y=y, z=z, i=i, j=j, k=k, intensity=st["prob"], intensitymode="cell",
                            colorscale="Viridis", cmin=1 / C, cmax=1.0, name="probability", flatshading=True,
                            colorbar={"title": {"text": "p"}, "len": 0.6, "x": 1.0}, hoverinfo="skip"),
                  row=1, col=2)
    pts = 1.01 * config.embeddings
    colours = [CLASS_COLOURS[c] for c in config.labels]
    hover = [f"class {c}" for c in config.labels]
    fig.add_trace(go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name="samples",
                               marker={"size": 4, "color": colours, "symbol": st["symbol"],
                                       "line": {"color": "black", "width": 1}},
                               text=hover, hoverinfo="text", showlegend=False), row=1, col=1)
    fig.add_trace(go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name="samples",
                               marker={"size": st["size"] if show_loss else 4, "color": colours},
                               text=hover, hoverinfo="text", showlegend=False), row=1, col=2)
    for col in (1, 2):
        for c, w in enumerate(config.centres):
            fig.add_trace(go.Scatter3d(x=[0, 1.35 * w[0]], y=[0, 1.35 * w[1]], z=[0, 1.35 * w[2]],
                                       mode="lines+markers", line={"color": CLASS_COLOURS[c], "width": 6},
                                       marker={"size": [0, 5], "color": CLASS_COLOURS[c]},
                                       name=f"centre W_{c}", legendgroup=f"W{c}", showlegend=col == 1),
                          row=1, col=col)
    axis = {"visible": False}
    scene = {"xaxis": axis, "yaxis": axis, "zaxis": axis, "aspectmode": "cube",
             "camera": {"eye": {"x": 1.4, "y": 1.4, "z": 0.9}}}
    fig.update_layout(scene=scene, scene2=scene, height=520, margin={"l": 0, "r": 0, "t": 60, "b": 0},
                      title={"text": _title(s, m, float(st["losses"].mean()) if show_loss else None),
                             "font": {"size": 13}},
                      legend={"orientation": "h", "y": 0.02})
    return fig


def sphere_slider_figure(s_values: Sequence[float] = (2.0, 8.0, 16.0, 64.0),
                         m_values: Sequence[float] = (0.0, 0.2, 0.4, 0.6), config: SyntheticConfig | None = None,
                         mesh: Mesh | None = None):
    """The kernel-free version: one plain figure with plotly's own ``layout.sliders``, one step per value.

    Regions depend on m only and the probabilities on s only, so two independent sliders (m restyles the
    left mesh and the ✕ markers, s the right mesh) show every (s, m) pair exactly while storing
    len(s_values) + len(m_values) states, not their product. The per-sample loss depends on both and is
    left out here (the live explorer shows it).
    """
    config = config or synthetic_config()
    mesh = mesh or sphere_mesh()
    s0, m0 = s_values[len(s_values) // 2], m_values[len(m_values) // 2]
    fig = sphere_figure(s0, m0, config, mesh, show_loss=False)
    m_steps, s_steps = [], []
    for m in m_values:
        st = _state(config, mesh, s0, m)
        m_steps.append({"method": "restyle", "label": f"{m:.2f}",
                        "args": [{"intensity": [st["region"]], "marker.symbol": [st["symbol"]]}, [0, 2]]})
    for s in s_values:
        st = _state(config, mesh, s, m0)
        s_steps.append({"method": "restyle", "label": f"{s:g}", "args": [{"intensity": [st["prob"]]}, [1]]})
    fig.update_layout(
        title={"text": f"Drag the sliders (no kernel needed) — {SYNTHETIC_NOTE}", "font": {"size": 13}},
        sliders=[{"active": list(m_values).index(m0), "steps": m_steps, "x": 0.0, "len": 0.45, "y": 0.0,
                  "currentvalue": {"prefix": "margin m = "}, "pad": {"t": 10}},
                 {"active": list(s_values).index(s0), "steps": s_steps, "x": 0.55, "len": 0.45, "y": 0.0,
                  "currentvalue": {"prefix": "scale s = "}, "pad": {"t": 10}}],
        height=600, margin={"b": 90}, legend={"y": 1.0})
    return fig


class SphereExplorer(ScaleMarginExplorer):
    """Jupyter: the sphere figure as a plotly FigureWidget, redrawn in place by s and m sliders.

    Each slider's ``observe`` callback recomputes regions, probabilities and losses and writes them inside
    ``figure.batch_update()``, so the front end receives one update per move.
    """

    s_description, m_description = "scale s", "margin m"

    def __init__(self, s: float = 16.0, m: float = 0.3, config: SyntheticConfig | None = None,
                 mesh: Mesh | None = None) -> None:
        self.config, self.mesh = config or synthetic_config(), mesh or sphere_mesh()
        super().__init__(sphere_figure(s, m, self.config, self.mesh), s, m)

    def update(self, s: float, m: float) -> None:
        st = _state(self.config, self.mesh, s, m)
        with self.figure.batch_update():
            self.figure.data[0].intensity = st["region"]
            self.figure.data[1].intensity = st["prob"]
            self.figure.data[2].marker.symbol = st["symbol"]
            self.figure.data[3].marker.size = st["size"]
            self.figure.layout.title.text = _title(s, m, float(st["losses"].mean()))


def explore(s: float = 16.0, m: float = 0.3, config: SyntheticConfig | None = None):
    """One call for every kernel: ``SphereExplorer`` in Jupyter; on Colab, ``ipywidgets.interact`` redrawing a
    plain figure (displayed at once, returns None; each move re-renders it, slower but reliable on ipywidgets 7)."""
    config = config or synthetic_config()
    if in_colab():
        mesh = sphere_mesh()
        SphereExplorer.interact(lambda s, m: sphere_figure(s, m, config, mesh), s, m)
        return None  # interact has displayed itself
    return SphereExplorer(s, m, config)


# ---- 2-D matplotlib version -----------------------------------------------------------------------------

def circle_figure(s: float, m: float, config: SyntheticConfig | None = None, ax=None, n: int = 720):
    """The unit circle with 2-D class centres: the circle coloured by region at margin m (grey: margin
    zone), each class's test-time probability at scale s drawn as a radius 1.2 + 0.5·p_j(φ), samples as
    dots just inside the circle (✕: not past its margin; size grows with the ArcFace loss). No WebGL needed.
    """
    import matplotlib.pyplot as plt

    config = config or synthetic_config(dim=2, num_classes=4, per_class=10, spread=0.3)
    if config.centres.shape[1] != 2:
        raise ValueError("circle_figure needs a 2-D configuration (synthetic_config(dim=2))")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    phi = np.linspace(0, 2 * math.pi, n, endpoint=False)
    pts = np.stack([np.cos(phi), np.sin(phi)], 1)
    reg, prob = regions(pts, config.centres, m), probabilities(pts, config.centres, s)
    palette = (MARGIN_COLOUR,) + CLASS_COLOURS[:config.num_classes]
    starts = np.flatnonzero(np.diff(reg, prepend=reg[-1] - 1))  # one unbroken arc per run of equal regions
    for a, b in zip(starts, np.append(starts[1:], n)):
        run = np.arange(a, b + 1) % n
        ax.plot(pts[run, 0], pts[run, 1], color=palette[reg[a] + 1], lw=7, solid_capstyle="butt")
    ax.plot(1.2 * pts[:, 0], 1.2 * pts[:, 1], color="0.7", lw=0.6, ls=":")
    for c, w in enumerate(config.centres):
        r = 1.2 + 0.5 * prob[:, c]
        ax.plot(r * pts[:, 0], r * pts[:, 1], color=CLASS_COLOURS[c], lw=1.4)
        ax.annotate("", xy=0.97 * w, xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": CLASS_COLOURS[c],
                                                                  "lw": 2})
    losses = sample_losses(config, s, m)
    accepted = regions(config.embeddings, config.centres, m) == config.labels
    e = 0.85 * config.embeddings
    for marker, keep in (("o", accepted), ("X", ~accepted)):
        ax.scatter(e[keep, 0], e[keep, 1], s=12 + 40 * np.sqrt(losses[keep]), marker=marker,
                   c=[CLASS_COLOURS[c] for c in config.labels[keep]], edgecolors="black", linewidths=0.5)
    ax.set_aspect("equal")
    ax.set_xlim(-1.75, 1.75)
    ax.set_ylim(-1.75, 1.75)
    ax.set_xlabel("embedding dimension 1")
    ax.set_ylabel("embedding dimension 2")
    ax.set_title(f"s = {s:g}, m = {m:g}: mean loss {losses.mean():.3f}", fontsize=10)
    return ax.figure


def embedding_figure(emb, labels, centres, max_points: int = 2000, seed: int = 0, title: str | None = None,
                     class_names: Sequence[str] | None = None):
    """A trained 3-D embedding on the unit sphere (plotly, rotatable): every feature x/‖x‖ as a dot coloured by
    its class, every class centre W_j/‖W_j‖ as an arrow from the origin, over a faint sphere.

    What a cosine classifier sees of a 3-D embedding: only directions. At most ``max_points`` dots (a fixed
    random subset). Traces: 0 the sphere, 1 … C the classes' dots, then one arrow per centre.
    """
    import plotly.graph_objects as go

    x, y, w = embedding_sample(emb, labels, centres, 3, max_points, seed, "embedding_figure")
    x, w = _unit(x), _unit(w)
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(w))]
    mesh = sphere_mesh(48, 24)
    vx, vy, vz = mesh.vertices.T
    fi, fj, fk = mesh.faces.T
    fig = go.Figure(go.Mesh3d(x=0.985 * vx, y=0.985 * vy, z=0.985 * vz, i=fi, j=fj, k=fk, color="lightgrey",
                              opacity=0.25, hoverinfo="skip", name="unit sphere", showlegend=False))
    palette = TAB10 * (len(w) // len(TAB10) + 1)
    for c in range(len(w)):
        p = x[y == c]
        fig.add_trace(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=names[c],
                                   marker={"size": 2, "color": palette[c], "opacity": 0.8}, legendgroup=names[c],
                                   hovertemplate=f"class {names[c]}<extra></extra>"))
    for c, d in enumerate(w):
        fig.add_trace(go.Scatter3d(x=[0, 1.3 * d[0]], y=[0, 1.3 * d[1]], z=[0, 1.3 * d[2]], mode="lines+text",
                                   line={"color": palette[c], "width": 7}, text=["", f"W<sub>{names[c]}</sub>"],
                                   textfont={"color": palette[c], "size": 12}, legendgroup=names[c],
                                   showlegend=False, hovertemplate=f"centre W_{names[c]}<extra></extra>"))
    axis = {"visible": False}
    fig.update_layout(scene={"xaxis": axis, "yaxis": axis, "zaxis": axis, "aspectmode": "cube"},
                      height=560, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                      title={"text": title or "3-D embedding on the unit sphere", "font": {"size": 13}},
                      legend={"title": {"text": "class"}, "itemsizing": "constant"})
    return fig
