"""The benchmark scripts still run end to end (tiny settings): their figures are printed, never asserted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(script: str, *args: str, data: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"ARCLIB_DATA": str(data)} if data else {})}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, env=env, timeout=600, cwd=ROOT)


@pytest.mark.slow
def test_accuracy_table_quick(mnist_root, tmp_path):
    proc = bench("accuracy.py", "--quick", "--data", "mnist", "--losses", "arcface", "angular_sparsemax",
                 "--out", str(tmp_path), "--threads", "1", data=mnist_root)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| mnist |")]
    assert [row.split("|")[2].strip() for row in rows] == ["arcface", "angular_sparsemax"]
    assert "`python -m arclib train --data mnist --loss arcface --s 30 --m 0.5" in proc.stdout


@pytest.mark.slow
def test_mnist_classic_quick(mnist_root):
    proc = bench("mnist_classic.py", "--quick", data=mnist_root)
    assert proc.returncode == 0, proc.stderr
    assert "| classic example (CE, Adadelta, batch 64) |" in proc.stdout
    assert "arclib ArcFace" in proc.stdout and "- CPU:" in proc.stdout


def test_loss_overhead_tiny():
    proc = bench("loss_overhead.py", "--classes", "10", "--batch", "8", "--dim", "4", "--repeats", "2",
                 "--warmup", "1", "--threads", "1", "--methods", "floor", "arcface")
    assert proc.returncode == 0, proc.stderr
    assert "arcface" in proc.stdout and "- CPU:" in proc.stdout


@pytest.mark.slow
def test_omniglot_study_quick(omniglot_root, monkeypatch):
    monkeypatch.setenv("ARCLIB_OMNIGLOT_CHECKSUMS", "offline-mirror")  # the mirror has the images, not the zips
    proc = bench("omniglot_study.py", "--quick", data=omniglot_root)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| softmax | 10 |", "| arcface | 30 |"))]
    assert len(rows) == 2 and "- CPU:" in proc.stdout


@pytest.mark.slow
def test_family_study_quick(mnist_root):
    proc = bench("family_study.py", "--quick", data=mnist_root)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for heading in ("# The family after ArcFace on MNIST", "## Label noise:", "## Mixed quality:", "## AdaCos's scale"):
        assert any(line.startswith(heading) for line in lines), heading
    for run in ("noise0.4-subcenter-seed0", "noise0.4-cleaned-seed0", "quality-adaface-seed0", "scale-adacos-seed0"):
        assert any(line.startswith(f"{run}: test ") for line in lines), run  # the cleaned run's source ran first

    def cells(line):
        return [c.strip() for c in line.strip().strip("|").split("|")]

    # the quick runs fill their cells (one seed each); the runs it skips stay empty
    noise = [cells(line) for line in lines if line.startswith("| 40% |")]
    assert len(noise) == 3 and noise[0][1] == "—" and all(c.endswith("(1)") for c in noise[0][2:] + noise[1][1:6])
    # the centres' angles: the quick run trained a sub-centre model only, so ArcFace's columns stay empty
    assert noise[2][1:3] == ["—", "—"] and all(c.endswith("(1)") for c in noise[2][3:5])
    rows = {cells(line)[0]: cells(line)[1:] for line in lines if line.startswith(("| adaface |", "| adacos |",
                                                                               "| cosface |"))}
    assert all(c.endswith("(1)") for c in rows["adaface"] + rows["adacos"]) and set(rows["cosface"]) == {"—"}
    assert "- CPU:" in proc.stdout


@pytest.mark.slow
def test_cifar10_seeds_quick(cifar_root, monkeypatch):
    monkeypatch.setenv("ARCLIB_CIFAR10_CHECKSUMS", "offline-mirror")
    proc = bench("cifar10_seeds.py", "--quick", data=cifar_root)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("| softmax | 1 |", "| arcface | 1 |"))]
    assert len(rows) == 2 and "- CPU:" in proc.stdout
    assert "python -m arclib train --data cifar10" in proc.stdout
