"""Regenerate figures/ and its manifest: which notebook (or test) writes each PNG.

    python scripts/figures.py            # execute every notebook in full mode, then write figures/MANIFEST.md
    python scripts/figures.py --manifest # only rewrite the manifest from the notebooks' save_figure calls

Notebooks save their figures with ``arclib.config.save_figure(fig, "NAME")`` (a no-op in quick mode), so executing
a notebook in full mode rewrites its PNGs. The browser screenshot comes from ``tests/test_browser.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SAVE_RE = re.compile(r"""save_figure\(\s*[\w.]+\s*,\s*f?["']([\w\-{}]+)["']""")
OTHER_SOURCES = {"06_browser_explorer": "tests/test_browser.py (JupyterLab + Chromium screenshot, `make test`)"}


def figures_by_notebook() -> dict[str, list[str]]:
    found = {}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        names = [n for cell in nb.cells if cell.cell_type == "code" for n in SAVE_RE.findall(cell.source)]
        found[path.name] = names
    return found


def manifest() -> str:
    lines = ["# Figures", "", "Every PNG here is written by code; regenerate them all with `make figures`.", "",
             "| figure | made by |", "| --- | --- |"]
    made_by = {}
    for notebook, names in figures_by_notebook().items():
        for name in names:
            made_by[name] = f"[notebooks/{notebook}](../notebooks/{notebook}) (full mode)"
    made_by.update(OTHER_SOURCES)
    for png in sorted((ROOT / "figures").glob("*.png")):
        source = made_by.get(png.stem) or next(
            (v for k, v in made_by.items() if "{" in k and re.fullmatch(re.sub(r"\{[^}]*\}", r"[\\w\\-]+", k), png.stem)),
            "unknown")
        lines.append(f"| [{png.name}]({png.name}) | {source} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", action="store_true", help="only rewrite figures/MANIFEST.md")
    args = parser.parse_args(argv)
    if not args.manifest:
        os.environ.pop("ARCLIB_QUICK", None)
        sys.path.insert(0, str(ROOT / "scripts"))
        from execute_notebooks import execute

        for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            print(f"{path.name}: executed in {execute(path, timeout=7200):.0f} s", flush=True)
    (ROOT / "figures" / "MANIFEST.md").write_text(manifest())
    print("wrote figures/MANIFEST.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
