"""`make report` builds one PDF with the introduction, every chapter and the conclusion."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import report  # noqa: E402

pypdf = pytest.importorskip("pypdf", reason="pypdf is not installed (pip install pypdf)")
pytestmark = pytest.mark.skipif(report.find_chromium() is None,
                                reason="no Chromium installed (Debian: apt-get install chromium)")


def test_report_pdf_has_every_section(tmp_path):
    pdf = tmp_path / "report.pdf"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), "--out", str(pdf)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert pdf.read_bytes()[:5] == b"%PDF-"
    reader = pypdf.PdfReader(pdf)
    text = "\n".join(page.extract_text() for page in reader.pages)
    # NFKC folds the typeface's ligatures (ﬁ, ﬂ) back into letters: "Veriﬁcation" is "Verification"
    squashed = " ".join(unicodedata.normalize("NFKC", text).split())
    expected = ["ArcFace and its family: a report", "The code.", "Conclusion"]
    import nbformat

    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        first = nbformat.read(path, as_version=4).cells[0].source
        expected.append(next(line[2:] for line in first.splitlines() if line.startswith("# ")))
    for section in expected:
        assert " ".join(section.split()) in squashed, f"section {section!r} missing from the PDF"
    assert len(reader.pages) >= 2 * len(expected) - 6
    assert "Math Processing Error" not in text, "MathJax failed on an equation"


def test_interactive_outputs_are_dropped_and_static_ones_kept():
    import nbformat

    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": {}, "text/html": "<div>",
                                                     "text/plain": "Figure"}),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure>"}),
        nbformat.v4.new_output("stream", name="stdout", text="hello\n"),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {},
                                                     "text/plain": "VBox()"}),
    ]
    kept = report.static_outputs(cell)
    assert [o.output_type for o in kept] == ["display_data", "stream"]
    assert set(kept[0].data) == {"image/png", "text/plain"}
