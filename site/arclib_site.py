"""What the website needs beyond MyST-NB's defaults, as small hooks (used by site/conf.py).

* ``read_notebook``: MyST-NB's reader for ``.ipynb`` (``nb_custom_formats``). The notebooks are committed with
  outputs meant for JupyterLab and Colab; on a static page they change as follows, in memory only:
  - a plotly output (``application/vnd.plotly.v1+json``) is drawn by plotly's own ``to_html`` without any
    ``<script src>``: the page loads plotly.js from ``_static`` (the notebook's ``text/html`` loads it from a CDN);
  - the ``notebook_connected`` set-up output (a script that imports plotly.js from a CDN) is dropped;
  - a widget view is dropped from its bundle (no kernel, no widget state): its picture or text remains;
  - the Colab badge (an image on colab.research.google.com) becomes a plain link to the same address.
* ``readme``: the landing page is README.md: its links to files that are not pages go to the repository, and a
  hidden table of contents lists the chapters in order (prev/next navigation).
* ``copy_assets``: MathJax 2.7 (jupyter-server-mathjax) and plotly.min.js (plotly) into ``_static``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\(([^)]+)\)")
LINK_RE = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
CHAPTERS_TOCTREE = """

```{toctree}
:hidden:
:glob:
:caption: Chapters

notebooks/[0-9][0-9]_*
```
"""


def plotly_html(figure: dict) -> str:
    """A plotly figure as a <div> and the script that draws it, expecting plotly.js already on the page."""
    import plotly.io as pio

    layout = figure.get("layout", {})
    return pio.to_html(figure, include_plotlyjs=False, include_mathjax=False, full_html=False, validate=False,
                       config=figure.get("config"), default_height=layout.get("height", 520),
                       default_width="100%")


def _is_plotly_cdn_setup(output: dict) -> bool:
    html = output.get("data", {}).get("text/html", "")
    html = "".join(html) if isinstance(html, list) else html
    return "cdn.plot.ly" in html and "plotly-graph-div" not in html


def prepare(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The changes a kernel-free page needs (module docstring); the notebook object is changed and returned."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = BADGE_RE.sub(r"[Open in Colab](\1)", cell.source)
            continue
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if _is_plotly_cdn_setup(output):
                continue
            data = output.get("data")
            if data is not None:
                if PLOTLY_MIME in data:
                    data["text/html"] = plotly_html(data.pop(PLOTLY_MIME))
                data.pop(WIDGET_MIME, None)
                if not data:
                    continue
            kept.append(output)
        cell.outputs = kept
    nb.metadata.pop("widgets", None)
    return nb


def read_notebook(text: str) -> nbformat.NotebookNode:
    return prepare(nbformat.reads(text, as_version=4))


def readme(text: str, repository: str) -> str:
    """README.md as the landing page: chapter links stay (MyST makes them page links), images stay, other
    relative links point at the repository; then the hidden table of contents."""

    def link(match: re.Match) -> str:
        bang, label, target = match.groups()
        if bang or re.match(r"[a-z]+:|#", target) or re.fullmatch(r"notebooks/\d\d_[\w\-]+\.ipynb", target):
            return match.group(0)
        return f"[{label}]({repository}/blob/main/{target})"

    return LINK_RE.sub(link, text) + CHAPTERS_TOCTREE


def copy_assets(outdir: Path) -> None:
    import jupyter_server_mathjax
    import plotly

    static = Path(outdir) / "_static"
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", static / "mathjax", dirs_exist_ok=True)
    shutil.copy2(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")


def setup(app, repository: str) -> None:
    def on_source_read(app, docname, source):
        if docname == app.config.root_doc:
            source[0] = readme(source[0], repository)

    def on_page_context(app, pagename, templatename, context, doctree):
        if "plotly-graph-div" in context.get("body", ""):
            app.add_js_file("plotly.min.js", priority=100)  # this page only; before the figures' inline scripts

    def on_build_finished(app, exception):
        if exception is None and app.builder.format == "html":
            copy_assets(Path(app.outdir))

    app.connect("source-read", on_source_read)
    app.connect("html-page-context", on_page_context)
    app.connect("build-finished", on_build_finished)
