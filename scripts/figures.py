"""Regenerate figures/ and its manifest: which notebook (or test) writes each PNG.

    python scripts/figures.py            # execute every notebook in full mode, then write figures/MANIFEST.md
    python scripts/figures.py --manifest # only rewrite the manifest from the notebooks' save_figure calls

Notebooks save their figures with ``arclib.config.save_figure(fig, "NAME")`` (a no-op in quick mode), so executing
a notebook in full mode rewrites its PNGs. The browser screenshot, 06_browser_explorer.png, is taken by
``tests/test_browser.py`` (JupyterLab + Chromium), which this script runs with ``ARCLIB_BROWSER_FIGURE`` set: the
test alone writes only to its temporary folder.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SAVE_RE = re.compile(r"""save_figure\(\s*[\w.]+\s*,\s*f?["']([\w\-{}]+)["']""")
BROWSER_FIGURE = "06_browser_explorer"
OTHER_SOURCES = {BROWSER_FIGURE: "tests/test_browser.py (JupyterLab + Chromium screenshot), run by `make figures`"}


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


def browser_screenshot(path: Path) -> None:
    """Run the browser test with ARCLIB_BROWSER_FIGURE=path; say so if it skipped or failed (path unchanged)."""
    before = path.stat().st_mtime if path.exists() else None
    env = dict(os.environ, ARCLIB_BROWSER_FIGURE=str(path))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                          str(ROOT / "tests" / "test_browser.py")], env=env, cwd=ROOT, capture_output=True, text=True)
    after = path.stat().st_mtime if path.exists() else None
    if run.returncode != 0 or after is None or after == before:
        print(f"{path.name}: NOT updated (tests/test_browser.py: {run.stdout.strip().splitlines()[-1:]})")
    else:
        print(f"{path.name}: screenshot from tests/test_browser.py")


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
        browser_screenshot(ROOT / "figures" / f"{BROWSER_FIGURE}.png")
    (ROOT / "figures" / "MANIFEST.md").write_text(manifest())
    print("wrote figures/MANIFEST.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
