"""The shipped checkpoints: intact, small, recorded, and each one reproduces its manifest's accuracy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from arclib import config, data, losses, metrics, models, pretrained, train

SHIPPED = pretrained.names()
ROOT = Path(__file__).resolve().parent.parent


def test_every_training_chapter_has_shipped_models():
    for prefix in ("mnist2d-", "mnist128-", "mnist-open-", "cifar10-"):
        assert pretrained.names(prefix), f"no shipped model named {prefix}*"


def test_manifest_records_hash_size_command_and_metrics():
    total = 0
    for name in SHIPPED:
        entry = pretrained.info(name)
        path = pretrained.DIR / entry["file"]
        assert path.stat().st_size == entry["bytes"] <= 2_000_000, name
        assert pretrained.sha256(path) == entry["sha256"], name
        assert entry["command"].startswith("python -m arclib train "), name
        assert entry["arclib_version"] and entry["torch"], name
        assert 0 < entry["test_accuracy"] <= 1 and entry["test_images"] > 0, name
        assert len(entry["history"]["test_acc"]) == entry["epochs"], name
        total += entry["bytes"]
    assert total <= 20_000_000


def test_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="name must be a shipped model"):
        pretrained.info("no-such-model")


def test_damaged_file_is_refused_with_its_name(tmp_path):
    name = SHIPPED[0]
    entry = pretrained.info(name)
    copy = tmp_path / entry["file"]
    shutil.copy(pretrained.DIR / entry["file"], copy)
    raw = bytearray(copy.read_bytes())
    middle = len(raw) // 2
    raw[middle: middle + 64] = bytes(64)
    copy.write_bytes(bytes(raw))
    with pytest.raises(pretrained.ChecksumError, match=str(copy)):
        pretrained.load_file(copy, entry["sha256"])
    with pytest.raises(FileNotFoundError, match="missing"):
        pretrained.load_file(tmp_path / "gone.pt", entry["sha256"])


def test_export_round_trip_keeps_the_model(tmp_path):
    torch.manual_seed(0)
    model = models.MnistNet(8, width=8).eval()
    loss = losses.make("arcface", s=16, m=0.3, num_classes=10, embedding_dim=8)
    path = pretrained.export(model, loss, tmp_path / "m.pt", meta={"dataset": "mnist"})
    back, back_loss, meta = pretrained.load_file(path, pretrained.sha256(path))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=2e-2)
    assert back_loss.hparams() == loss.hparams() and meta == {"dataset": "mnist"}
    assert not back.training
    big = [k for k, v in torch.load(path, weights_only=True)["model"]["state"].items() if v.dtype == torch.float16]
    assert big, "the large weight tensors are stored as float16"


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_reproduces_its_accuracy(name, request):
    entry = pretrained.info(name)
    root = request.getfixturevalue("cifar_root" if entry["dataset"] == "cifar10" else "mnist_root")
    model, loss, _ = pretrained.load(name)
    quick = config.quick_mode()
    test = data.select(data.load(entry["dataset"], train=False, root=root, download=False,
                                 cifar10_checksums="offline-mirror"),
                       entry["classes"], entry["quick_images"] if quick else entry["test_images"])
    emb, labels = train.embed(model, torch.utils.data.DataLoader(test, batch_size=500), "cpu")
    accuracy = (loss.predict(emb) == labels).float().mean().item()
    expected = entry["quick_accuracy"] if quick else entry["test_accuracy"]
    # the same weights on another CPU may round a borderline image differently: allow 0.1 point
    assert accuracy == pytest.approx(expected, abs=1e-3)


def test_wheel_carries_the_checkpoints(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # build from a copy: a test never writes into the checkout
    shutil.copytree(ROOT / "arclib", src / "arclib", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"could not build a wheel here: {out.stderr.strip().splitlines()[-1:]}")
    (wheel,) = (tmp_path / "dist").glob("arclib-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    for name in SHIPPED:
        assert f"arclib/checkpoints/{pretrained.info(name)['file']}" in inside
    assert "arclib/checkpoints/MANIFEST.json" in inside
    for file in pretrained.STUDIES.values():
        assert f"arclib/checkpoints/{file}" in inside


def test_retrain_args_keep_the_recipe_and_free_the_machine():
    command = ("python -m arclib train --data cifar10 --loss arcface --s 16 --m 0.5 --epochs 15 --margin-warmup 3 "
               "--threads 1 --device=cpu --out /work/runs/x --augment")
    full = pretrained.retrain_args(command, quick=False, out="o")
    assert full == ["--data", "cifar10", "--loss", "arcface", "--s", "16", "--m", "0.5", "--epochs", "15",
                    "--margin-warmup", "3", "--augment", "--out", "o", "--no-progress"]
    quick = pretrained.retrain_args(command, quick=True, out="o")
    assert quick == ["--data", "cifar10", "--loss", "arcface", "--s", "16", "--m", "0.5", "--augment", "--epochs", "2",
                     "--margin-warmup", "1.0", "--quick", "--out", "o", "--no-progress"]
    with pytest.raises(ValueError, match="command must be"):
        pretrained.retrain_args("python train.py", quick=False, out="o")


@pytest.mark.slow
def test_get_loads_the_shipped_model_or_retrains_its_recipe(tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("ARCLIB_DATA", str(mnist_root))
    monkeypatch.setenv("ARCLIB_QUICK", "1")
    name = pretrained.names("mnist2d-")[0]
    shipped = pretrained.get(name, device="cpu")
    assert not shipped["retrained"] and shipped["history"].epochs == shipped["entry"]["epochs"]
    fresh = pretrained.get(name, retrain=True, out=tmp_path / "run", device="cpu")
    assert fresh["retrained"] and (tmp_path / "run" / "checkpoint.pt").is_file()
    assert fresh["loss"].hparams() == shipped["loss"].hparams()
    assert fresh["model"].config() == shipped["model"].config()
    assert 1 <= fresh["history"].epochs <= 2


def test_results_tables_are_generated_from_the_manifest():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "results.py"), "--check"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_recorded_study_refuses_an_unknown_name_by_name():
    with pytest.raises(ValueError, match=r"name must be a recorded study \(cifar10-seeds\); got 'cifar10'"):
        pretrained.recorded_study("cifar10")


def test_cifar10_seed_study_holds_three_seeds_per_loss_with_their_commands():
    study = pretrained.recorded_study("cifar10-seeds")
    cells = metrics.over_seeds(study["runs"], "test_accuracy")
    assert {"softmax", "normface", "arcface"} <= set(cells)
    for label, (mean, std, n) in cells.items():
        assert n >= 3 and 10 < mean <= 100 and std >= 0, label
    for run in study["runs"]:
        assert run["command"].startswith("python -m arclib train --data cifar10") and f"--seed {run['seed']}" in run["command"]
