"""Write the Open-in-Colab badge and the Colab install cell into every notebook, from one URL.

The repository's public home is in one place, ``[project.urls] Repository`` in pyproject.toml. Change it
there and run ``python scripts/colab.py``; ``--check`` exits non-zero if any notebook is out of date.

Each notebook's first cell is Markdown whose first line is the badge; its first code cell carries the tag
``colab-install`` and is regenerated whole.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BADGE_RE = re.compile(r"^\[!\[Open In Colab\]\(.*?\)\]\(.*?\)\s*$")


def repository_url() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def badge(url: str, notebook: Path) -> str:
    github_path = url.split("github.com/", 1)[1]
    target = f"https://colab.research.google.com/github/{github_path}/blob/main/notebooks/{notebook.name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({target})"


def install_cell(url: str, widgets: bool) -> str:
    lines = [
        "# On Colab, install arclib from its repository; anywhere else this cell does nothing.",
        "# Colab's own torch, numpy, plotly and ipywidgets are kept: nothing here upgrades them.",
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        f'    %pip install -q "arclib @ git+{url}"',
    ]
    if widgets:
        lines += ["    from google.colab import output", "", "    output.enable_custom_widget_manager()"]
    return "\n".join(lines)


def update(path: Path, url: str, write: bool = True) -> bool:
    """Bring one notebook's badge and install cell up to date; True if anything was (or would be) changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    first = nb.cells[0]
    lines = first.source.split("\n")
    new_badge = badge(url, path)
    if BADGE_RE.match(lines[0]):
        if lines[0] != new_badge:
            lines[0] = new_badge
            changed = True
    else:
        lines = [new_badge, ""] + lines
        changed = True
    first.source = "\n".join(lines)
    cells = [c for c in nb.cells if c.cell_type == "code" and "colab-install" in c.metadata.get("tags", [])]
    if not cells:
        raise SystemExit(f"{path}: no code cell tagged 'colab-install'")
    widgets = "widgets" in cells[0].metadata.get("tags", [])
    source = install_cell(url, widgets)
    if cells[0].source != source:
        cells[0].source = source
        changed = True
    if changed and write:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale notebooks, change nothing")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    url = repository_url()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    stale = []
    for path in paths:
        if args.check:
            if update(path, url, write=False):
                stale.append(path)
        elif update(path, url):
            print(f"updated {path}")
    if stale:
        print("out of date (run python scripts/colab.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
