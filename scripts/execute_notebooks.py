"""Execute notebooks in place, top to bottom, so their committed outputs come from a real run.

    python scripts/execute_notebooks.py notebooks/01_*.ipynb        # full mode (what gets committed)
    ARCLIB_QUICK=1 python scripts/execute_notebooks.py notebooks/*.ipynb

Runs in the notebooks folder with the current Python's kernel, then drops the widget state that
ipywidgets/plotly store in the notebook metadata (megabytes of JavaScript a reader never needs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def strip_widget_state(nb: nbformat.NotebookNode) -> None:
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            out.get("data", {}).pop("application/vnd.jupyter.widget-state+json", None)


def execute(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("PLOTLY_RENDERER", "plotly_mimetype+notebook_connected")
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    strip_widget_state(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        seconds = execute(path, args.timeout)
        mode = "quick" if os.environ.get("ARCLIB_QUICK") else "full"
        print(f"{path}: executed in {mode} mode in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
