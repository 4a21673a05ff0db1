"""arclib.plots: the shared drawing helpers draw what they claim and compute their numbers from the losses."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import arclib  # noqa: E402
from arclib import plots  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_arrows_labels_and_distance(ax):
    plots.arrows(ax, [[5, 2], [7, 4]], labels=["A", "B"], distances=[(0, 1)])
    texts = [t.get_text().strip() for t in ax.texts]
    assert "2.83" in texts
    assert [line.get_label() for line in ax.lines if line.get_label().startswith(("A", "B"))] == \
        ["A = [5, 2]", "B = [7, 4]"]
    with pytest.raises(ValueError, match="shape"):
        plots.arrows(ax, [[1, 2, 3]])


def test_angle_arc_degrees(ax):
    assert plots.angle_arc(ax, [1, 0], [0, 1], 1.0) == pytest.approx(90.0)
    assert plots.angle_arc(ax, [0, 1], [1, 0], 1.0) == pytest.approx(90.0)
    assert plots.angle_arc(ax, [-1, 0.01], [-1, -0.01], 1.0) == pytest.approx(math.degrees(2 * math.atan(0.01)))


@pytest.mark.parametrize("theta2", [0.8, 1.2, 2.0, 2.8])
def test_margin_boundary_matches_closed_forms(theta2):
    arc = arclib.make("arcface", s=30, m=0.5)
    cos = arclib.make("cosface", s=30, m=0.35)
    norm = arclib.make("normface", s=30)
    assert plots.margin_boundary(arc, theta2) == pytest.approx(theta2 - 0.5, abs=1e-6)
    assert plots.margin_boundary(norm, theta2) == pytest.approx(theta2, abs=1e-6)
    expected = math.acos(min(1.0, math.cos(theta2) + 0.35))
    assert plots.margin_boundary(cos, theta2) == pytest.approx(expected, abs=1e-4)


def test_margin_boundary_edges():
    arc = arclib.make("arcface", s=30, m=0.5)
    assert plots.margin_boundary(arc, 0.2) == 0.0  # θ2 < m: class 1 never wins with margin
    norm = arclib.make("normface", s=30)
    assert plots.margin_boundary(norm, math.pi) == pytest.approx(math.pi)  # ties only at θ1 = π
    softmax = arclib.make("softmax")
    assert math.isnan(plots.margin_boundary(softmax, 1.0, biases=(3.0, 0.0)))  # a big bias: class 1 always wins


def test_binary_decision_regions(ax):
    win1, win2 = plots.binary_decision(ax, arclib.make("arcface", s=30, m=0.5), title="ArcFace", n=181)
    assert win1.shape == win2.shape == (181, 181)
    assert not (win1 & win2).any()  # a margin loss never lets both classes win at once
    assert (win1 | win2).mean() < 1  # ... and leaves a margin band between them
    win1, win2 = plots.binary_decision(ax, arclib.make("normface", s=30), n=181)
    assert ((win1 | win2).mean()) > 0.98  # no margin: the boundary is just the diagonal
    assert ax.get_xlabel() == "θ1 (degrees)"


def test_flow_diagram(ax):
    centres = plots.flow_diagram(ax, [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")], ncols=3)
    assert centres[3][0] == centres[2][0]  # second row runs back, right to left
    assert len(ax.patches) == 4 + 3
    with pytest.raises(ValueError):
        plots.flow_diagram(ax, [])


def test_live_figure_redraws(monkeypatch):
    widgets = pytest.importorskip("ipywidgets")
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(obj)

    def fake_display(obj, display_id=False):
        if display_id:
            shown.append(obj)
            return Handle()
        return None

    monkeypatch.setattr("IPython.display.display", fake_display)
    calls = []

    def draw(a):
        calls.append(a)
        fig, ax = plt.subplots()
        ax.set_title(f"a = {a}")
        return fig

    slider = widgets.FloatSlider(value=1.0, min=0, max=2)
    plots.live_figure(draw, a=slider)
    slider.value = 1.5
    assert calls == [1.0, 1.5]
    assert len(shown) == 2
    with pytest.raises(ValueError):
        plots.live_figure(draw)


def test_plot_embedding_2d_raw_and_normalised(ax):
    import numpy as np
    import torch

    emb = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-4.0, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 1, 2, 3])
    centres = torch.tensor([[5.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -2.0]])
    raw = plots.plot_embedding_2d(ax, emb, labels, centres, normalise=False)
    assert np.allclose(raw, emb.numpy())
    assert sum(t.get_text() in {"0", "1", "2", "3"} for t in ax.texts) == 4
    ax.clear()
    unit = plots.plot_embedding_2d(ax, emb, labels, centres, normalise=True, jitter=0.0)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0)
    assert np.allclose(unit, [[1, 0], [0, 1], [-1, 0], [0, -1]])
    with pytest.raises(ValueError, match="2-D"):
        plots.plot_embedding_2d(ax, torch.zeros(3, 3), torch.zeros(3), torch.zeros(2, 3))


def test_centre_angles_and_histogram(ax):
    import numpy as np
    import torch

    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    emb = torch.tensor([[math.cos(math.radians(10)), math.sin(math.radians(10))], [0.0, 2.0]])
    own, other = plots.angle_histogram(ax, emb, torch.tensor([0, 1]), centres)
    assert np.allclose(own, [10.0, 0.0], atol=1e-4)
    assert np.allclose(other, [80.0, 90.0], atol=1e-4)
    from arclib.metrics import angle_stats

    stats = angle_stats(emb, torch.tensor([0, 1]), centres)
    assert stats["intra"] == pytest.approx(own.mean(), abs=1e-3)
    assert stats["to_nearest_other_centre"] == pytest.approx(other.mean(), abs=1e-3)


def test_plot_histories():
    from arclib.train import History

    fig, axes = plt.subplots(1, 2)
    h = History(train_loss=[2.0, 1.0], train_acc=[0.5, 0.8], test_acc=[0.6, None], lr=[0.1, 0.05], seconds=[1, 1])
    plots.plot_histories(axes, {"a": h})
    assert list(axes[0].lines[0].get_ydata()) == [2.0, 1.0]
    acc = axes[1].lines[0].get_ydata()
    assert acc[0] == pytest.approx(60.0) and math.isnan(acc[1])
    plt.close(fig)


def test_confusion_matrix(ax):
    import numpy as np
    import torch

    counts = plots.confusion_matrix(ax, torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 2, 0]),
                                    ["a", "b", "c"])
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert counts.sum() == 6
    assert np.allclose(ax.images[0].get_array(), [[50, 50, 0], [0, 100, 0], [100 / 3, 0, 200 / 3]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="same length"):
        plots.confusion_matrix(ax, torch.tensor([0, 3]), torch.tensor([0, 1]), ["a", "b", "c"])


def test_pair_angle_histogram_and_roc(ax):
    import numpy as np
    import torch

    from arclib import metrics

    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4)[:, :4]
    labels = torch.arange(400) % 4
    emb = centres[labels] + 0.3 * torch.randn(400, 4, generator=g)
    result = metrics.verification(emb, labels, n_pairs=400)
    below = plots.pair_angle_histogram(ax, result, threshold=60.0, title="pairs")
    pos, neg = result["positive_angles"], result["negative_angles"]
    assert below == pytest.approx(float((neg < np.median(pos)).mean()))
    assert below < 0.05  # well-separated clusters: hardly any negative pair closer than the median positive
    bars = [p for p in ax.patches]
    assert len(bars) == 2 * 90 and ax.get_title() == "pairs"
    assert any(line.get_xdata()[0] == 60.0 for line in ax.lines)
    with pytest.raises(ValueError, match="positive_angles"):
        plots.pair_angle_histogram(ax, {"positive_angles": [], "negative_angles": [1.0]})
    fig, ax2 = plt.subplots()
    plots.roc_curves(ax2, {"a": result, "b": result})
    assert ax2.get_xscale() == "log" and len(ax2.get_legend().texts) == 2
    assert "AUC" in ax2.get_legend().texts[0].get_text()
    plt.close(fig)


def test_plot_embedding_sphere_puts_points_on_the_unit_sphere():
    import numpy as np
    import torch

    fig = plt.figure()
    ax3 = fig.add_subplot(projection="3d")
    emb = torch.randn(50, 3) * 4
    drawn = plots.plot_embedding_sphere(ax3, emb, torch.arange(50) % 10, torch.randn(10, 3), max_points=20,
                                        title="t")
    assert drawn.shape == (20, 3)
    assert np.allclose(np.linalg.norm(drawn, axis=1), 1.0)
    assert ax3.get_title() == "t" and ax3.get_zlabel() == "x₃"
    assert len(ax3.texts) == 10  # one numbered spoke per class centre
    with pytest.raises(ValueError, match="3-D embeddings"):
        plots.plot_embedding_sphere(ax3, torch.randn(5, 2), torch.arange(5), torch.randn(10, 2))
    plt.close(fig)


def test_metric_against_classes_draws_means_and_seed_bands(ax):
    runs = [{"label": "a", "K": k, "acc": k / 10 + seed} for k in (10, 100) for seed in (0, 1, 2)]
    runs += [{"label": "b", "K": 10, "acc": 5.0}]
    drawn = plots.metric_against_classes(ax, runs, "acc", {"a": "loss A", "b": "loss B"})
    ks, mean, sd = drawn["a"]
    assert ks.tolist() == [10, 100] and mean.tolist() == [2.0, 11.0] and sd.tolist() == [1.0, 1.0]
    assert [line.get_label() for line in ax.lines] == ["loss A", "loss B"] and ax.get_xscale() == "log"
    assert len(ax.collections) == 2  # one band per loss
    with pytest.raises(ValueError, match="labels"):
        plots.metric_against_classes(ax, runs, "acc", {"c": "missing"})
