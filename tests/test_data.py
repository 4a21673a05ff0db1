"""arclib.data: where data is looked for, what happens when it is missing, which CIFAR-10 files are accepted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from arclib import data

NAMES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


# ---- root resolution ---------------------------------------------------------------------------------------

def test_missing_data_names_the_directory_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("ARCLIB_DATA", raising=False)
    where = tmp_path / "nothing-here"
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("mnist", train=True, root=where, download=False)
    msg = str(info.value)
    assert str((where / "MNIST" / "raw").resolve()) in msg
    assert "ARCLIB_DATA" in msg and "root=" in msg and "download=True" in msg
    assert isinstance(info.value, FileNotFoundError)


def test_missing_cifar_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str((tmp_path / "cifar-10-batches-py").resolve())):
        data.load("cifar10", train=False, root=tmp_path, download=False)


def test_missing_data_via_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCLIB_DATA", str(tmp_path / "from-env"))
    with pytest.raises(data.DatasetNotFoundError, match="from-env"):
        data.load("fashion_mnist", train=False, download=False)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="name must be one of 'mnist', 'fashion_mnist', 'cifar10'"):
        data.load("svhn", train=True)


# ---- CIFAR-10 checksum sets (fake files, so no real data needed) -------------------------------------------

@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """Six small files and a known 'offline-mirror' set made of their md5s."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    sums = {}
    for name in NAMES:
        body = f"fake {name}".encode()
        (folder / name).write_bytes(body)
        sums[name] = hashlib.md5(body).hexdigest()
    monkeypatch.setitem(data.CIFAR10_CHECKSUMS, "offline-mirror", sums)
    monkeypatch.delenv(data.CHECKSUM_ENV, raising=False)
    return folder


def _integrity(root: Path, sets) -> bool:
    ds = data.CIFAR10.__new__(data.CIFAR10)  # only the check, not the unpickling of fake files
    ds.root, ds.checksum_sets = str(root), tuple(sets)
    return ds._check_integrity()


def test_mirror_set_accepted_only_when_asked(fake_cifar, monkeypatch):
    root = fake_cifar.parent
    assert data.cifar10_matching_set(fake_cifar) == "offline-mirror"
    assert data.cifar10_checksum_sets() == ("torchvision",)
    assert not _integrity(root, data.cifar10_checksum_sets())
    assert _integrity(root, data.cifar10_checksum_sets("offline-mirror"))
    monkeypatch.setenv(data.CHECKSUM_ENV, "offline-mirror")
    assert _integrity(root, data.cifar10_checksum_sets())
    # the argument wins over the environment
    assert not _integrity(root, data.cifar10_checksum_sets("torchvision"))


def test_tampered_file_refused_by_every_set(fake_cifar):
    with open(fake_cifar / "data_batch_3", "ab") as f:
        f.write(b"!")
    assert data.cifar10_matching_set(fake_cifar) is None
    assert not _integrity(fake_cifar.parent, ("torchvision", "offline-mirror"))
    with pytest.raises(data.DatasetNotFoundError, match="corrupted or edited"):
        data.load("cifar10", train=False, root=fake_cifar.parent, cifar10_checksums="offline-mirror", download=False)


def test_missing_file_refused(fake_cifar):
    (fake_cifar / "test_batch").unlink()
    assert data.cifar10_matching_set(fake_cifar) is None


def test_not_enabled_mirror_error_says_how(fake_cifar):
    with pytest.raises(data.DatasetNotFoundError, match="ARCLIB_CIFAR10_CHECKSUMS=offline-mirror"):
        data.load("cifar10", train=False, root=fake_cifar.parent, download=False)


def test_bad_checksum_choice_names_it(monkeypatch):
    with pytest.raises(ValueError, match="cifar10_checksums must be one of"):
        data.cifar10_checksum_sets("anything")
    monkeypatch.setenv(data.CHECKSUM_ENV, "skip")
    with pytest.raises(ValueError, match="ARCLIB_CIFAR10_CHECKSUMS must be one of"):
        data.cifar10_checksum_sets()


def test_torchvision_set_is_torchvisions():
    from torchvision.datasets import CIFAR10

    assert data.CIFAR10_CHECKSUMS["torchvision"] == dict(CIFAR10.train_list + CIFAR10.test_list)
    assert set(data.CIFAR10_CHECKSUMS["offline-mirror"]) == set(NAMES)


# ---- class selection ---------------------------------------------------------------------------------------

def test_parse_classes():
    assert data.parse_classes("0-6") == list(range(7))
    assert data.parse_classes("1,3, 5") == [1, 3, 5]
    assert data.parse_classes("0-2,7") == [0, 1, 2, 7]
    assert data.parse_classes(None) is None
    with pytest.raises(ValueError, match="classes must look like"):
        data.parse_classes("7-3")


def test_select_relabels_and_limits():
    ds = data.TensorImages(torch.arange(10.0).view(10, 1, 1, 1), torch.tensor([0, 1, 2, 3, 4] * 2),
                           list("abcde"))
    sub = data.select(ds, [3, 1])
    assert sub.targets.tolist() == [1, 0, 1, 0] and sub.classes == ["d", "b"]
    assert sub.images.flatten().tolist() == [1.0, 3.0, 6.0, 8.0]
    assert len(data.select(ds, None, limit=4)) == 4
    with pytest.raises(ValueError, match=r"classes must be at least 2 distinct class ids in \[0, 5\)"):
        data.select(ds, [1, 9])


# ---- the real mirror ---------------------------------------------------------------------------------------

def test_real_mnist_quick_loaders(mnist_root):
    train, test = data.loaders("mnist", batch_size=64, root=mnist_root, classes=data.parse_classes("0-6"),
                               quick=True)
    assert len(train.dataset) == data.QUICK_TRAIN and len(test.dataset) == data.QUICK_TEST
    x, y = next(iter(train))
    assert x.shape == (64, 1, 28, 28) and int(y.max()) <= 6
    full = data.load("mnist", train=False, root=mnist_root)
    assert len(full) == 10_000
    assert abs(full.images.mean().item()) < 0.05 and abs(full.images.std().item() - 1) < 0.05
    again, _ = data.loaders("mnist", batch_size=64, root=mnist_root, quick=True)
    assert torch.equal(data.select(full, None, 5).targets, full.targets[:5])
    assert len(again.dataset) == data.QUICK_TRAIN


def test_mnist_augmented_split(mnist_root):
    ds = data.load("mnist", train=True, root=mnist_root, augment=True)
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and y == 5


@pytest.mark.slow
def test_real_cifar_mirror_needs_the_mirror_set(cifar_root, monkeypatch):
    monkeypatch.delenv(data.CHECKSUM_ENV, raising=False)
    folder = cifar_root / "cifar-10-batches-py"
    assert data.cifar10_matching_set(folder) == "offline-mirror"  # the shipped md5s are the mirror's
    with pytest.raises(data.DatasetNotFoundError, match="offline-mirror"):
        data.load("cifar10", train=False, root=cifar_root, download=False)
    test = data.load("cifar10", train=False, root=cifar_root, cifar10_checksums="offline-mirror")
    assert test.images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    monkeypatch.setenv(data.CHECKSUM_ENV, "offline-mirror")
    aug = data.load("cifar10", train=True, root=cifar_root, augment=True)
    assert len(aug) == 50_000 and aug.matched_checksums == "offline-mirror"
    assert aug[0][0].shape == (3, 32, 32)


def test_loaders_train_and_test_limits(mnist_root):
    full_train, full_test = data.loaders("mnist", batch_size=64, root=mnist_root, quick=False)
    train, test = data.loaders("mnist", batch_size=64, root=mnist_root, quick=False, train_limit=300, test_limit=100)
    assert len(train.dataset) == 300 and len(test.dataset) == 100
    assert torch.equal(train.dataset.targets, full_train.dataset.targets[:300])
    assert torch.equal(test.dataset.images, full_test.dataset.images[:100])
    small, small_test = data.loaders("mnist", batch_size=64, root=mnist_root, quick=True, train_limit=10_000,
                                     test_limit=50)
    assert len(small.dataset) == data.QUICK_TRAIN and len(small_test.dataset) == 50
    with pytest.raises(ValueError, match="train_limit"):
        data.loaders("mnist", root=mnist_root, train_limit=0)


def test_test_loader_is_the_test_half_of_loaders(mnist_root):
    _, from_loaders = data.loaders("mnist", root=mnist_root, classes=[7, 8, 9], quick=True)
    alone = data.test_loader("mnist", root=mnist_root, classes=[7, 8, 9], quick=True)
    a, b = next(iter(from_loaders)), next(iter(alone))
    assert len(alone.dataset) == len(from_loaders.dataset) == data.QUICK_TEST
    assert torch.equal(a[0][:8], b[0][:8]) and torch.equal(a[1][:8], b[1][:8])
    assert set(torch.cat([y for _, y in alone]).tolist()) == {0, 1, 2}
    assert len(data.test_loader("mnist", root=mnist_root, quick=False, limit=300).dataset) == 300
    with pytest.raises(ValueError, match="batch_size"):
        data.test_loader("mnist", root=mnist_root, batch_size=0)
