"""The website (`make site`): built from the committed notebooks, then read in Chromium with the network cut off.

Builds the site into a temporary folder with the same command as `make site` (warnings are errors), opens every
page from file:// in Chromium driven by Playwright, with every request that is not a local file refused and
recorded, and checks: the chapters are listed in order, each links to Colab at the notebook's badge address,
images load, no local file is missing, math is typeset by the site's own MathJax, no script fails, and chapter
06's kernel-free slider redraws its figure.
Skipped, with the reason, where Chromium, Playwright or Sphinx is missing (.ci/run installs Chromium).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import colab  # noqa: E402

CHROMIUM = os.environ.get("ARCLIB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None
try:
    import myst_nb  # noqa: F401
    import sphinx_book_theme  # noqa: F401
except ImportError:  # pragma: no cover - depends on the machine
    myst_nb = None

pytestmark = [
    pytest.mark.skipif(myst_nb is None, reason="the site tools are not installed (pip install -e '.[site]')"),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install playwright)"),
]

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

PAGE_STATE_JS = """() => {
  const maths = [...document.querySelectorAll('.math.notranslate')];
  return {
    title: document.title,
    images: [...document.images].map(i => ({src: i.getAttribute('src'), width: i.naturalWidth, done: i.complete})),
    maths: maths.length,
    untypeset: maths.filter(e => !e.querySelector('.MathJax, .MathJax_Display, .MathJax_SVG'))
                    .map(e => e.textContent.slice(0, 60)),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    next: (document.querySelector('a.right-next') || {}).href || null,
  };
}"""

# Sphinx loads MathJax (asynchronously) only on pages with math; wait until it has typeset everything queued.
MATHJAX_READY_JS = "() => !document.querySelector('.math.notranslate') || (window.MathJax && window.MathJax.isReady)"
MATHJAX_DONE_JS = "() => new Promise(done => window.MathJax ? window.MathJax.Hub.Queue(() => done(true)) : done(true))"

# The kernel-free figure: the plotly plot with its own layout.sliders; what its traces show now.
SLIDER_FIGURE_JS = """() => {
  const gd = [...document.querySelectorAll('.js-plotly-plot')].find(g => (g.layout.sliders || []).length);
  if (!gd) return null;
  return {actives: gd.layout.sliders.map(s => s.active),
          traces: JSON.stringify(gd.data.map(t => [t.intensity, t.vertexcolor, t.marker && t.marker.symbol]))};
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    built = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", "-W", "--keep-going",
                            "-c", str(ROOT / "site"), str(ROOT), str(out)],
                           capture_output=True, text=True, cwd=ROOT)
    print(f"site built in {time.perf_counter() - start:.1f} s")
    assert built.returncode == 0, f"sphinx-build failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                  "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A page whose every request off this machine is refused; the refused URLs are in ``page.refused``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    refused: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(LOCAL_SCHEMES):
            request_route.continue_()
        else:
            refused.append(url)
            request_route.abort()

    context.route("**/*", route)
    new_page = context.new_page()
    new_page.refused = refused
    errors: list[str] = []
    new_page.on("pageerror", lambda err: errors.append(str(err)))
    new_page.errors = errors
    missing: list[str] = []  # local files the site asks for but does not have (a script, an image, a font)

    def failed(request):
        # MathJax's hidden MathML copy for screen readers names TeX fonts the packaged MathJax leaves out (it
        # draws with STIX-Web): the browser asks for them and nothing visible changes.
        if request.url.startswith("file:") and "/mathjax/fonts/HTML-CSS/TeX/otf/" not in request.url:
            missing.append(request.url)

    new_page.on("requestfailed", failed)
    new_page.missing = missing
    yield new_page
    context.close()


def _open(page, url: str, lands_on: str | None = None) -> dict:
    page.goto(url)
    if lands_on:  # a forwarding page: read the page it forwards to, not the forwarder (a race under load)
        page.wait_for_url(f"**/{lands_on}", timeout=30_000)
    page.wait_for_load_state("load")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=30_000)
    page.wait_for_function(MATHJAX_READY_JS, timeout=60_000)
    page.evaluate(MATHJAX_DONE_JS)
    return page.evaluate(PAGE_STATE_JS)


def test_every_page_offline_with_images_math_and_colab_links(site, page):
    landing = _open(page, (site / "index.html").as_uri(), lands_on="README.html")
    assert landing["title"].startswith("arclib"), landing["title"]
    chapters = [site / "notebooks" / f"{nb.stem}.html" for nb in NOTEBOOKS]
    chapter_links = [link.split("#")[0] for link in landing["links"] if "/notebooks/" in link]
    assert list(dict.fromkeys(chapter_links)) == [p.as_uri() for p in chapters], "chapters missing or out of order"
    assert landing["images"] and all(i["width"] > 0 for i in landing["images"]), landing["images"]

    url = colab.repository_url()
    typeset = 0
    for number, (notebook, chapter) in enumerate(zip(NOTEBOOKS, chapters)):
        state = _open(page, chapter.as_uri())
        broken = [i["src"] for i in state["images"] if i["width"] == 0]
        assert not broken, f"{chapter.name}: broken images {broken}"
        assert not state["untypeset"], f"{chapter.name}: math left as TeX: {state['untypeset'][:3]}"
        typeset += state["maths"]
        badge_target = colab.badge(url, notebook).rsplit("(", 1)[1].rstrip(")")
        assert badge_target in state["links"], f"{chapter.name}: no link to {badge_target}"
        if number + 1 < len(chapters):
            assert state["next"] == chapters[number + 1].as_uri(), f"{chapter.name}: next is {state['next']}"
    assert typeset > 100, f"only {typeset} formulas typeset in the whole series"
    assert page.refused == [], f"requests that would leave the machine: {page.refused[:5]}"
    assert page.missing == [], f"files the site lacks: {page.missing[:5]}"
    assert page.errors == [], f"JavaScript errors: {page.errors[:3]}"


def test_chapter_06_slider_redraws_without_a_kernel(site, page):
    chapter = next(site.glob("notebooks/06_*.html"), None)
    assert chapter is not None, "chapter 06 is not in the site"
    _open(page, chapter.as_uri())
    page.wait_for_function(SLIDER_FIGURE_JS, timeout=60_000)
    before = page.evaluate(SLIDER_FIGURE_JS)
    figure = page.locator(".js-plotly-plot", has=page.locator(".slider-container")).first
    figure.scroll_into_view_if_needed()
    for index in range(len(before["actives"])):
        # a click at the right end of a slider's rail selects its last step, as dragging the grip there would
        rail = figure.locator(".slider-container .slider-rail-touch-rect").nth(index)
        box = rail.bounding_box()
        page.mouse.click(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
    page.wait_for_function(f"(() => {{ const f = ({SLIDER_FIGURE_JS})();"
                           f" return f && f.traces !== {before['traces']!r}; }})", timeout=30_000)
    after = page.evaluate(SLIDER_FIGURE_JS)
    assert after["actives"] != before["actives"], after["actives"]
    assert after["traces"] != before["traces"], "moving the sliders did not change the figure"
    assert page.refused == [], f"requests that would leave the machine: {page.refused[:5]}"
