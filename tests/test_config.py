from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from arclib import config  # noqa: E402


def test_quick_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("ARCLIB_QUICK", "1")
    assert config.quick_mode() and config.pick(100, 3) == 3
    monkeypatch.setenv("ARCLIB_QUICK", "0")
    assert not config.quick_mode() and config.pick(100, 3) == 100
    monkeypatch.delenv("ARCLIB_QUICK")
    assert not config.quick_mode()


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCLIB_DATA", str(tmp_path / "env"))
    assert config.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert config.data_root() == tmp_path / "env"
    monkeypatch.delenv("ARCLIB_DATA")
    assert config.data_root() == Path("data")


def test_save_figure_writes_png_only_outside_quick_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCLIB_FIGURES", str(tmp_path))
    fig = plt.figure()
    monkeypatch.setenv("ARCLIB_QUICK", "1")
    assert config.save_figure(fig, "x") is None and not (tmp_path / "x.png").exists()
    monkeypatch.delenv("ARCLIB_QUICK")
    path = config.save_figure(fig, "x")
    assert path == tmp_path / "x.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close(fig)
