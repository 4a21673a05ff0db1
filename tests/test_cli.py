"""``python -m arclib``: help, clean errors, and a quick train → evaluate round trip on real MNIST."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from arclib import cli, train


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


# ---- runs you can trust: same command, same numbers; checkpoints and resume refuse what they cannot use -----

def quick_train(root, out, *extra: str) -> list[str]:
    """A seconds-long run on 64 real MNIST images; later options override earlier ones (argparse)."""
    return ["train", "--data", "mnist", "--loss", "arcface", "--s", "16", "--m", "0.3", "--embedding-dim", "4",
            "--width", "4", "--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--train-limit", "64",
            "--test-limit", "32", "--data-root", str(root), "--out", str(out), "--device", "cpu", "--threads", "1",
            "--no-progress", "--seed", "5", *extra]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, mnist_root):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert cli.main(quick_train(mnist_root, out)) == 0
    return out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("arclib: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_same_command_same_numbers(quick_run, mnist_root, tmp_path):
    """--seed fixes everything, the initial weights and class centres included (they once were not)."""
    again = tmp_path / "again"
    assert cli.main(quick_train(mnist_root, again)) == 0
    first, second = (json.loads((out / "metrics.json").read_text()) for out in (quick_run, again))
    for key in ("train_loss", "train_acc", "test_acc", "lr"):
        assert first["history"][key] == second["history"][key], key
    assert first["test_accuracy"] == second["test_accuracy"]
    a, b = (torch.load(out / "checkpoint.pt", weights_only=True) for out in (quick_run, again))
    for part in ("model", "loss"):
        for k, v in a[part]["state"].items():
            assert torch.equal(v, b[part]["state"][k]), (part, k)


def test_resume_names_each_changed_option_with_both_values(quick_run, mnist_root, capsys):
    checkpoint = str(quick_run / "checkpoint.pt")
    before = (quick_run / "checkpoint.pt").read_bytes()
    assert cli.main(quick_train(mnist_root, quick_run, "--resume", checkpoint, "--lr", "0.05", "--s", "8")) == 2
    err = _error_line(capsys)
    assert f"cannot resume from {checkpoint}" in err and "--lr was 0.1, now 0.05" in err and "--s was 16.0, now 8.0" in err
    assert cli.main(quick_train(mnist_root, quick_run, "--resume", checkpoint, "--epochs", "3")) == 2
    assert "--epochs was 1, now 3" in _error_line(capsys)  # a finished one-cycle run is not extended
    assert cli.main(quick_train(mnist_root, quick_run, "--resume", checkpoint, "--classes", "0-4")) == 2
    err = _error_line(capsys)
    assert "--classes was None, now [0, 1, 2, 3, 4]" in err and "num_classes was 10, now 5" in err
    assert (quick_run / "checkpoint.pt").read_bytes() == before  # a refused resume writes nothing


def test_finished_run_resumed_into_a_new_out(quick_run, mnist_root, tmp_path):
    new = tmp_path / "continued"
    assert cli.main(quick_train(mnist_root, new, "--resume", str(quick_run / "checkpoint.pt"))) == 0
    metrics = json.loads((new / "metrics.json").read_text())
    assert metrics["history"]["train_loss"] == json.loads((quick_run / "metrics.json").read_text())["history"]["train_loss"]
    assert (new / "checkpoint.pt").is_file()


def test_resume_of_a_missing_file_fails_before_the_data_loads(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    code = cli.main(["train", "--resume", str(missing), "--data-root", str(tmp_path / "empty"), "--no-download",
                     "--out", str(tmp_path / "x")])
    assert code == 2 and _error_line(capsys) == f"arclib: error: --resume: no such file {missing}"


def test_evaluate_refuses_damaged_and_foreign_checkpoints(quick_run, mnist_root, tmp_path, capsys):
    evaluate = ["--quick", "--n-pairs", "100", "--data-root", str(mnist_root), "--device", "cpu", "--threads", "1"]
    good = quick_run / "checkpoint.pt"
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)
    bad = tmp_path / "damaged.pt"
    bad.write_bytes(bytes(data))
    assert cli.main(["evaluate", str(bad), *evaluate]) == 2
    assert str(bad) in _error_line(capsys)

    state = torch.load(good, weights_only=True)
    old = {k: v for k, v in state.items() if k not in ("settings", "sha256")}
    torch.save({**old, "format": 1}, tmp_path / "format1.pt")  # what runs started before format 2 write
    assert cli.main(["evaluate", str(tmp_path / "format1.pt"), *evaluate]) == 0
    assert "closed-set test accuracy" in capsys.readouterr().out

    state["meta"] = {}
    state["sha256"] = train.checkpoint_digest(state)
    torch.save(state, tmp_path / "no-dataset.pt")
    assert cli.main(["evaluate", str(tmp_path / "no-dataset.pt"), *evaluate]) == 2
    assert "does not name its dataset" in _error_line(capsys)


def test_bad_device_and_threads_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cases = [(["--device", "bogus"], "--device must be cpu, cuda, cuda:N or mps; got 'bogus'"),
             (["--device", "cuda"], "--device 'cuda': this machine has no CUDA device"),
             (["--threads", "-2"], "--threads must be in [1, 4096], got -2")]
    for options, message in cases:
        for command in (["train", "--data-root", str(tmp_path / "empty"), "--no-download", "--out", str(tmp_path)],
                        ["evaluate", str(tmp_path / "nope.pt")]):
            assert cli.main([*command, *options]) == 2
            assert _error_line(capsys).startswith(f"arclib: error: {message}")


def test_divergence_is_one_line_with_remedies(mnist_root, tmp_path, capsys):
    code = cli.main(quick_train(mnist_root, tmp_path / "diverged", "--lr", "1e20", "--schedule", "none"))
    assert code == 2
    err = _error_line(capsys)
    assert "training diverged at epoch 1" in err and "a lower lr (now 1e+20)" in err and "a smaller s (now 16)" in err
