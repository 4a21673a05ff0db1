"""Live figures driven by a scale slider s and a margin slider m — one mechanism for every chapter.

In Jupyter a ``ScaleMarginExplorer`` holds a plotly ``FigureWidget`` and two ipywidgets sliders whose ``observe``
callbacks rewrite the figure in place (inside ``batch_update``, one message per move). Colab ships ipywidgets 7,
where FigureWidget is unreliable, so there ``ScaleMarginExplorer.interact`` re-renders a plain figure instead.
plotly and ipywidgets are imported lazily: they are notebook extras, not dependencies of the losses.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence


def in_colab() -> bool:
    """True inside Google Colab, whose ipywidgets 7 cannot run plotly's FigureWidget reliably."""
    return "google.colab" in sys.modules


class ScaleMarginExplorer:
    """A figure redrawn by an s slider and an m slider. Subclasses say how to redraw: ``update(s, m)``."""

    s_description, m_description = "s", "m"
    s_range = (1.0, 64.0, 1.0)   # min, max, step
    m_range = (0.0, 1.0, 0.05)

    def __init__(self, figure, s: float, m: float) -> None:
        import ipywidgets as w
        import plotly.graph_objects as go

        self.figure = go.FigureWidget(figure)
        self.s_slider, self.m_slider = self.sliders(s, m)
        for slider in (self.s_slider, self.m_slider):
            slider.observe(self._on_change, names="value")
        self.widget = w.VBox([w.HBox([self.s_slider, self.m_slider]), self.figure])

    @classmethod
    def sliders(cls, s: float, m: float) -> tuple:
        import ipywidgets as w

        return tuple(w.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                                   continuous_update=False)
                     for value, (lo, hi, step), description in ((s, cls.s_range, cls.s_description),
                                                                (m, cls.m_range, cls.m_description)))

    @classmethod
    def interact(cls, figure_at: Callable[[float, float], object], s: float, m: float) -> None:
        """Colab's path: ``ipywidgets.interact`` showing a fresh plain figure for each slider position."""
        import ipywidgets as w

        s_slider, m_slider = cls.sliders(s, m)
        w.interact(lambda s, m: figure_at(s, m).show(), s=s_slider, m=m_slider)

    def _on_change(self, _change) -> None:
        self.update(self.s_slider.value, self.m_slider.value)

    def update(self, s: float, m: float) -> None:
        raise NotImplementedError

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def time_slider_updates(slider, values: Sequence[float]) -> float:
    """Median seconds from setting ``slider.value`` in code to the end of its ``observe`` callbacks.

    ipywidgets runs the callbacks synchronously on assignment, so this is the kernel-side redraw time
    (recompute plus the FigureWidget update); the browser's own rendering comes on top.
    """
    times = []
    for value in values:
        start = time.perf_counter()
        slider.value = value
        times.append(time.perf_counter() - start)
    return statistics.median(times)
