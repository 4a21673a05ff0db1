"""Figures driven by a scale slider s and a margin slider m — the two mechanisms every chapter uses.

- ``LivePicture`` (works wherever a kernel runs ipywidgets: JupyterLab, Notebook, VS Code, Colab): two sliders
  and an ordinary ``image/png`` display output, redrawn by matplotlib and replaced through its display id on each
  move — the pattern of ``arclib.plots.live_figure``. Nothing sits inside an ipywidgets ``Output``, which Colab's
  front end leaves blank for plotly (googlecolab/colabtools#5889); and a notebook executed headless keeps the
  picture of the starting state, which is what GitHub, nbviewer and print show.
- ``ScaleMarginExplorer`` (Jupyter only): a plotly ``FigureWidget`` rewritten in place by the sliders' ``observe``
  callbacks (inside ``batch_update``, one message per move); rotatable, but blank wherever widgets do not run.

plotly, ipywidgets and matplotlib are imported lazily: they are notebook extras, not dependencies of the losses.
"""

from __future__ import annotations

import base64
import io
import statistics
import sys
import time
from collections.abc import Sequence

import numpy as np


def in_colab() -> bool:
    """True inside Google Colab, whose ipywidgets 7 cannot run plotly's FigureWidget reliably."""
    return "google.colab" in sys.modules


class _Sliders:
    """An s slider and an m slider (released, not dragged, triggers a redraw) calling ``update(s, m)``."""

    s_description, m_description = "s", "m"
    s_range = (1.0, 64.0, 1.0)   # min, max, step
    m_range = (0.0, 1.0, 0.05)

    @classmethod
    def sliders(cls, s: float, m: float) -> tuple:
        import ipywidgets as w

        return tuple(w.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                                   continuous_update=False)
                     for value, (lo, hi, step), description in ((s, cls.s_range, cls.s_description),
                                                                (m, cls.m_range, cls.m_description)))

    def _connect(self, s: float, m: float) -> None:
        self.s_slider, self.m_slider = self.sliders(s, m)
        for slider in (self.s_slider, self.m_slider):
            slider.observe(self._on_change, names="value")

    def _on_change(self, _change) -> None:
        self.update(self.s_slider.value, self.m_slider.value)

    def update(self, s: float, m: float) -> None:
        raise NotImplementedError


class ScaleMarginExplorer(_Sliders):
    """A plotly FigureWidget redrawn by an s slider and an m slider. Subclasses say how: ``update(s, m)``."""

    def __init__(self, figure, s: float, m: float) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go

        self.figure = go.FigureWidget(figure)
        self._connect(s, m)
        self.widget = w.VBox([w.HBox([self.s_slider, self.m_slider]), self.figure])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class LivePicture(_Sliders):
    """Sliders above a matplotlib picture that each move redraws and re-publishes through its display id.

    Subclasses build a ``matplotlib.figure.Figure`` once (``build(s, m)``) and mark the artists that change as
    *animated*; ``update(s, m)`` changes only those. The rest is drawn once and kept as a background (blitting),
    so a move redraws the changing artists only — that keeps a redraw within tens of milliseconds. The figure is
    made without pyplot, so the inline backend never shows it a second time.
    """

    dpi = 80

    def __init__(self, s: float, m: float) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.figure = self.build(s, m)
        self.figure.set_dpi(self.dpi)
        FigureCanvasAgg(self.figure)
        self._background = None
        self.handle = None
        self._connect(s, m)
        self.update(s, m)

    def build(self, s: float, m: float):
        raise NotImplementedError

    def status(self) -> str:
        """One line of text for front ends that show no image."""
        return type(self).__name__

    def paint(self, pixels: np.ndarray) -> None:
        """Write pixels straight into the canvas (H, W, 4 uint8, row 0 at the top) after the background and before
        the animated artists: for images computed at the screen's own resolution, with no resampling."""

    def png(self, compress_level: int = 1) -> bytes:
        """The picture now, as PNG bytes: the kept background, then every animated artist on top. Moves encode
        fast (level 1); the first frame, which a saved notebook keeps, is compressed harder (level 9)."""
        from PIL import Image

        canvas = self.figure.canvas
        if self._background is None:
            canvas.draw()  # animated artists are skipped here: this is the background
            self._background = canvas.copy_from_bbox(self.figure.bbox)
            changing = self.figure.findobj(lambda a: a.get_animated())
            self._changing = sorted(changing, key=lambda a: a.get_zorder())
        canvas.restore_region(self._background)
        self.paint(np.asarray(canvas.buffer_rgba()))
        for artist in self._changing:
            if artist.get_visible():
                self.figure.draw_artist(artist)
        pixels = canvas.buffer_rgba()
        buffer = io.BytesIO()
        Image.frombuffer("RGBA", (int(pixels.shape[1]), int(pixels.shape[0])), pixels, "raw", "RGBA", 0, 1
                         ).convert("RGB").save(buffer, format="png", compress_level=compress_level)
        return buffer.getvalue()

    def bundle(self, compress_level: int = 1) -> dict:
        """The display data of one frame: base64 PNG (as Jupyter stores it) and a text line."""
        png = self.png(compress_level)
        return {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": self.status()}

    def _on_change(self, _change) -> None:
        super()._on_change(_change)
        data = self.bundle()
        if self.handle is not None:
            self.handle.update(data, raw=True)

    def _ipython_display_(self) -> None:
        import ipywidgets as w
        from IPython.display import display

        display(w.HBox([self.s_slider, self.m_slider]))
        self.handle = display(self.bundle(compress_level=9), raw=True, display_id=True)


def time_slider_updates(slider, values: Sequence[float]) -> float:
    """Median seconds from setting ``slider.value`` in code to the end of its ``observe`` callbacks.

    ipywidgets runs the callbacks synchronously on assignment, so this is the kernel-side redraw time
    (recompute plus the figure update or the new PNG); the browser's own rendering comes on top.
    """
    times = []
    for value in values:
        start = time.perf_counter()
        slider.value = value
        times.append(time.perf_counter() - start)
    return statistics.median(times)
