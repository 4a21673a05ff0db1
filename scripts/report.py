"""Build the series' PDF report: introduction, every chapter with its committed outputs, conclusion.

    python scripts/report.py [--out build/arclib-report.pdf]

The notebooks are joined into one notebook (interactive outputs — plotly, widgets — dropped: a PDF cannot move),
turned into a self-contained HTML page with nbconvert, and printed to PDF by Chromium through Playwright (the
Debian package's /usr/bin/chromium, or $ARCLIB_CHROMIUM).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
# Long code lines wrap instead of running off the page.
PRINT_CSS = """<style>
pre, .jp-InputArea-editor pre, .highlight pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }
.jp-Cell { break-inside: avoid-page; }
.jp-RenderedImage img { max-width: 100% !important; height: auto; }
</style>"""
# jupyter-server-mathjax ships only the STIX-Web fonts: tell MathJax before it loads.
MATHJAX_FONTS = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], webFont: "STIX-Web", imageFont: null},
                    SVG: {font: "STIX-Web"}});
</script>"""
STATIC = {"image/png", "image/jpeg", "image/svg+xml", "text/plain", "text/markdown", "text/latex"}


def static_outputs(cell: nbformat.NotebookNode) -> list:
    """The outputs a page can show: text, tracebacks-free streams and images; widget and plotly outputs dropped."""
    kept = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            kept.append(out)
        elif out.output_type in ("display_data", "execute_result"):
            data = {k: v for k, v in out.data.items() if k in STATIC}
            if any(k != "text/plain" for k in data) or set(out.data) == {"text/plain"}:
                out = nbformat.from_dict({**out, "data": data})
                kept.append(out)
    return kept


def build_notebook(notebooks: list[Path]) -> nbformat.NotebookNode:
    report = nbformat.v4.new_notebook()
    report.cells.append(nbformat.v4.new_markdown_cell((ROOT / "report" / "introduction.md").read_text()))
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if "colab-install" in cell.metadata.get("tags", []):
                continue
            if cell.cell_type == "markdown":
                lines = [ln for ln in cell.source.splitlines() if "colab-badge.svg" not in ln]
                report.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines).strip()))
            elif cell.cell_type == "code":
                source = "\n".join(ln for ln in cell.source.splitlines() if "NBVAL_" not in ln)
                new = nbformat.v4.new_code_cell(source, execution_count=cell.execution_count)
                new.outputs = static_outputs(cell)
                report.cells.append(new)
    report.cells.append(nbformat.v4.new_markdown_cell((ROOT / "report" / "conclusion.md").read_text()))
    report.metadata["title"] = "arclib: ArcFace and its family"
    return report


def mathjax_url() -> str:
    """MathJax from the jupyter-server-mathjax package, so equations typeset offline; else the public CDN."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    script = Path(jupyter_server_mathjax.__file__).parent / "static" / "MathJax.js"
    return script.as_uri() + "?config=TeX-AMS-MML_HTMLorMML-full,Safe"  # the config this package ships


def html_to_pdf(html: Path, pdf: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--allow-file-access-from-files"])
        try:
            page = browser.new_page()
            page.goto(html.resolve().as_uri(), wait_until="load")
            # wait until MathJax has typeset every equation (it queues the callback after its own work)
            page.evaluate("""() => new Promise(done => {
                if (!window.MathJax || !MathJax.Hub) return done();
                MathJax.Hub.Queue(() => done());
            })""")
            page.emulate_media(media="print")
            page.pdf(path=str(pdf), format="A4", print_background=True,
                     margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
        finally:
            browser.close()


def find_chromium() -> str | None:
    return os.environ.get("ARCLIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "arclib-report.pdf", help="the PDF to write")
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters (default: every notebook, in order)")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no Chromium found: install it (Debian: apt-get install chromium) or set ARCLIB_CHROMIUM", file=sys.stderr)
        return 2
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    report = build_notebook(notebooks)
    exporter = HTMLExporter(template_name="lab", embed_images=True, mathjax_url=mathjax_url())
    body, _ = exporter.from_notebook_node(report)
    body = body.replace("</head>", PRINT_CSS + "\n</head>", 1)
    body = body.replace("<script src=\"" + exporter.mathjax_url, MATHJAX_FONTS + "\n<script src=\"" + exporter.mathjax_url, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    html = args.out.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    html_to_pdf(html, args.out, chromium)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB) from {len(notebooks)} notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
