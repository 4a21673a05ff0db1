"""Sphinx + MyST-NB: the notebook series as a static website (``make site`` → build/site/index.html).

The source folder is the repository root, read through ``include_patterns``: the README is the landing page and
the numbered notebooks are the chapters, shown with their committed outputs (nothing is executed). Everything a
page loads is served from the site itself: MathJax from the jupyter-server-mathjax package, plotly.js from the
plotly package, the theme's own assets. What the notebooks need changed for a page without a kernel is done as
they are read, in ``site/arclib_site.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts"))

import arclib_site  # noqa: E402
import colab  # noqa: E402  (scripts/colab.py: the one repository URL, from pyproject)

REPOSITORY = colab.repository_url()

project = "arclib"
author = "arclib contributors"
copyright = "arclib contributors"
root_doc = "README"
include_patterns = ["README.md", "notebooks/[0-9][0-9]_*.ipynb"]
# Never walk the virtual environments, builds and data beside them.
exclude_patterns = [".*", "build", "data", "runs", "**/.ipynb_checkpoints"]

extensions = ["myst_nb", "sphinx.ext.mathjax"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the committed outputs, as they are
nb_custom_formats = {".ipynb": "arclib_site.read_notebook"}
nb_ipywidgets_js = {}  # no widget state is committed; never load the widget manager from a CDN
suppress_warnings = ["mystnb.unknown_mime_type"]

# MathJax 2.7 from the jupyter-server-mathjax package, copied to _static/mathjax when the build finishes. MyST
# marks its math with class "math" inside sections it marks "tex2jax_ignore": process only those (MyST's own
# MathJax settings are for MathJax 3).
myst_update_mathjax = False
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True,
                "processClass": "tex2jax_process|mathjax_process|math|output_area",
                "ignoreClass": "tex2jax_ignore|mathjax_ignore|document"},
    # the packaged MathJax (as Jupyter's) holds the STIX-Web fonts only
    "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
    "messageStyle": "none",
}

html_theme = "sphinx_book_theme"
html_title = "arclib — ArcFace and its family"
html_static_path = ["_static"]
html_extra_path = ["_extra"]
html_css_files = ["arclib.css"]
html_last_updated_fmt = None
html_show_sourcelink = False
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "path_to_docs": "",
    "use_repository_button": False,
    "use_download_button": True,
    # the same address as the notebooks' own badges (scripts/colab.py)
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_toc_level": 2,
}


def setup(app):
    arclib_site.setup(app, REPOSITORY)
