"""Run every notebook as Colab would: Colab's package set, arclib installed by the notebook's own install cell.

    python scripts/colab_check.py                 # build (or reuse) ~/.cache/arclib/colab-venv, run all notebooks
    python scripts/colab_check.py notebooks/06_*.ipynb --venv /tmp/colab-venv

What it does, in order:

1. A venv (Python of this machine) with this machine's torch pair (Colab keeps its own torch; the install cell
   never asks for one) and the packages arclib and the notebooks use, each at Colab's version, their dependencies
   under Colab's constraints (ipykernel 6.17.1, ipywidgets 7.7.1, plotly 5.24.1, numpy 2.1.3, ...). It checks that
   every package in the venv that Colab also has is at Colab's version.
2. ``pip install --dry-run --report`` of the install cell's command, its URL pointed at this clone's HEAD commit
   (``git+file://...@commit``): it fails if pip would install, upgrade or downgrade any package Colab pins
   (except what only this machine's torch asks for, which is printed).
3. A kernel that stands in for Colab: a small ``google.colab`` package imported at kernel start (an IPython
   startup file) and ``COLAB_NOTEBOOK_ID`` set -- plotly detects Colab by either, arclib by the import -- and no
   PLOTLY_RENDERER / MPLBACKEND from this shell.
4. Every notebook as committed at that same commit, in quick mode (``ARCLIB_QUICK=1``), executed top to bottom by
   nbclient in an empty folder (as Colab's /content), its ``colab-install`` cell run for real (so arclib comes
   from that cell), then one extra cell that asserts what the kernel saw: Colab detected, plotly's renderer
   "colab", arclib imported from the venv's site-packages.

Colab's package lists come from ``../shared/colab`` next to the repository (``--colab-dir`` to change):
``colab-pip-freeze.txt`` (Colab's published ``pip freeze``) and ``constraints.txt`` (the same without URL
installs). The venv is reused; each run first puts its packages back at Colab's versions. Building it takes
minutes and about 6 GB (the torch pair); CI runs only the cheap parts (tests/test_colab_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import colab  # noqa: E402  (scripts/colab.py: the one place that writes the install cell)

DEFAULT_COLAB_DIR = ROOT.parent / "shared" / "colab"
# Outside the repository: 6 GB of site-packages that no tool walking the tree should meet.
DEFAULT_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arclib" / "colab-venv"
# This machine's torch pair (Python 3.11, from local disk). Colab has its own (2.11.0 there): the install cell
# keeps it, so the check only needs some torch that arclib accepts.
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
# Colab packages arclib and the notebooks import, plus the kernel stack; pip adds their dependencies, all under
# Colab's constraints.
COLAB_STACK = ["numpy", "matplotlib", "tqdm", "scikit-learn", "plotly", "ipywidgets", "anywidget", "ipykernel",
               "ipython", "jupyter_client", "pandas", "setuptools"]
# Packages the venv may hold at versions other than Colab's: the torch pair (Colab's is a URL install) and the
# CUDA libraries that come with this machine's torch build.
OWN_PACKAGES = re.compile(r"^(torch|torchvision|triton|nvidia-.*|cuda-.*|arclib)$")
KERNEL_NAME = "colab-standin"

STANDIN_INIT = '''"""Stand-in for Colab's google.colab package: enough for code that detects Colab by importing it."""
'''
STANDIN_OUTPUT = '''"""Stand-in for google.colab.output: the call the install cell makes, as a no-op."""


def enable_custom_widget_manager():
    return None
'''

PROBE = """\
import os, sys
import plotly, plotly.io as pio
import arclib
from arclib.widgets import in_colab
_seen = {"google.colab imported": "google.colab" in sys.modules, "COLAB_NOTEBOOK_ID": os.environ.get("COLAB_NOTEBOOK_ID"),
         "in_colab()": in_colab(), "plotly": plotly.__version__, "renderer": pio.renderers.default,
         "arclib": arclib.__file__}
print(_seen)
assert _seen["google.colab imported"] and _seen["in_colab()"], _seen
assert pio.renderers.default == "colab", _seen
assert "site-packages" in arclib.__file__, _seen
"""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a pip freeze or constraints file, by normalised name; other lines are skipped."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            pins[normalize(m.group(1))] = m.group(3)
    return pins


def install_command(url: str) -> list[str]:
    """The pip arguments of the notebooks' install cell (scripts/colab.py), for a repository at ``url``."""
    for line in colab.install_cell(url, widgets=False).splitlines():
        line = line.strip()
        if line.startswith("%pip install"):
            return shlex.split(line)[1:]
    raise ValueError("scripts/colab.py's install cell has no '%pip install' line")


def local_url() -> str:
    """This clone as the install cell's repository: pip clones its committed HEAD, as it would the public one."""
    return f"file://{ROOT}"


def changed_pins(report: dict, pins: dict[str, str], excused: dict[str, str] | None = None) -> list[str]:
    """What a ``pip install --report`` would do to Colab's pinned packages: one line per change, except the
    packages in ``excused`` (name → why), which only this machine's torch asks for."""
    changes = []
    for item in report.get("install", []):
        name, version = normalize(item["metadata"]["name"]), item["metadata"]["version"]
        if name in pins and pins[name] != version and name not in (excused or {}):
            changes.append(f"{name}: Colab has {pins[name]}, pip would install {version}")
    return changes


def torch_demands(requirements: list[str], pins: dict[str, str]) -> dict[str, str]:
    """Colab packages whose pinned version this machine's torch pair refuses (``requirements``: its
    Requires-Dist lines): name → the requirement. Colab's own torch accepts its own packages."""
    from packaging.requirements import Requirement

    demands = {}
    for line in requirements:
        req = Requirement(line)
        name = normalize(req.name)
        if req.marker is None and name in pins and not req.specifier.contains(pins[name], prereleases=True):
            demands[name] = str(req)
    return demands


def torch_requirements(python: Path) -> list[str]:
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps((m.requires('torch') or []) + (m.requires('torchvision') or [])))")
    return json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout)


def venv_mismatches(freeze: dict[str, str], pins: dict[str, str]) -> list[str]:
    """Packages in the venv that Colab also has, at another version (the torch pair and its CUDA libraries aside)."""
    return [f"{name}: venv {version}, Colab {pins[name]}" for name, version in sorted(freeze.items())
            if name in pins and pins[name] != version and not OWN_PACKAGES.match(name)]


def write_standin(folder: Path) -> dict[str, str]:
    """The google.colab stand-in and an IPython startup file that imports it; returns the kernel's extra env."""
    package = folder / "python" / "google" / "colab"
    package.mkdir(parents=True, exist_ok=True)
    (folder / "python" / "google" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(STANDIN_INIT)
    (package / "output.py").write_text(STANDIN_OUTPUT)
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-google-colab.py").write_text("import google.colab  # Colab imports it at kernel start\n")
    return {"PYTHONPATH": str(folder / "python"), "IPYTHONDIR": str(folder / "ipython"),
            "COLAB_NOTEBOOK_ID": "arclib-colab-check"}


def write_kernelspec(folder: Path, python: Path, env: dict[str, str]) -> Path:
    """A kernelspec ``colab-standin`` under ``folder/kernels``; put ``folder`` on JUPYTER_PATH to use it."""
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Colab stand-in)", "language": "python", "env": env}, indent=1))
    return spec


def kernel_environment() -> None:
    """This process's environment as the kernel inherits it: nothing that Colab would not set."""
    for name in ("PLOTLY_RENDERER", "MPLBACKEND", "PYTHONPATH", "IPYTHONDIR", "VIRTUAL_ENV"):
        os.environ.pop(name, None)
    os.environ["ARCLIB_QUICK"] = "1"
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger warns about frozen modules at start


def pip(python: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    cmd = [str(python), "-m", "pip", *args]
    print("$", shlex.join(cmd), flush=True)
    return subprocess.run(cmd, check=True, text=True, capture_output=capture)


def build_venv(venv: Path, colab_dir: Path) -> Path:
    """Create the venv if needed, then (every run: a notebook's install cell may have moved something) put every
    Colab package in it back at Colab's version."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip(python, "install", "--quiet", *TORCH)
    # Each named package is pinned to Colab's version (the constraints file leaves out a few, such as pip,
    # setuptools and anywidget); their dependencies follow the constraints. The torch pair brought its own
    # dependencies (sympy, pillow, ...) at their newest: they are named too.
    pins = read_pins(colab_dir / "colab-pip-freeze.txt")
    present = [name for name in venv_freeze(python) if name in pins and not OWN_PACKAGES.match(name)]
    wanted = dict.fromkeys(normalize(name) for name in COLAB_STACK + present)
    pip(python, "install", "--quiet", "-c", str(colab_dir / "constraints.txt"),
        *(f"{name}=={pins[name]}" if name in pins else name for name in wanted))
    mismatches = venv_mismatches(venv_freeze(python), pins)
    if mismatches:
        raise SystemExit("the venv does not match Colab:\n  " + "\n  ".join(mismatches))
    return python


def venv_freeze(python: Path) -> dict[str, str]:
    out = pip(python, "list", "--format=json", capture=True).stdout
    return {normalize(p["name"]): p["version"] for p in json.loads(out)}


def dry_run(python: Path, pins: dict[str, str], workdir: Path, commit: str) -> list[str]:
    """What the install cell would install into the venv; raises if it would change a package Colab pins."""
    report = workdir / "pip-report.json"
    args = install_command(f"{local_url()}@{commit}")
    # Colab has no constraint file: ignore this machine's (pip.conf) too, so pip resolves as it would there.
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    cmd = [str(python), "-m", "pip", *args[:-1], "--dry-run", "--report", str(report), args[-1]]
    print("$", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    data = json.loads(report.read_text())
    excused = torch_demands(torch_requirements(python), pins)
    changes = changed_pins(data, pins, excused)
    if changes:
        raise SystemExit("the install cell would change Colab's packages:\n  " + "\n  ".join(changes))
    would = [f"{i['metadata']['name']} {i['metadata']['version']}" for i in data.get("install", [])]
    for name, requirement in excused.items():
        print(f"(not Colab's doing: this machine's torch requires {requirement}; Colab has {name} {pins[name]})")
    return would


def prepare(nb: nbformat.NotebookNode, commit: str | None = None) -> nbformat.NotebookNode:
    """Point the install cell at this clone (at ``commit``, else its HEAD) and append the probe cell."""
    public = f"git+{colab.repository_url()}"
    cells = [c for c in nb.cells if c.cell_type == "code" and "colab-install" in c.metadata.get("tags", [])]
    if not cells or public not in cells[0].source:
        raise SystemExit(f"no colab-install cell installing {public} (run python scripts/colab.py)")
    cells[0].source = cells[0].source.replace(public, f"git+{local_url()}" + (f"@{commit}" if commit else ""))
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    return nb


def run_notebook(path: Path, workdir: Path, timeout: int, commit: str) -> tuple[bool, float, str]:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    # the notebook as committed, like the arclib its install cell brings: one commit, as a reader on Colab gets it
    relative = path.resolve().relative_to(ROOT).as_posix()
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{relative}"], capture_output=True, text=True,
                          check=True).stdout
    nb = prepare(nbformat.reads(text, as_version=4), commit)
    content = workdir / "content" / path.stem  # like Colab's /content: not the repository
    content.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(content)}},
                       on_cell_execute=lambda cell, cell_index: print(f"  cell {cell_index}", flush=True)
                       ).execute()
    except CellExecutionError as err:
        lines = str(err).strip().splitlines()
        print("\n".join(lines[-25:]), flush=True)  # the cell and its traceback's end
        install = next(c for c in nb.cells if "colab-install" in c.metadata.get("tags", []))
        said = "".join(o.get("text", "") for o in install.get("outputs", []) if o.get("output_type") == "stream")
        print(f"  the install cell printed: {said.strip()[-2000:] or '(nothing)'}", flush=True)
        return False, time.perf_counter() - start, lines[-1][:300]
    seen = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream").strip()
    return True, time.perf_counter() - start, seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--colab-dir", type=Path, default=DEFAULT_COLAB_DIR)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    freeze_file = args.colab_dir / "colab-pip-freeze.txt"
    if not freeze_file.is_file() or not (args.colab_dir / "constraints.txt").is_file():
        parser.error(f"--colab-dir {args.colab_dir} must hold colab-pip-freeze.txt and constraints.txt")
    pins = read_pins(freeze_file)
    # one commit for the whole run (others may commit meanwhile): the dry run, every install cell and the notebooks
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    committed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", head, "notebooks/"],
                               capture_output=True, text=True, check=True).stdout.split()
    committed = [ROOT / name for name in committed if re.fullmatch(r"notebooks/\d\d_[\w\-]+\.ipynb", name)]
    paths = [path.resolve() for path in args.notebooks] or committed
    uncommitted = [path for path in paths if path not in committed]
    if uncommitted:
        parser.error(f"not committed at HEAD, so not what Colab would open: {', '.join(map(str, uncommitted))}")

    start = time.perf_counter()
    python = build_venv(args.venv, args.colab_dir)
    print(f"venv ready in {time.perf_counter() - start:.0f} s")
    installed = venv_freeze(python)
    shared = sorted(n for n in installed if n in pins and not OWN_PACKAGES.match(n))
    print(f"{len(shared)} packages at Colab's versions, e.g. " + ", ".join(
        f"{n} {installed[n]}" for n in ("ipykernel", "ipywidgets", "plotly", "numpy", "matplotlib") if n in installed))
    # Start without arclib: the first notebook's install cell must install it.
    subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "arclib"], check=False)

    with tempfile.TemporaryDirectory(prefix="colab-check-") as tmp:
        workdir = Path(tmp)
        would_install = dry_run(python, pins, workdir, head)
        print(f"install cell (commit {head[:7]}) would install: {', '.join(would_install)}; "
              "it changes no Colab package that Colab's own torch leaves alone")
        kernel_environment()
        write_kernelspec(workdir / "jupyter", python, write_standin(workdir / "standin"))
        os.environ["JUPYTER_PATH"] = str(workdir / "jupyter")
        results = []
        for path in paths:
            ok, seconds, detail = run_notebook(path, workdir, args.timeout, head)
            results.append((path.name, ok, seconds, detail))
            print(f"{'PASS' if ok else 'FAIL'} {path.name}: {seconds:.0f} s  {detail}", flush=True)
    failed = [name for name, ok, _, _ in results if not ok]
    total = sum(seconds for _, _, seconds, _ in results)
    print(f"\n{len(results) - len(failed)}/{len(results)} notebooks ran in the Colab stand-in ({total:.0f} s of "
          f"notebooks, {time.perf_counter() - start:.0f} s in all; arclib from commit {head[:7]})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
