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


def test_sphere_figure_traces(config, mesh):
    fig = sphere.sphere_figure(16.0, 0.3, config, mesh)
    assert isinstance(fig, plotly.graph_objects.Figure)
    assert fig.data[0].type == "mesh3d" and len(fig.data[0].intensity) == len(mesh.faces)
    assert len(fig.data[2].x) == len(config.labels)
    assert "synthetic" in fig.layout.title.text


def test_explorer_redraws_when_sliders_are_set_from_code(config, mesh):
    ex = sphere.SphereExplorer(16.0, 0.0, config, mesh)
    region_before = np.array(ex.figure.data[0].intensity)
    prob_before = np.array(ex.figure.data[1].intensity)
    sizes_before = np.array(ex.figure.data[3].marker.size)

    ex.m_slider.value = 0.5
    region_after = np.array(ex.figure.data[0].intensity)
    assert (region_after == 0).sum() > (region_before == 0).sum()  # margin zone (value 0) grows
    for j in range(1, config.num_classes + 1):
        assert (region_after == j).sum() <= (region_before == j).sum()
    assert "m = 0.50" in ex.figure.layout.title.text
    sizes_after = np.array(ex.figure.data[3].marker.size)  # size grows with the loss, the loss with m
    assert np.all(sizes_after >= sizes_before) and sizes_after.sum() > sizes_before.sum()

    ex.s_slider.value = 64.0
    prob_after = np.array(ex.figure.data[1].intensity)
    assert prob_after.mean() > prob_before.mean()  # sharper probabilities
    np.testing.assert_array_equal(np.array(ex.figure.data[0].intensity), region_after)  # s leaves regions


def test_time_slider_updates_runs_the_callback(config, mesh):
    ex = sphere.SphereExplorer(16.0, 0.0, config, mesh)
    sphere.time_slider_updates(ex.m_slider, [0.2, 0.4])
    assert ex.m_slider.value == 0.4 and "m = 0.40" in ex.figure.layout.title.text


def test_explore_picks_the_viewer_by_kernel(monkeypatch, config):
    assert isinstance(sphere.explore(config=config), sphere.SphereExplorer)
    import sys
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    shown = []
    monkeypatch.setattr(plotly.graph_objects.Figure, "show", lambda self, *a, **k: shown.append(self))
    sphere.explore(config=config)
    assert shown and isinstance(shown[0], plotly.graph_objects.Figure)


def test_kernel_free_figure_has_one_step_per_grid_value(config, mesh):
    s_values, m_values = (2.0, 8.0, 16.0, 64.0), (0.0, 0.2, 0.4, 0.6)
    fig = sphere.sphere_slider_figure(s_values, m_values, config, mesh)
    m_slider, s_slider = fig.layout.sliders
    assert [st.label for st in m_slider.steps] == [f"{m:.2f}" for m in m_values]
    assert [st.label for st in s_slider.steps] == [f"{s:g}" for s in s_values]
    zones = [np.sum(np.array(st.args[0]["intensity"][0]) == 0) for st in m_slider.steps]
    assert zones[0] == 0 and all(b > a for a, b in zip(zones, zones[1:]))
    sharp = [np.mean(st.args[0]["intensity"][0]) for st in s_slider.steps]
    assert all(b > a for a, b in zip(sharp, sharp[1:]))
    assert all(st.method == "restyle" for st in (*m_slider.steps, *s_slider.steps))


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
