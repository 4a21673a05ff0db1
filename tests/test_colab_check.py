"""The cheap parts of `make colab-check` (scripts/colab_check.py); the venv build and the notebook runs stay out of CI.

Checks that Colab's lists parse, that the check installs arclib with exactly the command of the notebooks' install
cells, that its pip-report reading catches a change to a Colab package, and that the stand-in kernel looks like
Colab to the install cell, to plotly and to arclib.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import colab  # noqa: E402
import colab_check  # noqa: E402

COLAB_DIR = Path(os.environ.get("ARCLIB_COLAB_DIR", colab_check.DEFAULT_COLAB_DIR))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
needs_lists = pytest.mark.skipif(not (COLAB_DIR / "colab-pip-freeze.txt").is_file(),
                                 reason=f"no Colab package lists at {COLAB_DIR} (set ARCLIB_COLAB_DIR)")


@needs_lists
def test_colab_lists_parse_with_the_versions_the_notebooks_design_for():
    freeze = colab_check.read_pins(COLAB_DIR / "colab-pip-freeze.txt")
    constraints = colab_check.read_pins(COLAB_DIR / "constraints.txt")
    assert {n: freeze[n] for n in ("ipywidgets", "plotly", "ipykernel", "notebook")} == {
        "ipywidgets": "7.7.1", "plotly": "5.24.1", "ipykernel": "6.17.1", "notebook": "6.5.7"}
    assert len(constraints) > 500 and all(freeze[name] == version for name, version in constraints.items())
    assert "torch" not in freeze and "torch" not in constraints  # a URL install on Colab: the check brings its own


def test_read_pins_keeps_only_exact_pins(tmp_path):
    lists = tmp_path / "freeze.txt"
    lists.write_text("# comment\nNumPy==2.1.3\nzope.interface==7.2\nbar[extra]==1.0\n"
                     "torch @ https://example.org/torch.whl\n-e git+https://x/y#egg=y\nbaz>=1\n")
    assert colab_check.read_pins(lists) == {"numpy": "2.1.3", "zope-interface": "7.2", "bar": "1.0"}


def test_the_check_installs_with_the_notebooks_own_install_command():
    url = colab.repository_url()
    args = colab_check.install_command(url)
    assert args == ["install", "-q", f"arclib @ git+{url}"]
    for path in NOTEBOOKS:
        cell = next(c for c in nbformat.read(path, as_version=4).cells if "colab-install" in c.metadata.get("tags", []))
        assert f'%pip install -q "arclib @ git+{url}"' in cell.source, path.name
        prepared = colab_check.prepare(nbformat.read(path, as_version=4))
        local = next(c for c in prepared.cells if "colab-install" in c.metadata.get("tags", []))
        assert local.source == cell.source.replace(f"git+{url}", f"git+{colab_check.local_url()}"), path.name
        assert prepared.cells[-1].source == colab_check.PROBE


def test_a_report_that_changes_a_colab_package_is_caught():
    pins = {"numpy": "2.1.3", "plotly": "5.24.1"}

    def report(*items):
        return {"install": [{"metadata": {"name": n, "version": v}} for n, v in items]}

    assert colab_check.changed_pins(report(("arclib", "0.1.0"), ("numpy", "2.1.3")), pins) == []
    assert colab_check.changed_pins(report(("arclib", "0.1.0"), ("NumPy", "2.3.0"), ("plotly", "6.0.0")), pins) == [
        "numpy: Colab has 2.1.3, pip would install 2.3.0", "plotly: Colab has 5.24.1, pip would install 6.0.0"]
    assert colab_check.changed_pins(report(("setuptools", "84.2.1")), {"setuptools": "75.2.0"},
                                    excused={"setuptools": "setuptools>=77.0.3"}) == []
    assert colab_check.torch_demands(["setuptools>=77.0.3", "numpy>=1.21", "sympy>=1.13.3",
                                      "nvidia-cublas==13.1; platform_system == 'Linux'"],
                                     {"setuptools": "75.2.0", "numpy": "2.1.3", "sympy": "1.13.1"}) == {
        "setuptools": "setuptools>=77.0.3", "sympy": "sympy>=1.13.3"}
    assert colab_check.venv_mismatches({"numpy": "2.1.3", "torch": "2.14.1", "plotly": "6.0.0"},
                                       {"numpy": "2.1.3", "torch": "2.11.0", "plotly": "5.24.1"}) == [
        "plotly: venv 6.0.0, Colab 5.24.1"]


def test_the_stand_in_kernel_looks_like_colab(tmp_path, monkeypatch):
    """This venv's Python as a stand-in kernel: google.colab imported at start, COLAB_NOTEBOOK_ID set."""
    from nbclient import NotebookClient

    env = colab_check.write_standin(tmp_path / "standin")
    colab_check.write_kernelspec(tmp_path / "jupyter", Path(sys.executable), env)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for name in ("PLOTLY_RENDERER", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import sys\nprint("google.colab" in sys.modules)'),
        nbformat.v4.new_code_cell("from google.colab import output\noutput.enable_custom_widget_manager()"),
        nbformat.v4.new_code_cell("import os, plotly.io as pio\nfrom arclib.widgets import in_colab\n"
                                  "print(os.environ['COLAB_NOTEBOOK_ID'], pio.renderers.default, in_colab())"),
    ])
    NotebookClient(nb, timeout=120, kernel_name=colab_check.KERNEL_NAME,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = [cell.outputs[0]["text"].strip() for cell in nb.cells if cell.outputs]
    assert printed == ["True", "arclib-colab-check colab True"]
