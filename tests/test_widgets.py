import sys
import types

import plotly.graph_objects as go

from arclib.widgets import ScaleMarginExplorer, in_colab, time_slider_updates


class Recorder(ScaleMarginExplorer):
    m_range = (0.0, 2.0, 0.1)

    def __init__(self, s: float, m: float) -> None:
        self.calls = []
        super().__init__(go.Figure(go.Scatter(y=[s, m])), s, m)

    def update(self, s: float, m: float) -> None:
        self.calls.append((s, m))
        with self.figure.batch_update():
            self.figure.data[0].y = [s, m]


def test_setting_a_slider_redraws_with_both_values():
    ex = Recorder(10.0, 0.5)
    assert (ex.s_slider.min, ex.s_slider.max, ex.m_slider.max) == (1.0, 64.0, 2.0)
    ex.s_slider.value = 20.0
    ex.m_slider.value = 1.5
    assert ex.calls == [(20.0, 0.5), (20.0, 1.5)]
    assert tuple(ex.figure.data[0].y) == (20.0, 1.5)


def test_time_slider_updates_reports_a_median_of_real_callbacks():
    ex = Recorder(10.0, 0.5)
    seconds = time_slider_updates(ex.s_slider, [11.0, 12.0, 13.0])
    assert seconds >= 0 and [c[0] for c in ex.calls] == [11.0, 12.0, 13.0]


def test_colab_path_renders_plain_figures_through_interact(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert in_colab()
    shown = []
    monkeypatch.setattr(go.Figure, "show", lambda self, *a, **k: shown.append(self))
    Recorder.interact(lambda s, m: go.Figure(go.Scatter(y=[s, m])), 3.0, 0.2)
    assert shown and tuple(shown[-1].data[0].y) == (3.0, 0.2)
