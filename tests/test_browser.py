"""The hypersphere chapter in a real browser: JupyterLab on loopback, Chromium driven by Playwright.

Runs notebook 06 (quick mode) top to bottom, moves the explorer's s and m sliders with the keyboard, and asserts
that the plotly figure in the page changed; takes a screenshot of the explorer in the test's temporary folder.
``make figures`` runs this test with ``ARCLIB_BROWSER_FIGURE`` naming where the screenshot goes
(figures/06_browser_explorer.png); ``make test`` writes nothing in the repository.
Skipped, with the reason, where Chromium or Playwright is missing (.ci/run installs both).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = next(iter(sorted((ROOT / "notebooks").glob("06_*.ipynb"))), None)
CHROMIUM = os.environ.get("ARCLIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(NOTEBOOK is None, reason="notebook 06 is missing"),
]

# The explorer's figure: the plotly plot in the same output as the slider labelled "scale s".
FIGURE_JS = """() => {
  const label = [...document.querySelectorAll('.widget-slider .widget-label')]
      .find(l => l.textContent.trim() === 'scale s');
  if (!label) return null;
  const out = label.closest('.jp-OutputArea-output');
  const gd = out && out.querySelector('.js-plotly-plot');
  if (!gd || !gd.data) return null;
  return {title: gd.layout.title.text, data: JSON.stringify(gd.data.map(t => [t.intensity, t.marker]))};
}"""


# True once the figure's title shows the value the slider labelled `label` reads out (its `symbol = value`): the
# kernel has caught up with every key press.
CAUGHT_UP_JS = """([label, symbol]) => {
  const slider = [...document.querySelectorAll('.widget-slider')]
      .find(w => w.querySelector('.widget-label') && w.querySelector('.widget-label').textContent.trim() === label);
  const readout = slider && slider.querySelector('.widget-readout');
  const f = (FIGURE)();
  if (!readout || !f) return false;
  const shown = f.title.match(new RegExp(symbol + ' = ([0-9.]+)'));
  return !!shown && Math.abs(parseFloat(shown[1]) - parseFloat(readout.textContent || readout.value)) < 1e-6;
}""".replace("FIGURE", FIGURE_JS)


KERNEL_IDLE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return k && k.status === 'idle';
}"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a copy of notebook 06; yields its base URL and token."""
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, ARCLIB_QUICK="1", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited: {(tmp_path / 'jupyterlab.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 120 s")
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


ALL_CELLS_RUN_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const code = w.content.widgets.filter(c => c.model.type === 'code');
  return w.sessionContext.session.kernel.status === 'idle'
      && code.every(c => c.model.executionCount !== null && !(c.promptNode && c.promptNode.textContent.includes('*')));
}"""


def _s_and_m(title: str) -> tuple[float, float]:
    """The explorer's title names the slider values it was drawn for: 's = 16.0, m = 0.40; ...'."""
    found = re.search(r"s = ([\d.]+), m = ([\d.]+)", title)
    assert found, f"no 's = ..., m = ...' in the figure's title {title!r}"
    return float(found.group(1)), float(found.group(2))


def _press(page, label: str, key: str, times: int) -> None:
    handle = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label)).locator(".noUi-handle")
    handle.first.focus()
    for _ in range(times):
        page.keyboard.press(key)


def test_sliders_redraw_the_sphere_in_jupyterlab(jupyterlab, tmp_path):
    url, token = jupyterlab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader",
                                           "--enable-unsafe-swiftshader"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?token={token}")
            page.wait_for_function("window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell')",
                                   timeout=120_000)
            page.wait_for_function(KERNEL_IDLE_JS, timeout=120_000)  # run-all before the kernel is up asks for one
            # fire and forget: the command's promise only settles when every cell has run
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function(FIGURE_JS, timeout=300_000)
            # the notebook's own timing cell moves the sliders from code, then puts them back: wait until every
            # code cell has run (the kernel is also idle for a moment between two cells of a run-all)
            page.wait_for_function(ALL_CELLS_RUN_JS, timeout=300_000)
            before = page.evaluate(FIGURE_JS)
            s0, m0 = _s_and_m(before["title"])

            _press(page, "scale s", "ArrowRight", 8)  # s up by eight steps
            page.wait_for_function(CAUGHT_UP_JS, arg=["scale s", "s"], timeout=120_000)
            after_s = page.evaluate(FIGURE_JS)
            s1, m1 = _s_and_m(after_s["title"])
            assert s1 > s0 and m1 == m0, (before["title"], after_s["title"])
            assert after_s["data"] != before["data"], "moving s did not change the figure's data"

            _press(page, "margin m", "ArrowLeft", 2)  # m down by two steps
            page.wait_for_function(CAUGHT_UP_JS, arg=["margin m", "m"], timeout=120_000)
            after_m = page.evaluate(FIGURE_JS)
            s2, m2 = _s_and_m(after_m["title"])
            assert s2 == s1 and m2 < m1, (after_s["title"], after_m["title"])
            assert after_m["data"] != after_s["data"], "moving m did not change the figure's data"

            news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's "get news?" toast
            if news.count():
                news.first.click()
            out = page.locator(".jp-OutputArea-output", has=page.locator(".widget-label", has_text="scale s"))
            out.first.scroll_into_view_if_needed()
            path = tmp_path / "06_browser_explorer.png"
            out.first.screenshot(path=str(path))
            assert path.stat().st_size > 10_000
            if os.environ.get("ARCLIB_BROWSER_FIGURE"):  # set by scripts/figures.py only
                shutil.copy(path, os.environ["ARCLIB_BROWSER_FIGURE"])
        finally:
            browser.close()
