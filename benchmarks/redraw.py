"""How long does a slider move take? The kernel-side redraw time of every live explorer of chapters 05 and 06.

    python benchmarks/redraw.py              # 15 moves of each slider of each explorer
    python benchmarks/redraw.py --moves 3    # a smoke run

Setting ``slider.value`` from code runs the slider's ``observe`` callbacks synchronously, so timing the assignment
(``arclib.widgets.time_slider_updates``) measures what a move costs in the kernel: recomputing the figure's data and
either rewriting the plotly FigureWidget (SphereExplorer, JupyterLab) or drawing and encoding the new PNG
(CurvePicture and SpherePicture: JupyterLab and Colab). Sending the update and drawing it in the browser come on
top. The target (issue 14): a redraw within 50 ms. Medians over the moves, wall-clock and (in brackets) the CPU
time of this process; the machine description includes the load average, which on a shared 2-core machine
changes every wall-clock number here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from machine import describe  # benchmarks/machine.py, beside this script

os.environ.setdefault("MPLBACKEND", "Agg")


def explorers():
    """(name, where it runs, a factory) for every live explorer of the two chapters."""
    from arclib import sphere
    from arclib.curves import CurvePicture

    return [("05 CurvePicture (s, m)", "JupyterLab, Colab", lambda: CurvePicture(64.0, 0.5)),
            ("06 SpherePicture (s, m)", "JupyterLab, Colab", lambda: sphere.SpherePicture(16.0, 0.4)),
            ("06 SphereExplorer, plotly FigureWidget", "JupyterLab", lambda: sphere.SphereExplorer(16.0, 0.4))]


def median_times(slider, values) -> tuple[float, float]:
    """Median wall-clock and CPU seconds (this process) from setting ``slider.value`` to the end of its callbacks.

    CPU time leaves out the waiting a loaded machine adds to wall-clock time; both are shown."""
    wall, cpu = [], []
    for value in values:
        w, c = time.perf_counter(), time.process_time()
        slider.value = value
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=15, help="moves per slider (default 15)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as in a notebook "
                                                                  "on a shared machine)")
    args = parser.parse_args(argv)
    if args.moves < 1:
        raise SystemExit("--moves must be at least 1")
    torch.set_num_threads(args.threads)
    print(describe())
    print()
    print("| explorer | runs in | s slider: wall (CPU) | m slider: wall (CPU) |")
    print("| --- | --- | --- | --- |")
    for name, where, make in explorers():
        viewer = make()
        if hasattr(viewer, "png"):
            viewer.png()  # the first frame draws the background once, as displaying it does
        s_values = list(np.linspace(8.0, 60.0, args.moves))
        m_values = list(np.linspace(0.05, 0.75, args.moves))
        (s_wall, s_cpu), (m_wall, m_cpu) = median_times(viewer.s_slider, s_values), median_times(viewer.m_slider, m_values)
        print(f"| {name} | {where} | {1e3 * s_wall:.1f} ms ({1e3 * s_cpu:.1f} ms) | "
              f"{1e3 * m_wall:.1f} ms ({1e3 * m_cpu:.1f} ms) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
