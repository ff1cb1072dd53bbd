"""The documentation site: built with ``mkdocs build --strict`` (a broken link, anchor or reference
fails the build), then opened in a real headless Chromium (Debian's chromium, driven through
Playwright with the system browser) over a local HTTP server: the home page renders with its
figure, search finds "Invariance", a gallery page shows the executed notebook's figures, and the API
page lists ``Invariance.synthesize``.

Skips with its reason where the documentation tools (``pip install -e '.[docs]'``), Playwright or
Chromium are missing (under ``CI=true`` that is a failure, as for every browser test: ``tests/needs.py``). ``CTINV_DOCS_SCREENSHOTS=DIR`` keeps a screenshot of every page it checks.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import needs

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BUILD_LIMIT_S = 60  # mkdocs's own "Documentation built in ... seconds"


DOCS_TOOLS = ["mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter"]


def require_tools() -> str:
    """Skip (fail under CI, as ``tests/needs.py`` does) without the documentation tools or Chromium."""
    for module in DOCS_TOOLS:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            needs.missing(f"the documentation tools ({module})", "pip install -e '.[docs]'")
    return needs.chromium()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built from the working tree into a temporary folder, and mkdocs's build time."""
    require_tools()
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-4000:]}"
    built = re.search(r"Documentation built in ([\d.]+) seconds", log)
    assert built, f"no build time in mkdocs's log:\n{log[-2000:]}"
    return out, float(built.group(1))


@pytest.fixture(scope="module")
def server(site):
    """The built site over HTTP on 127.0.0.1 (the search index loads in a web worker, which a
    file:// page may not start)."""
    root, _ = site
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def browser():
    exe = require_tools()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh page that records uncaught script errors and requests to the site that failed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(f"script error: {exc}"))
    pg.on(
        "requestfailed",
        lambda req: pg.errors.append(f"request failed: {req.url}") if req.url.startswith(server) else None,
    )
    pg.on(
        "response",
        lambda resp: (
            pg.errors.append(f"HTTP {resp.status}: {resp.url}")
            if resp.url.startswith(server) and resp.status >= 400
            else None
        ),
    )
    yield pg
    context.close()


def _shot(page, name: str, tmp_path: Path, **kw) -> Path:
    folder = Path(os.environ.get("CTINV_DOCS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), **kw)
    assert path.stat().st_size > 10_000, f"{path} is nearly empty"
    return path


def _broken_images(page, selector: str = "img") -> list[str]:
    return page.eval_on_selector_all(
        selector, "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src.slice(0, 120))"
    )


def test_build_is_strict_and_quick(site):
    root, seconds = site
    assert seconds < BUILD_LIMIT_S, f"mkdocs took {seconds:.1f} s to build the site (limit {BUILD_LIMIT_S} s)"
    for page in [
        "index.html",
        "getting-started/index.html",
        "concepts/index.html",
        "performance/index.html",
        "api/index.html",
        "changelog/index.html",
        "gallery/06_figures/index.html",
    ]:
        assert (root / page).is_file(), f"{page} missing from the built site"
    # the performance page is generated from the benchmark records, not written by hand
    perf = (root / "performance" / "index.html").read_text(encoding="utf-8")
    assert "bench_cpu_128px.json" in perf and "convergence_quick.json" in perf
    assert "AMD EPYC" in perf and "Xeon" in perf
    # nothing large copied in: the figures the pages link to, not every figure
    figures = sorted(p.name for p in (root / "figures" / "quick").iterdir())
    assert len(figures) < 15, figures
    total_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
    assert total_mb < 40, f"the site is {total_mb:.0f} MB"


def test_home_page_renders(page, server, tmp_path):
    page.goto(server, wait_until="load")
    _shot(page, "home", tmp_path)
    assert "ctinv" in page.title()
    h1 = page.locator("article h1").first.inner_text()
    assert "what does a CT denoiser ignore" in h1
    teaser = page.locator("article img").first
    teaser.scroll_into_view_if_needed()
    assert teaser.evaluate("e => e.complete && e.naturalWidth > 1000"), "the teaser figure did not load"
    assert not _broken_images(page, "article img")
    assert page.locator("nav.md-nav--primary >> text=API reference").count() > 0
    assert not page.errors, page.errors


def test_search_finds_invariance(page, server, tmp_path):
    page.goto(server, wait_until="load")
    box = page.locator("input.md-search__input")
    box.click()
    box.press_sequentially("Invariance", delay=30)  # keystrokes, as a reader types
    results = page.locator(".md-search-result__item")
    results.first.wait_for(state="visible", timeout=30_000)
    assert results.count() >= 3
    text = page.locator(".md-search-result").inner_text()
    assert "Invariance" in text
    _shot(page, "search", tmp_path)
    # a result leads to a page that has the word
    results.first.locator("a").first.click()
    page.wait_for_load_state("load")
    assert "nvariance" in page.locator("article").inner_text()
    assert not page.errors, page.errors


def test_gallery_page_shows_its_figures(page, server, tmp_path):
    page.goto(server + "gallery/06_figures/", wait_until="load")
    assert "Figures" in page.locator("article h1, .jp-RenderedHTMLCommon h1").first.inner_text()
    figures = page.locator("article img[src^='data:image']")
    assert figures.count() >= 10, f"{figures.count()} figures on the notebook page"
    assert not _broken_images(page, "article img")
    sizes = figures.evaluate_all("els => els.map(e => e.naturalWidth)")
    assert min(sizes) > 300, sizes
    figures.nth(0).scroll_into_view_if_needed()
    _shot(page, "gallery_06_figures", tmp_path)
    assert not page.errors, page.errors


def test_api_page_lists_invariance_synthesize(page, server, tmp_path):
    page.goto(server + "api/", wait_until="load")
    anchor = page.locator("[id='ctinv_utils.synthesis.invariances.Invariance.synthesize']")
    assert anchor.count() == 1, "Invariance.synthesize is not on the API page"
    assert "synthesize" in anchor.inner_text()
    for name in ["Invariance", "load_data", "load_denoiser", "at_tolerance", "NaturalInvariance", "hu_to_norm"]:
        assert page.locator(f"[id$='.{name}']").count() >= 1, f"{name} missing from the API page"
    assert ":func:" not in page.locator("article").inner_text()  # Sphinx roles reduced to their names
    page.evaluate(
        "document.getElementById('ctinv_utils.synthesis.invariances.Invariance.synthesize')"
        ".scrollIntoView({block: 'start'}); window.scrollBy(0, -70)"
    )
    page.wait_for_timeout(300)
    _shot(page, "api_synthesize", tmp_path)
    assert not page.errors, page.errors


def test_every_public_name_is_documented(site):
    root, _ = site
    html = (root / "api" / "index.html").read_text(encoding="utf-8")
    sys.path.insert(0, str(ROOT))
    import ctinv_utils

    missing = [n for n in ctinv_utils.__all__ if not re.search(rf'id="[\w.]*\.{re.escape(n)}"', html)]
    assert not missing, f"public names without an API entry: {missing}"
