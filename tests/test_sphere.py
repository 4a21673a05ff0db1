"""arclib.sphere: the region / probability / loss maths on the sphere, and that its three viewers react to
their sliders (the live ones when a slider is set from code, the kernel-free one through its stored steps)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arclib import sphere

plotly = pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def config():
    return sphere.synthetic_config()


@pytest.fixture(scope="module")
def mesh():
    return sphere.sphere_mesh(24, 12)


def test_synthetic_config_is_seeded_and_unit(config):
    again = sphere.synthetic_config()
    np.testing.assert_array_equal(config.embeddings, again.embeddings)
    np.testing.assert_allclose(np.linalg.norm(config.centres, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(config.embeddings, axis=1), 1.0)
    assert "synthetic" in config.note
    assert sphere.synthetic_config(dim=2).centres.shape[1] == 2


def test_mesh_covers_the_sphere():
    mesh = sphere.sphere_mesh(40, 20)
    assert mesh.faces.shape == (2 * 40 * 19, 3)
    assert mesh.areas.sum() == pytest.approx(4 * math.pi, rel=0.02)
    np.testing.assert_allclose(np.linalg.norm(mesh.centroids, axis=1), 1.0)


def test_without_margin_regions_are_the_nearest_centre(config, mesh):
    reg = sphere.regions(mesh.centroids, config.centres, 0.0)
    np.testing.assert_array_equal(reg, (mesh.centroids @ config.centres.T).argmax(1))


def test_region_rule_is_cos_theta_plus_m_beats_every_other_cosine(config, mesh):
    m = 0.3
    cos = np.clip(mesh.centroids @ config.centres.T, -1, 1)
    theta = np.arccos(cos)
    want = np.full(len(cos), -1)
    for j in range(config.num_classes):
        others = np.delete(cos, j, axis=1).max(1)
        want[np.cos(theta[:, j] + m) > others] = j  # θ_j + m < π on these points, so the tail plays no role
    np.testing.assert_array_equal(sphere.regions(mesh.centroids, config.centres, m), want)


def test_accepted_area_shrinks_as_the_margin_grows(config):
    areas = np.array([sphere.accepted_area(config.centres, m) for m in (0.0, 0.1, 0.2, 0.4, 0.6, 0.8)])
    assert areas[0].sum() == pytest.approx(1.0)
    assert np.all(np.diff(areas, axis=0) < 0)  # every class, every step


def test_probabilities_sharpen_as_s_grows(config, mesh):
    tops = [sphere.probabilities(mesh.centroids, config.centres, s).max(1) for s in (1.0, 4.0, 16.0, 64.0)]
    np.testing.assert_allclose(sphere.probabilities(mesh.centroids, config.centres, 8.0).sum(1), 1.0)
    assert all(np.all(b >= a) for a, b in zip(tops, tops[1:]))
    assert tops[-1].mean() > 0.95 and tops[0].mean() < 0.5


def test_sample_losses_grow_with_the_margin(config):
    losses = [sphere.sample_losses(config, 16.0, m) for m in (0.0, 0.2, 0.4)]
    assert all(np.all(b > a) for a, b in zip(losses, losses[1:]))


def test_icosphere_is_even_and_checks_its_argument():
    mesh = sphere.icosphere(3)
    assert (len(mesh.vertices), len(mesh.faces)) == (642, 1280)
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 1.0)
    assert mesh.areas.sum() == pytest.approx(4 * math.pi, rel=0.01)
    assert mesh.areas.max() / mesh.areas.min() < 1.5  # nearly equal faces, no crowding at the poles
    with pytest.raises(ValueError, match="subdivisions"):
        sphere.icosphere(9)


@pytest.fixture(scope="module")
def ico():
    return sphere.icosphere(3)


def _accepted_vertices(fig, C: int) -> int:
    """How many region-mesh vertices are coloured as a class (f_j > 0) rather than margin-zone grey."""
    return sum(int((np.array(fig.data[i].intensity) > 0).sum()) for i in sphere.traces(C)["regions"])


def test_margin_values_are_positive_exactly_where_regions_accept(config, mesh):
    for m in (0.0, 0.3):
        f = sphere.margin_values(mesh.centroids, config.centres, m)
        reg = sphere.regions(mesh.centroids, config.centres, m)
        np.testing.assert_array_equal(np.where((f > 0).any(1), f.argmax(1), -1), reg)


def test_sphere_figure_draws_one_smooth_region_piece_per_class_and_explains_every_mark(config, ico):
    fig = sphere.sphere_figure(16.0, 0.3, config, ico)
    index = sphere.traces(config.num_classes)
    assert isinstance(fig, plotly.graph_objects.Figure)
    pieces = [fig.data[i] for i in index["regions"]]
    assert all(t.type == "mesh3d" and t.intensitymode == "vertex" for t in pieces)
    assert sum(len(t.i) for t in pieces) == len(ico.faces)  # every face in exactly one piece
    for j, t in enumerate(pieces):  # grey below f_j = 0, the class colour above: the edge is where f_j = 0
        assert t.colorscale[0][1] == sphere.MARGIN_COLOUR and t.colorscale[-1][1] == sphere.CLASS_COLOURS[j]
        assert t.cmin == -t.cmax
    prob = fig.data[index["probability"][0]]
    assert prob.intensitymode == "vertex" and len(prob.intensity) == len(sphere.icosphere(3).vertices)
    assert len(fig.data[index["samples_left"][0]].x) == len(config.labels)
    assert "m = 0.30" in fig.layout.title.text
    assert any("synthetic" in a.text for a in fig.layout.annotations)
    names = " | ".join(t.name for t in fig.data if t.showlegend is not False)
    for mark in ("margin zone", "past its margin", "not yet past", "centre W", "loss"):
        assert mark in names
    # nothing above the frame: subplot titles sit inside the plotting area, the title has a top margin
    assert all(a.y <= 1.0 for a in fig.layout.annotations if a.yref == "paper" and a.text.startswith(("class", "p(")))
    assert fig.layout.margin.t >= 60


def test_explorer_redraws_when_sliders_are_set_from_code(config, ico):
    ex = sphere.SphereExplorer(16.0, 0.0, config, ico)
    index = sphere.traces(config.num_classes)
    accepted_before = _accepted_vertices(ex.figure, config.num_classes)
    prob_before = np.array(ex.figure.data[index["probability"][0]].intensity)
    sizes_before = np.array(ex.figure.data[index["samples_right"][0]].marker.size)

    ex.m_slider.value = 0.5
    accepted_after = _accepted_vertices(ex.figure, config.num_classes)
    assert accepted_after < 0.7 * accepted_before  # the margin zone opens
    assert "m = 0.50" in ex.figure.layout.title.text
    sizes_after = np.array(ex.figure.data[index["samples_right"][0]].marker.size)  # size grows with the loss
    assert np.all(sizes_after >= sizes_before) and sizes_after.sum() > sizes_before.sum()

    ex.s_slider.value = 64.0
    prob_after = np.array(ex.figure.data[index["probability"][0]].intensity)
    assert prob_after.mean() > prob_before.mean()  # sharper probabilities
    assert _accepted_vertices(ex.figure, config.num_classes) == accepted_after  # s leaves regions


def test_time_slider_updates_runs_the_callback(config, ico):
    ex = sphere.SphereExplorer(16.0, 0.0, config, ico)
    sphere.time_slider_updates(ex.m_slider, [0.2, 0.4])
    assert ex.m_slider.value == 0.4 and "m = 0.40" in ex.figure.layout.title.text


def test_explore_picks_the_viewer_by_kernel(monkeypatch, config):
    assert isinstance(sphere.explore(config=config), sphere.SphereExplorer)
    import sys
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert isinstance(sphere.explore(config=config), sphere.SpherePicture)  # no plotly inside widgets on Colab


def test_kernel_free_figure_has_one_step_per_grid_value(config, ico):
    s_values, m_values = (2.0, 8.0, 16.0, 64.0), (0.0, 0.2, 0.4, 0.6)
    fig = sphere.sphere_slider_figure(s_values, m_values, config, ico)
    index, C = sphere.traces(config.num_classes), config.num_classes
    m_slider, s_slider = fig.layout.sliders
    assert [st.label for st in m_slider.steps] == [f"{m:.2f}" for m in m_values]
    assert [st.label for st in s_slider.steps] == [f"{s:g}" for s in s_values]
    for st in m_slider.steps:  # one restyle: C region pieces get intensities, the left samples their symbols
        assert list(st.args[1]) == index["regions"] + index["samples_left"]
        assert st.args[0]["intensity"][C] is None and list(st.args[0]["marker.symbol"][:C]) == [None] * C
    accepted = [sum(int((np.array(v) > 0).sum()) for v in st.args[0]["intensity"][:C]) for st in m_slider.steps]
    assert all(b < a for a, b in zip(accepted, accepted[1:]))  # the zone grows with m
    crosses = [list(st.args[0]["marker.symbol"][C]).count("x") for st in m_slider.steps]
    assert crosses[0] <= crosses[-1] and crosses[-1] > 0
    sharp = [np.mean(st.args[0]["intensity"][0]) for st in s_slider.steps]
    assert all(b > a for a, b in zip(sharp, sharp[1:]))
    assert all(st.method == "restyle" for st in (*m_slider.steps, *s_slider.steps))


def _picture_pixels(picture) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(picture.png())).convert("RGB"))


def test_sphere_picture_follows_its_sliders(config):
    pytest.importorskip("matplotlib")
    picture = sphere.SpherePicture(16.0, 0.0, config)  # live: each disc painted at the screen's pixel size
    grey = np.array([int(sphere.MARGIN_COLOUR[k:k + 2], 16) for k in (1, 3, 5)])

    def grey_pixels(pixels):  # the margin zone's colour, exactly
        return int((pixels == grey).all(-1).sum())

    before = _picture_pixels(picture)
    picture.m_slider.value = 0.6
    after = _picture_pixels(picture)
    assert grey_pixels(before) < 200 < 5000 < grey_pixels(after)  # (the legend's grey patch is the few before)
    assert "m = 0.60" in picture.status() and picture.not_past > 0
    picture.s_slider.value = 64.0
    assert "s = 64.0" in picture.status() and not np.array_equal(_picture_pixels(picture), after)
    with pytest.raises(ValueError, match="3-D"):
        sphere.SpherePicture(config=sphere.synthetic_config(dim=2))


def test_sphere_still_is_a_plain_figure(config):
    pytest.importorskip("matplotlib")
    fig = sphere.sphere_still(16.0, 0.3, config, resolution=40)
    assert not fig.findobj(lambda a: a.get_animated())  # savefig and the inline backend draw everything
    texts = " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))
    assert "margin zone" in texts and "not yet past" in texts and "m = 0.30" in texts


def test_circle_figure_draws(config):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = sphere.circle_figure(8.0, 0.3)
    assert fig.axes[0].get_xlabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="2-D"):
        sphere.circle_figure(8.0, 0.3, config)


def test_embedding_figure_puts_features_and_centres_on_the_sphere():
    rng = np.random.default_rng(0)
    emb, labels = rng.normal(size=(300, 3)) * 5, rng.integers(0, 4, 300)
    centres = rng.normal(size=(4, 3)) * 3
    fig = sphere.embedding_figure(emb, labels, centres, max_points=200, class_names="abcd")
    assert len(fig.data) == 1 + 4 + 4
    dots = [np.c_[t.x, t.y, t.z] for t in fig.data[1:5]]
    assert sum(len(d) for d in dots) == 200
    assert all(np.allclose(np.linalg.norm(d, axis=1), 1) for d in dots if len(d))
    assert [t.name for t in fig.data[1:5]] == list("abcd")
    tip = np.array([fig.data[5].x[1], fig.data[5].y[1], fig.data[5].z[1]])
    assert np.allclose(tip / np.linalg.norm(tip), centres[0] / np.linalg.norm(centres[0]))
    # the classes keep matplotlib's tab10 colours, as in the 2-D pictures
    assert fig.data[1].marker.color == sphere.TAB10[0]
    with pytest.raises(ValueError, match="3-D embeddings"):
        sphere.embedding_figure(emb[:, :2], labels, centres)
    with pytest.raises(ValueError, match="differ in length"):
        sphere.embedding_figure(emb, labels[:10], centres)
