"""``python -m arclib``: help, clean errors, and a quick train → evaluate round trip on real MNIST."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from arclib import cli


def arclib(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ARCLIB_QUICK": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "arclib", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=300)


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--loss", "--s", "--m", "--m1", "--m2", "--m3", "--tail", "--lam", "--embedding-dim",
                 "--epochs", "--lr", "--batch-size", "--optimizer", "--out", "--device", "--seed", "--quick",
                 "--classes", "--width"):
        assert flag in text
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    assert "--open-set-classes" in capsys.readouterr().out


def test_bad_hyperparameter_is_a_clean_error(capsys):
    # CosFace has no --tail: the library's ValueError, on stderr, exit code 2, no traceback
    assert cli.main(["train", "--loss", "cosface", "--tail", "easy", "--data-root", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("arclib: error: cosface: ") and "tail" in err and "Traceback" not in err


def test_bad_hyperparameter_names_the_range(tmp_path, capsys):
    assert cli.main(["train", "--loss", "arcface", "--m", "3", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "m must be in [0, pi/2], got 3.0" in err and "Traceback" not in err
    assert cli.main(["train", "--loss", "softmax", "--s", "30", "--out", str(tmp_path / "x")]) == 2
    assert "softmax: " in capsys.readouterr().err


def test_missing_data_is_a_clean_error(tmp_path, capsys):
    code = cli.main(["train", "--data-root", str(tmp_path / "empty"), "--no-download", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str((tmp_path / "empty").resolve()) in err and "ARCLIB_DATA" in err


def test_bad_classes_spec(capsys):
    assert cli.main(["train", "--classes", "6-0"]) == 2
    assert "--classes: classes must look like" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_evaluate_quick(tmp_path, mnist_root, capsys):
    out = tmp_path / "run"
    proc = arclib("train", "--data", "mnist", "--loss", "arcface", "--s", "16", "--m", "0.3", "--embedding-dim",
                  "8", "--epochs", "2", "--classes", "0-6", "--width", "8", "--out", str(out), "--seed", "1",
                  "--no-progress", env={"ARCLIB_DATA": str(mnist_root)})
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quick"] and metrics["classes"] == list(range(7))
    assert metrics["loss_hparams"]["s"] == 16 and metrics["loss_hparams"]["num_classes"] == 7
    assert len(metrics["history"]["train_loss"]) == 2 and metrics["epochs"] == 2
    assert 0 <= metrics["test_accuracy"] <= 1 and "intra" in metrics["angle_stats"]
    assert metrics["command"].startswith("python -m arclib train --data mnist")
    assert metrics["wall_time_s"] > 0 and metrics["device"]

    # evaluate in-process: the same main() as `python -m arclib evaluate`, without a second interpreter start-up
    code = cli.main(["evaluate", str(out / "checkpoint.pt"), "--open-set-classes", "7-9", "--n-pairs", "400",
                     "--quick", "--data-root", str(mnist_root), "--json", str(tmp_path / "eval.json")])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "closed-set test accuracy" in stdout and "TAR@FAR=0.001" in stdout
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert result["verification"]["classes"] == [7, 8, 9]
    assert 0 <= result["verification"]["auc"] <= 1


def test_train_and_test_limits_pick_the_first_images(tmp_path, mnist_root, capsys):
    out = tmp_path / "limited"
    code = cli.main(["train", "--data", "mnist", "--loss", "cosface", "--embedding-dim", "4", "--width", "4",
                     "--epochs", "1", "--max-steps", "1", "--train-limit", "100", "--test-limit", "50",
                     "--data-root", str(mnist_root), "--out", str(out), "--no-progress", "--device", "cpu"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["train_images"], metrics["test_images"]) == (100, 50)
    assert cli.main(["train", "--train-limit", "0", "--data-root", str(mnist_root), "--out", str(out)]) != 0
    assert "train_limit" in capsys.readouterr().err
