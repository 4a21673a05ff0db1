"""Every interactive output in a committed chapter has a picture beside it (issue 14, "Static views").

GitHub's notebook view, nbviewer and print run no JavaScript: a plotly figure or an ipywidgets view is blank
there (plotly/plotly.py#931). So every output that is a plotly figure (``application/vnd.plotly.v1+json``, or
``text/html`` that loads plotly) or a widget view (``application/vnd.jupyter.widget-view+json``) needs an
``image/png`` in the same output bundle, in another output of the same cell, or in an output of the code cell
right before it (a still displayed just before the interactive figure).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PLOTLY = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"


def _rich_outputs(cell) -> list[dict]:
    if cell.get("cell_type") != "code":
        return []
    return [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")]


def is_interactive(data: dict) -> bool:
    """A plotly figure or a widget view: what needs JavaScript (and, for a widget, a kernel) to show anything."""
    html = data.get("text/html", "")
    html = "".join(html) if isinstance(html, list) else html
    return PLOTLY in data or WIDGET in data or "plotly" in html.lower()


def has_png(outputs: list[dict]) -> bool:
    return any("image/png" in o.get("data", {}) for o in outputs)


def outputs_without_picture(nb) -> list[str]:
    """'cell N: mime types' for every interactive output with no PNG in its bundle, its cell or the cell before."""
    missing = []
    for index, cell in enumerate(nb.cells):
        outputs = _rich_outputs(cell)
        before = _rich_outputs(nb.cells[index - 1]) if index else []
        for output in outputs:
            data = output.get("data", {})
            if is_interactive(data) and not ("image/png" in data or has_png(outputs) or has_png(before)):
                missing.append(f"cell {index}: {', '.join(sorted(data))}")
    return missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_interactive_output_has_a_picture_beside_it(path):
    missing = outputs_without_picture(nbformat.read(path, as_version=4))
    assert not missing, f"{path.name}: interactive output with no image/png beside it: {'; '.join(missing)}"


def _nb(*cells):
    return nbformat.v4.new_notebook(cells=list(cells))


def _code(*outputs):
    return nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("display_data", data=d) for d in outputs])


PNG = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}


def test_the_rule_accepts_a_picture_in_the_bundle_the_cell_or_the_cell_before():
    assert outputs_without_picture(_nb(_code({PLOTLY: {}, "image/png": "x"}))) == []
    assert outputs_without_picture(_nb(_code(PNG, {PLOTLY: {}, "text/html": "<div>"}))) == []
    assert outputs_without_picture(_nb(_code(PNG), _code({WIDGET: {"model_id": "a"}}))) == []


def test_the_rule_rejects_interactive_outputs_alone():
    assert outputs_without_picture(_nb(_code({WIDGET: {"model_id": "a"}, "text/plain": "VBox"}))) == [
        "cell 0: application/vnd.jupyter.widget-view+json, text/plain"]
    assert outputs_without_picture(_nb(_code({"text/html": "<script src='plotly.min.js'>"}))) != []
    # a picture two cells before, or in a markdown cell before, does not count
    markdown = nbformat.v4.new_markdown_cell("![](x.png)")
    assert outputs_without_picture(_nb(_code(PNG), markdown, _code({PLOTLY: {}}))) == ["cell 2: " + PLOTLY]
    assert outputs_without_picture(_nb(_code({"text/html": "<b>no figure</b>"}))) == []
