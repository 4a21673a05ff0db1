"""The switches every notebook and the CLI read in one place: quick mode, the data root, the figures folder."""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def quick_mode() -> bool:
    """True when ``ARCLIB_QUICK`` is set (``make test`` and CI set it): tiny subsets, few steps, same code path."""
    return os.environ.get("ARCLIB_QUICK", "").strip().lower() in _TRUE


def pick(full, quick):
    """``quick`` in quick mode, else ``full``: how notebooks state both budgets side by side."""
    return quick if quick_mode() else full


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where datasets live: the argument, else ``$ARCLIB_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get("ARCLIB_DATA", "data")).expanduser()


def repo_root() -> Path | None:
    """The checkout this arclib was imported from (None for an installed wheel, e.g. on Colab)."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "notebooks").is_dir() else None


def figures_dir() -> Path:
    """``$ARCLIB_FIGURES``, else the checkout's ``figures/``, else ``./figures``."""
    if "ARCLIB_FIGURES" in os.environ:
        return Path(os.environ["ARCLIB_FIGURES"])
    root = repo_root()
    return root / "figures" if root is not None else Path("figures")


def save_figure(fig, name: str, dpi: int = 120) -> Path | None:
    """Save a matplotlib figure as ``figures/<name>.png`` (the sources ask for every figure as a PNG).

    In quick mode nothing is written, so a test run never overwrites the committed full-run figures with
    figures of a few training steps. Returns the path written, or None.
    """
    if quick_mode():
        return None
    path = figures_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
