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
from arclib.widgets import LivePicture, ScaleMarginExplorer, in_colab, time_slider_updates

__all__ = ["SyntheticConfig", "synthetic_config", "Mesh", "sphere_mesh", "icosphere", "regions", "margin_values",
           "probabilities", "traces",
           "sample_losses", "accepted_area", "sphere_figure", "sphere_slider_figure", "SphereExplorer",
           "SpherePicture", "sphere_still", "explore", "circle_figure", "time_slider_updates"]

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


def _split_faces(vertices: list, faces: list) -> tuple[list, list]:
    """Each triangle into four, through its edges' midpoints (shared between neighbours), pushed onto the sphere."""
    vertices, midpoint = list(vertices), {}

    def mid(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in midpoint:
            midpoint[key] = len(vertices)
            halfway = vertices[a] + vertices[b]
            vertices.append(halfway / np.linalg.norm(halfway))
        return midpoint[key]

    split = []
    for a, b, c in faces:
        ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
        split += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    return vertices, split


def icosphere(subdivisions: int = 4) -> Mesh:
    """An icosahedron whose faces are split in four ``subdivisions`` times, vertices pushed onto the sphere:
    10·4^k + 2 vertices and 20·4^k nearly equal faces (no crowding at the poles, unlike ``sphere_mesh``).
    The figures colour it per *vertex*, so region edges are smooth at 4^k faces where per-face colour is jagged."""
    if not (isinstance(subdivisions, int) and 0 <= subdivisions <= 6):
        raise ValueError(f"subdivisions must be an integer from 0 to 6, got {subdivisions!r}")
    g = (1 + 5**0.5) / 2
    vertices = [(-1, g, 0), (1, g, 0), (-1, -g, 0), (1, -g, 0), (0, -1, g), (0, 1, g), (0, -1, -g), (0, 1, -g),
                (g, 0, -1), (g, 0, 1), (-g, 0, -1), (-g, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
             (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    vertices = [np.asarray(v, dtype=float) / np.linalg.norm(v) for v in vertices]
    for _ in range(subdivisions):
        vertices, faces = _split_faces(vertices, faces)
    vertices, faces = _unit(np.asarray(vertices)), np.asarray(faces)
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
    accepted = margin_values(points, centres, m, name) > 0
    return np.where(accepted.any(1), accepted.argmax(1), -1)


@torch.no_grad()
def margin_values(points: np.ndarray, centres: np.ndarray, m: float, name: str = "arcface") -> np.ndarray:
    """f_j(x) = ψ(θ_j) − max_{k≠j} cos θ_k per point and class, shape (P, C): positive exactly where ``regions``
    accepts x for class j. A continuous function, so a mesh coloured by its sign between vertices draws the region
    edges as smooth curves (``sphere_figure``)."""
    loss = _loss(1.0, m, name)
    theta = angle(torch.as_tensor(points @ centres.T))
    target, other = loss.target_logit(theta), loss.other_logit(theta)
    top2 = other.topk(2, dim=1)
    best_other = torch.where(top2.indices[:, :1] == torch.arange(centres.shape[0]), top2.values[:, 1:],
                             top2.values[:, :1])
    return (target - best_other).numpy()


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

#: The explanation every sphere figure carries (the legend entries say the rest).
LEGEND_NOTES = {
    "zone": "grey: margin zone (no class accepts: cos(θ_j + m) ≤ max_k≠j cos θ_k)",
    "past": "● sample past its margin",
    "not_past": "✕ sample not yet past its margin",
    "centre": "arrow: class centre W_j",
    "size": "right: marker size grows with the sample's ArcFace loss",
}


def _region_rgb(num_classes: int) -> np.ndarray:
    """(C + 1, 3) RGB in [0, 1]: row 0 the margin zone, row j + 1 class j."""
    hexes = (MARGIN_COLOUR,) + CLASS_COLOURS[:num_classes]
    return np.array([[int(h[k:k + 2], 16) / 255 for k in (1, 3, 5)] for h in hexes])


@dataclass(frozen=True)
class _Piece:
    """The faces of a mesh nearest to one class centre, with their own vertex numbering."""

    vertex_ids: np.ndarray  # into the full mesh's vertices
    mesh: Mesh


def _pieces(mesh: Mesh, centres: np.ndarray) -> list[_Piece]:
    """Split ``mesh`` by the class centre nearest to each face's centroid. With a margin, the edge between two
    pieces lies inside the margin zone, so each piece needs only its own class's f_j to be coloured right."""
    nearest = (mesh.centroids @ centres.T).argmax(1)
    pieces = []
    for j in range(len(centres)):
        keep = nearest == j
        used, local = np.unique(mesh.faces[keep], return_inverse=True)
        pieces.append(_Piece(used, Mesh(mesh.vertices[used], local.reshape(-1, 3), mesh.centroids[keep],
                                        mesh.areas[keep])))
    return pieces


#: The margin value f_j is drawn on [−F_RANGE, F_RANGE]: grey below 0, the class colour above.
F_RANGE = 2.0


def _piece_colourscale(colour: str) -> list:
    return [[0.0, MARGIN_COLOUR], [0.5, MARGIN_COLOUR], [0.5, colour], [1.0, colour]]


def _region_values(config: SyntheticConfig, mesh: Mesh, pieces: list[_Piece], m: float) -> list[list[float]]:
    """Per piece j: f_j at its vertices (3 decimals: the edge sits where f_j = 0, interpolated along each face)."""
    f = margin_values(mesh.vertices, config.centres, m)
    return [np.round(f[piece.vertex_ids, j], 3).tolist() for j, piece in enumerate(pieces)]


def _state(config: SyntheticConfig, s: float, m: float) -> dict:
    """The sample markers at (s, m): ✕ where not yet past the margin, size by the loss."""
    accepted = regions(config.embeddings, config.centres, m) == config.labels
    losses = sample_losses(config, s, m)
    return {"accepted": accepted, "symbol": ["circle" if a else "x" for a in accepted], "losses": losses,
            "size": np.round(4 + 4 * np.sqrt(losses), 2)}


def _title(s: float, m: float, mean_loss: float | None) -> str:
    loss = "" if mean_loss is None else f"; mean ArcFace loss of the samples {mean_loss:.3f}"
    return f"s = {s:.1f}, m = {m:.2f}{loss}"


def _mesh_arrays(mesh: Mesh) -> dict:
    """Vertices as float32 and faces as uint16 where they fit: plotly stores them as compact base64 arrays."""
    x, y, z = mesh.vertices.astype(np.float32).T
    faces = mesh.faces.astype(np.uint16 if len(mesh.vertices) < 2**16 else np.int32)
    return {"x": x, "y": y, "z": z, "i": faces[:, 0], "j": faces[:, 1], "k": faces[:, 2]}


def _probability(config: SyntheticConfig, mesh: Mesh, s: float) -> list[float]:
    """p(nearest class) per vertex, to two decimals (a colour scale shows no more)."""
    return np.round(probabilities(mesh.vertices, config.centres, s).max(1), 2).tolist()


def traces(num_classes: int) -> dict[str, list[int]]:
    """Which traces of ``sphere_figure`` hold what (the explorers update them by index)."""
    C = num_classes
    return {"regions": list(range(C)), "probability": [C], "samples_left": [C + 1], "samples_right": [C + 2]}


def sphere_figure(s: float = 16.0, m: float = 0.3, config: SyntheticConfig | None = None,
                  mesh: Mesh | None = None, show_loss: bool = True, prob_mesh: Mesh | None = None):
    """Two views of one sphere: left, class regions at margin m (grey = margin zone); right, the test-time
    probability of the nearest class at scale s. Arrows are the class centres W_j, dots the samples
    (left: ✕ = not yet past its margin; right: marker size grows with the sample's loss when ``show_loss``).
    Regions: ``mesh`` (``icosphere(4)`` by default) split into one piece per class, each coloured by the sign of
    its ``margin_values`` f_j interpolated between vertices, so region edges are smooth curves across the faces.
    Probabilities per vertex of ``prob_mesh`` (``icosphere(3)``: a smooth quantity needs fewer vertices). The
    legend explains every mark; titles and the status line sit inside the frame.

    Trace order is fixed — ``traces(C)`` names it: C region pieces, the probability mesh, the two sample traces,
    then centres and legend-only entries; the explorers update traces by index.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    config = config or synthetic_config()
    mesh, prob_mesh = mesh or icosphere(4), prob_mesh or icosphere(3)
    st = _state(config, s, m)
    C = config.num_classes
    pieces = _pieces(mesh, config.centres)
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=("class regions at margin m", "p(nearest class) at scale s"),
                        horizontal_spacing=0.02)
    light = {"ambient": 0.75, "diffuse": 0.35, "specular": 0.05}
    for j, (piece, values) in enumerate(zip(pieces, _region_values(config, mesh, pieces, m))):
        fig.add_trace(go.Mesh3d(**_mesh_arrays(piece.mesh), intensity=values, intensitymode="vertex",
                                colorscale=_piece_colourscale(CLASS_COLOURS[j]), cmin=-F_RANGE, cmax=F_RANGE,
                                showscale=False, hoverinfo="skip", name=f"region of class {j}", showlegend=False,
                                lighting=light), row=1, col=1)
    fig.add_trace(go.Mesh3d(**_mesh_arrays(prob_mesh), intensity=_probability(config, prob_mesh, s),
                            intensitymode="vertex",
                            colorscale="Viridis", cmin=1 / C, cmax=1.0, name="probability", showlegend=False,
                            colorbar={"title": {"text": "p"}, "len": 0.5, "x": 1.0, "y": 0.55, "thickness": 14},
                            hoverinfo="skip", lighting=light), row=1, col=2)
    pts = 1.01 * config.embeddings
    colours = [CLASS_COLOURS[c] for c in config.labels]
    hover = [f"sample of class {c}" for c in config.labels]
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
                                       name=f"class {c}: centre W<sub>{c}</sub> and its region",
                                       legendgroup=f"W{c}", showlegend=col == 1), row=1, col=col)
    notes = [("zone", {"symbol": "square", "color": MARGIN_COLOUR, "size": 9}),
             ("past", {"symbol": "circle", "color": "white", "size": 6, "line": {"color": "black", "width": 1}}),
             ("not_past", {"symbol": "x", "color": "white", "size": 6, "line": {"color": "black", "width": 1}})]
    if show_loss:
        notes.append(("size", {"symbol": "circle", "color": "white", "size": 9,
                               "line": {"color": "black", "width": 1}}))
    for key, marker in notes:  # legend-only entries (no points): the key to the marks
        fig.add_trace(go.Scatter3d(x=[None], y=[None], z=[None], mode="markers", marker=marker,
                                   name=LEGEND_NOTES[key].replace("cos(θ_j + m) ≤ max_k≠j cos θ_k",
                                                                  "cos(θ<sub>j</sub> + m) ≤ max cos θ<sub>k</sub>"),
                                   hoverinfo="skip"), row=1, col=1)
    axis = {"visible": False}
    scene = {"xaxis": axis, "yaxis": axis, "zaxis": axis, "aspectmode": "cube",
             "camera": {"eye": {"x": 1.25, "y": 1.25, "z": 0.8}}}
    fig.update_layout(scene=scene, scene2=scene, height=640, margin={"l": 10, "r": 10, "t": 80, "b": 10},
                      title={"text": _title(s, m, float(st["losses"].mean()) if show_loss else None),
                             "font": {"size": 14}, "x": 0.02, "y": 0.985, "yanchor": "top"},
                      legend={"orientation": "h", "x": 0.0, "y": -0.02, "yanchor": "top", "font": {"size": 11}},
                      paper_bgcolor="white")
    for annotation in fig.layout.annotations:  # subplot titles: inside the frame, below the figure title
        annotation.update(y=0.97, yanchor="top", font={"size": 13})
    fig.add_annotation(text=SYNTHETIC_NOTE, xref="paper", yref="paper", x=1.0, y=1.0, yanchor="bottom",
                       xanchor="right", showarrow=False, font={"size": 11, "color": "#555"}, yshift=12)
    return fig


def sphere_slider_figure(s_values: Sequence[float] = (2.0, 8.0, 16.0, 64.0),
                         m_values: Sequence[float] = (0.0, 0.2, 0.4, 0.6), config: SyntheticConfig | None = None,
                         mesh: Mesh | None = None):
    """The kernel-free version: one plain figure with plotly's own ``layout.sliders``, one step per value.

    Regions depend on m only and the probabilities on s only, so two independent sliders (m recolours the
    left meshes and the ✕ markers, s the right mesh) show every (s, m) pair exactly while storing
    len(s_values) + len(m_values) states, not their product. The per-sample loss depends on both and is
    left out here (the live explorer shows it).
    """
    config = config or synthetic_config()
    mesh, prob_mesh = mesh or icosphere(4), icosphere(3)
    s0, m0 = s_values[len(s_values) // 2], m_values[len(m_values) // 2]
    fig = sphere_figure(s0, m0, config, mesh, show_loss=False, prob_mesh=prob_mesh)
    pieces, index = _pieces(mesh, config.centres), traces(config.num_classes)
    m_steps, s_steps = [], []
    for m in m_values:
        # one restyle for C meshes and one scatter: each attribute lists a value per trace, None leaves a trace
        # without that attribute (meshes have no marker, scatters no intensity)
        values, symbols = _region_values(config, mesh, pieces, m), _state(config, s0, m)["symbol"]
        m_steps.append({"method": "restyle", "label": f"{m:.2f}",
                        "args": [{"intensity": values + [None], "marker.symbol": [None] * len(values) + [symbols]},
                                 index["regions"] + index["samples_left"]]})
    for s in s_values:
        s_steps.append({"method": "restyle", "label": f"{s:g}",
                        "args": [{"intensity": [_probability(config, prob_mesh, s)]}, index["probability"]]})
    fig.update_layout(
        title={"text": "Drag the sliders (no kernel needed): m recolours the regions, s the probabilities"},
        sliders=[{"active": list(m_values).index(m0), "steps": m_steps, "x": 0.02, "len": 0.44, "y": 0.0,
                  "yanchor": "top", "currentvalue": {"prefix": "margin m = "}, "pad": {"t": 0, "b": 0}},
                 {"active": list(s_values).index(s0), "steps": s_steps, "x": 0.54, "len": 0.44, "y": 0.0,
                  "yanchor": "top", "currentvalue": {"prefix": "scale s = "}, "pad": {"t": 0, "b": 0}}],
        height=760, margin={"b": 150}, legend={"y": -0.2})
    return fig


class SphereExplorer(ScaleMarginExplorer):
    """Jupyter: the sphere figure as a plotly FigureWidget, redrawn in place by s and m sliders.

    Each slider's ``observe`` callback recomputes regions, probabilities and losses and writes them inside
    ``figure.batch_update()``, so the front end receives one update per move.
    """

    s_description, m_description = "scale s", "margin m"

    def __init__(self, s: float = 16.0, m: float = 0.3, config: SyntheticConfig | None = None,
                 mesh: Mesh | None = None) -> None:
        # probabilities on a finer mesh than the kernel-free figure (nothing of this one is stored in the notebook)
        self.config, self.mesh, self.prob_mesh = config or synthetic_config(), mesh or icosphere(4), icosphere(4)
        self.pieces, self.index = _pieces(self.mesh, self.config.centres), traces(self.config.num_classes)
        super().__init__(sphere_figure(s, m, self.config, self.mesh, prob_mesh=self.prob_mesh), s, m)

    def update(self, s: float, m: float) -> None:
        st = _state(self.config, s, m)
        with self.figure.batch_update():
            for i, values in zip(self.index["regions"], _region_values(self.config, self.mesh, self.pieces, m)):
                self.figure.data[i].intensity = values
            self.figure.data[self.index["probability"][0]].intensity = _probability(self.config, self.prob_mesh, s)
            self.figure.data[self.index["samples_left"][0]].marker.symbol = st["symbol"]
            self.figure.data[self.index["samples_right"][0]].marker.size = st["size"]
            self.figure.layout.title.text = _title(s, m, float(st["losses"].mean()))


# ---- the sphere as a picture (matplotlib): GitHub, print, and the live path for Colab -----------------

#: The eye of the pictures' "front" view (elevation 25°, azimuth 45°); the "back" view looks from the opposite side.
VIEW = (25.0, 45.0)


def _view_basis(elevation: float, azimuth: float, back: bool) -> np.ndarray:
    """Rows: the screen's right, up and towards-the-viewer directions in world coordinates."""
    e, a = math.radians(elevation), math.radians(azimuth)
    towards = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    right = _unit(np.cross([0.0, 0.0, 1.0], towards))
    if back:
        towards, right = -towards, -right
    return np.stack([right, np.cross(towards, right), towards])


class _Disc:
    """The visible half of the sphere seen from far away (orthographic): one unit point per pixel inside the disc."""

    def __init__(self, resolution: int, back: bool) -> None:
        u = np.linspace(-1, 1, resolution)
        x, y = np.meshgrid(u, -u)
        self.inside = x**2 + y**2 < 1
        depth = np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))
        self.basis = _view_basis(*VIEW, back)
        screen = np.stack([x[self.inside], y[self.inside], depth[self.inside]], 1)
        self.points = (screen @ self.basis).astype(np.float32)  # world coordinates of the visible points

    def world(self, mask: np.ndarray) -> np.ndarray:
        """World coordinates of the pixels in ``mask`` (a subset of ``inside``), in the order numpy indexes them."""
        return self.points[mask[self.inside]]

    def project(self, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Screen (x, y) of unit vectors, and which of them face this view."""
        screen = world @ self.basis.T
        return screen[:, :2], screen[:, 2] >= 0

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """An RGBA uint8 image: ``rgb`` in [0, 1] (one row per visible point) inside the disc, clear outside."""
        out = np.zeros(self.inside.shape + (4,), dtype=np.uint8)
        out[self.inside, :3] = np.round(255 * rgb)
        out[self.inside, 3] = 255
        return out


class SpherePicture(LivePicture):
    """The sphere as a picture: class regions at margin m (top) and p(nearest class) at scale s (bottom), each
    seen from the front and from the back, so every point of the sphere is in view once; samples as ● (past
    their margin) or ✕ (not yet), sized by their ArcFace loss in the bottom row; ★ the class centres.

    Colours are computed per pixel, so region edges are as smooth as the image. A ``LivePicture``: redrawn by an
    s slider and an m slider through a display handle — the live explorer on Colab. Live, each disc is computed at
    the screen's own pixel size and written straight into the canvas (``paint``), only the half that changed (m
    recolours the regions, s the probabilities). ``sphere_still`` draws the same as ordinary images instead.
    """

    s_description, m_description = "s", "m"  # "scale s" labels the FigureWidget explorer (tests/test_browser.py)
    dpi = 72

    def __init__(self, s: float = 16.0, m: float = 0.3, config: SyntheticConfig | None = None,
                 resolution: int | None = None) -> None:
        self.config = config or synthetic_config()
        if self.config.centres.shape[1] != 3:
            raise ValueError("SpherePicture needs a 3-D configuration (synthetic_config(dim=3))")
        self.resolution = resolution  # None: live, painted at the screen's pixel size; a number: images (the still)
        self.views = [_Disc(3, back) for back in (False, True)]  # for projecting markers; pixels come later
        self.centres32 = self.config.centres.astype(np.float32)
        self._painted: dict[int, tuple] = {}
        self._discs: dict[tuple[int, bool], _Disc] = {}
        super().__init__(s, m)

    def build(self, s: float, m: float):
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import BoundaryNorm
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        fig = Figure(figsize=(9.6, 10.2), layout="constrained")
        grid = fig.subplots(2, 2)
        self.axes, self.markers, self.images = [], [], []
        rows = ("class regions at margin m", "p(nearest class) at scale s")
        for r, row in enumerate(grid):
            for ax, view, back, side in zip(row, self.views, (False, True), ("front", "back")):
                if self.resolution is not None:
                    disc = _Disc(self.resolution, back)
                    self.images.append((ax.imshow(disc.image(np.ones((len(disc.points), 3))), extent=(-1, 1, -1, 1),
                                                  interpolation="antialiased", zorder=0), disc))
                ax.add_patch(_circle_patch())
                screen, visible = view.project(self.config.centres)
                for c in np.flatnonzero(visible):
                    ax.plot(*screen[c], marker="*", ms=15, color=CLASS_COLOURS[c], mec="white", mew=1.2, zorder=4,
                            animated=True)
                past = ax.scatter([], [], marker="o", edgecolors="black", linewidths=0.6, animated=True, zorder=3)
                not_past = ax.scatter([], [], marker="X", edgecolors="black", linewidths=0.6, animated=True,
                                      zorder=3)
                self.axes.append(ax)
                self.markers.append((past, not_past))
                ax.set_title(f"{rows[r]}, seen from the {side}", fontsize=11)
                ax.set(xlim=(-1.08, 1.08), ylim=(-1.08, 1.08), aspect="equal")
                ax.set_axis_off()
        C = self.config.num_classes
        # p in bands of 0.1 (flat colours: the bands read as contour lines, and the PNG stays small)
        self.levels = np.round(np.arange(np.floor(10 / C) / 10, 1.0001, 0.1), 1)
        self.norm = BoundaryNorm(self.levels, 256)
        fig.colorbar(ScalarMappable(self.norm, "viridis"), ax=grid[1], location="right", shrink=0.8,
                     label="p(nearest class)")
        handles = [Patch(color=CLASS_COLOURS[c], label=f"class {c} (★: its centre W{c})") for c in range(C)]
        handles += [Patch(color=MARGIN_COLOUR, label=LEGEND_NOTES["zone"]),
                    Line2D([], [], ls="", marker="o", ms=7, mfc="white", mec="black", label=LEGEND_NOTES["past"][2:]),
                    Line2D([], [], ls="", marker="X", ms=8, mfc="white", mec="black",
                           label=LEGEND_NOTES["not_past"][2:]),
                    Line2D([], [], ls="", marker="o", ms=11, mfc="white", mec="black",
                           label="bottom row: marker size grows with the sample's ArcFace loss")]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9, frameon=False)
        # two lines of header: the status line (changes with s and m) above the synthetic note (does not)
        fig.suptitle(f" \n{SYNTHETIC_NOTE}", fontsize=11, color="0.35")
        self.title = fig.text(0.5, 0.995, " ", ha="center", va="top", fontsize=11, animated=True)
        self.rgb = _region_rgb(C)
        return fig

    def _values(self, k: int, points: np.ndarray) -> np.ndarray:
        """Per point of panel k: the region index + 1 (panels 0, 1, at m) or the p band (panels 2, 3, at s)."""
        if k < 2:
            return regions(points, self.centres32, self.m) + 1
        return np.asarray(self.norm(probabilities(points, self.centres32, self.s).max(1)))

    def _colours(self, k: int, values: np.ndarray) -> np.ndarray:
        import matplotlib

        if k < 2:
            return self.rgb[values]
        return matplotlib.colormaps["viridis"](np.minimum(values, 255) / 255)[:, :3]  # the norm maps p to 0 … 255

    def _disc(self, n: int, back: bool) -> _Disc:
        """The pixel grid of one view, made once per size (a move reuses it)."""
        if (n, back) not in self._discs:
            self._discs[n, back] = _Disc(n, back)
        return self._discs[n, back]

    def _panel(self, k: int, n: int) -> np.ndarray:
        """Panel k as an (n, n, 4) image, computed on a grid of half the size and refined where that grid changes
        value: full-resolution edges for about a third of the work."""
        half = self._disc((n + 1) // 2, back=k % 2 == 1)
        coarse = np.full(half.inside.shape, -1)
        coarse[half.inside] = self._values(k, half.points)
        fine = np.repeat(np.repeat(coarse, 2, 0), 2, 1)[:n, :n]
        edge = np.zeros_like(coarse, dtype=bool)
        edge[:-1] |= coarse[:-1] != coarse[1:]
        edge[1:] |= coarse[:-1] != coarse[1:]
        edge[:, :-1] |= coarse[:, :-1] != coarse[:, 1:]
        edge[:, 1:] |= coarse[:, :-1] != coarse[:, 1:]
        disc = self._disc(n, back=k % 2 == 1)
        redo = np.repeat(np.repeat(edge, 2, 0), 2, 1)[:n, :n] & disc.inside
        fine[~disc.inside] = 0
        if redo.any():
            fine[redo] = self._values(k, disc.world(redo))
        return disc.image(self._colours(k, fine[disc.inside]))

    def update(self, s: float, m: float) -> None:
        config = self.config
        self.s, self.m = s, m
        losses = sample_losses(config, s, m)
        accepted = regions(config.embeddings, config.centres, m) == config.labels
        self.mean_loss, self.not_past = float(losses.mean()), int((~accepted).sum())
        for k, view in enumerate(self.views):
            screen, visible = view.project(config.embeddings)
            for row in (0, 1):
                for marker, keep in zip(self.markers[2 * row + k], (accepted, ~accepted)):
                    keep = keep & visible
                    marker.set_offsets(screen[keep])
                    marker.set_facecolor([CLASS_COLOURS[c] for c in config.labels[keep]])
                    marker.set_sizes(28 + 90 * np.sqrt(losses[keep]) if row else np.full(keep.sum(), 34.0))
        for k, (image, disc) in enumerate(self.images):  # the still: ordinary images
            image.set_data(disc.image(self._colours(k, self._values(k, disc.points))))
        self.title.set_text(f"{self.status()}; {self.not_past} of {len(config.labels)} samples not yet past "
                            "their margin")

    def paint(self, pixels: np.ndarray) -> None:
        if self.images:
            return
        height = pixels.shape[0]
        for k, ax in enumerate(self.axes):
            key = self.m if k < 2 else self.s  # regions depend on m only, probabilities on s only
            if self._painted.get(k, (None,))[0] != key:
                (x0, y0), (x1, y1) = ax.transData.transform([[-1.0, -1.0], [1.0, 1.0]])
                n, col, row = int(round(x1 - x0)), int(round(x0)), height - int(round(y1))
                image = self._panel(k, n)
                self._painted[k] = (key, row, col, image, (image[..., 3] > 0)[..., None])
            _, row, col, image, inside = self._painted[k]
            n = image.shape[0]
            np.copyto(pixels[row:row + n, col:col + n], image, where=inside)

    def status(self) -> str:
        return _title(self.s, self.m, self.mean_loss)


def _circle_patch():
    from matplotlib.patches import Circle

    return Circle((0, 0), 1.0, fill=False, color="0.3", lw=0.8, zorder=2, animated=True)


def sphere_still(s: float = 16.0, m: float = 0.3, config: SyntheticConfig | None = None, resolution: int = 360):
    """``SpherePicture`` at (s, m) as a plain matplotlib figure (no sliders), each disc an ordinary image of
    ``resolution`` pixels across: the sphere as GitHub and print see it."""
    picture = SpherePicture(s, m, config, resolution)
    for artist in picture.figure.findobj(lambda a: a.get_animated()):
        artist.set_animated(False)
    return picture.figure


def explore(s: float = 16.0, m: float = 0.3, config: SyntheticConfig | None = None):
    """One call for every kernel: ``SphereExplorer`` (rotatable plotly FigureWidget) in Jupyter; on Colab, whose
    front end leaves plotly inside widgets blank, ``SpherePicture`` (sliders and a picture redrawn through its
    display handle). Display the returned object."""
    config = config or synthetic_config()
    return SpherePicture(s, m, config) if in_colab() else SphereExplorer(s, m, config)


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
