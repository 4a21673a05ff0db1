"""The project's own promises: the conda environment matches pyproject, notebooks are clean and in sync."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONDA_NAMES = {"pytorch": "torch"}  # conda name → PyPI name


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0]
    return CONDA_NAMES.get(name.lower(), name.lower()).replace("_", "-")


def _environment_yml() -> set[str]:
    names, in_pip, in_deps = set(), False, False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#", 1)[0].rstrip()
        if re.match(r"^\S", stripped):
            in_deps = stripped.startswith("dependencies:")
            continue
        if not in_deps:
            continue
        if stripped.strip() == "- pip:":
            in_pip = True
            continue
        item = re.match(r"^\s*-\s+(\S.*)$", stripped)
        if not item:
            continue
        value = item.group(1).strip()
        if value.startswith("-e") or value in ("pip",) or value.startswith("python"):
            continue
        names.add(_name(value))
    assert in_pip, "environment.yml should install arclib itself through its pip: section"
    return names


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    assert _environment_yml() == wanted


def test_repository_url_lives_only_in_pyproject():
    url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    offenders = [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and url in p.read_text()]
    assert offenders == [], f"the repository URL is written outside pyproject.toml: {offenders}"


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")
def test_colab_badges_and_install_cells_are_generated_from_pyproject():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "colab.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_hygiene(path: Path):
    """What a reader on GitHub sees: outputs in order, no errors, no widget state, small, no author paths."""
    raw = path.read_text()
    assert len(raw.encode()) < 1_500_000, f"{path.name} is {len(raw) // 1024} KiB; keep it under 1.5 MB"
    nb = json.loads(raw)
    assert "widgets" not in nb.get("metadata", {}), "widget state is stored: strip metadata.widgets"
    assert "application/vnd.jupyter.widget-state+json" not in raw
    counts = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        outputs = cell.get("outputs", [])
        assert not any(o.get("output_type") == "error" for o in outputs), "a committed cell shows an error"
        if outputs:
            assert cell.get("execution_count") is not None, "a cell has outputs but no execution count"
        if cell.get("execution_count") is not None:
            counts.append(cell["execution_count"])
    assert counts == sorted(counts) and len(set(counts)) == len(counts), "execution counts are out of order"
    for home in ("/work/", "/home/", "/root/", "/Users/", "C:\\\\Users"):
        assert home not in raw, f"an absolute path of the author's machine ({home}) is in the notebook"
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and "colab-badge.svg" in "".join(first["source"])
    assert any(line.startswith("# ") for line in "".join(first["source"]).splitlines()), "no title"


def test_figures_manifest_is_current_and_names_a_source_for_every_png():
    sys.path.insert(0, str(ROOT / "scripts"))
    import figures

    current = figures.manifest()
    assert "| unknown |" not in current, "a PNG in figures/ is written by no notebook or test"
    assert (ROOT / "figures" / "MANIFEST.md").read_text() == current, "run python scripts/figures.py --manifest"


def prose_words(markdown: str) -> int:
    """Words of running prose in one markdown cell: tables, code, math, HTML tags and link targets left out."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", "X", text)  # inline math counts as one word
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    return len(re.findall(r"[A-Za-z0-9][A-Za-z0-9'’.,%-]*", text))


def test_prose_words_counts_what_a_reader_reads():
    assert prose_words("Two words.") == 2
    assert prose_words("| a | b |\n| --- | --- |\n| 1 | 2 |\nthen $x^2 + y$ here") == 3
    assert prose_words("see [the README](../README.md#a-very-long-anchor)\n```python\nx = 1\n```") == 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_chapter_says_what_it_needs_and_keeps_its_prose_short(path: Path):
    # the house rule: a d2l-style section of about 1,500 words at most, numbers in tables
    cells = json.loads(path.read_text())["cells"]
    header = "".join(cells[0]["source"])
    assert "Prerequisites" in header and "Run time" in header, f"{path.name}: the header names its prerequisites and run time"
    words = sum(prose_words("".join(c["source"])) for c in cells if c["cell_type"] == "markdown")
    assert words <= 1500, f"{path.name} has {words} words of prose; the series keeps each chapter to about 1,500"
