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


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    root = _env_root("cifar-10-batches-py/test_batch")
    if root is not None:
        return root
    archive = MIRROR / "cifar-10-batches-py.tar.xz"
    if not archive.is_file():
        pytest.skip(f"no CIFAR-10: $ARCLIB_DATA is unset or lacks cifar-10-batches-py, and there is no {archive}")
    root = tmp_path_factory.mktemp("cifar")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.fixture(scope="session")
def omniglot_root(tmp_path_factory) -> Path:
    root = _env_root("omniglot-py/images_evaluation")
    if root is not None:
        return root
    archive = MIRROR / "omniglot-py.tar.xz"
    if not archive.is_file():
        pytest.skip(f"no Omniglot: $ARCLIB_DATA is unset or lacks omniglot-py, and there is no {archive}")
    root = tmp_path_factory.mktemp("omniglot")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    if (MIRROR / "omniglot-all_runs.zip").is_file():
        shutil.copy(MIRROR / "omniglot-all_runs.zip", root / "omniglot-py" / "all_runs.zip")
    return root
