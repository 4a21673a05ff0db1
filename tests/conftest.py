"""Shared fixtures: a real MNIST / CIFAR-10 data root, or a skip that says why there is none.

Order: ``$ARCLIB_DATA`` if it holds the dataset; else a copy from the offline mirror ``/work/shared/data`` into a
session temp folder; else the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

MIRROR = Path(os.environ.get("ARCLIB_MIRROR", "/work/shared/data"))


def _env_root(sub: str) -> Path | None:
    root = os.environ.get("ARCLIB_DATA")
    if root and (Path(root) / sub).exists():
        return Path(root)
    return None


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    root = _env_root("MNIST/raw")
    if root is not None:
        return root
    src = MIRROR / "MNIST" / "raw"
    if not src.is_dir():
        pytest.skip(f"no MNIST: $ARCLIB_DATA is unset or lacks MNIST/raw, and there is no mirror at {src}")
    root = tmp_path_factory.mktemp("data")
    (root / "MNIST" / "raw").mkdir(parents=True)
    for f in src.glob("*.gz"):
        shutil.copy(f, root / "MNIST" / "raw" / f.name)
    return root


def _root_from_archive(tmp_path_factory, name: str, folder: str, marker: str, archive: str) -> Path:
    """``$ARCLIB_DATA`` if it holds ``folder/marker``, else the mirror's ``archive`` extracted once, else a skip."""
    root = _env_root(f"{folder}/{marker}")
    if root is not None:
        return root
    path = MIRROR / archive
    if not path.is_file():
        pytest.skip(f"no {name}: $ARCLIB_DATA is unset or lacks {folder}, and there is no {path}")
    root = tmp_path_factory.mktemp(name.lower())
    with tarfile.open(path) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    return _root_from_archive(tmp_path_factory, "CIFAR-10", "cifar-10-batches-py", "test_batch",
                              "cifar-10-batches-py.tar.xz")


@pytest.fixture(scope="session")
def omniglot_root(tmp_path_factory) -> Path:
    root = _root_from_archive(tmp_path_factory, "Omniglot", "omniglot-py", "images_evaluation", "omniglot-py.tar.xz")
    runs = root / "omniglot-py" / "all_runs.zip"
    if not runs.is_file() and (MIRROR / "omniglot-all_runs.zip").is_file():
        shutil.copy(MIRROR / "omniglot-all_runs.zip", runs)
    return root
