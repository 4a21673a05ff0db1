import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest

from arclib.widgets import LivePicture, ScaleMarginExplorer, in_colab, time_slider_updates


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


class Bar(LivePicture):
    """A bar of height s and a changing label: the smallest LivePicture."""

    def build(self, s, m):
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2, 2))
        ax = fig.subplots()
        ax.set(xlim=(0, 1), ylim=(0, 64))
        self.bar = ax.bar([0.5], [s], width=0.5, animated=True)[0]
        return fig

    def update(self, s, m):
        self.bar.set_height(s)
        self.s, self.m = s, m

    def status(self):
        return f"bar s = {self.s:g}, m = {self.m:g}"


@pytest.fixture
def published(monkeypatch):
    """A real IPython shell whose display publisher records every message instead of sending it to a front end:
    what a kernel would send to JupyterLab or Colab."""
    pytest.importorskip("ipywidgets")
    from IPython.core.interactiveshell import InteractiveShell

    class Recording:
        def __init__(self):
            self.messages = []

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            self.messages.append({"data": data, "transient": transient or {}, "update": update})

        def clear_output(self, wait=False):
            pass

    had = InteractiveShell.initialized()
    shell = InteractiveShell.instance()
    recording = Recording()
    monkeypatch.setattr(shell, "display_pub", recording)
    yield recording.messages
    if not had:
        InteractiveShell.clear_instance()


def _png_pixels(data: dict) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB"))


def test_live_picture_publishes_a_new_png_through_its_display_id_on_each_move(published):
    from IPython.display import display

    picture = Bar(16.0, 0.3)
    display(picture)
    widget, first = published  # the sliders (a widget view), then the picture: a top-level image/png output
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]
    assert "image/png" in first["data"] and not first["update"]
    assert first["data"]["text/plain"] == "bar s = 16, m = 0.3"
    display_id = first["transient"]["display_id"]

    picture.s_slider.value = 48.0  # what a slider move in the browser does in the kernel
    update = published[-1]
    assert len(published) == 3 and update["update"] and update["transient"]["display_id"] == display_id
    assert update["data"]["text/plain"] == "bar s = 48, m = 0.3"
    taller = _png_pixels(update["data"])
    assert taller.shape == _png_pixels(first["data"]).shape
    assert not np.array_equal(taller, _png_pixels(first["data"]))  # the new PNG shows the new bar
    picture.m_slider.value = 0.5
    assert len(published) == 4 and published[-1]["update"]
    assert published[-1]["data"]["text/plain"] == "bar s = 48, m = 0.5"


def test_live_picture_redraws_without_a_front_end_and_times_it():
    picture = Bar(16.0, 0.3)
    first = picture.png()
    assert time_slider_updates(picture.s_slider, [20.0, 30.0]) >= 0
    assert picture.png() != first and picture.handle is None


def test_in_colab_follows_the_google_colab_module(monkeypatch):
    import sys
    import types

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not in_colab()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert in_colab()


def test_redraw_benchmark_prints_a_row_per_explorer():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "redraw.py"), "--moves", "1"],
                          capture_output=True, text=True, cwd=root, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 0")]
    assert len(rows) == 3 and all(row.count(" ms) |") == 2 for row in rows)
    assert "- CPU:" in proc.stdout
