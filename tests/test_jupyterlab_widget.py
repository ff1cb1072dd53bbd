"""The invariance explorer's widget in a real JupyterLab, driven by headless Chromium.

A JupyterLab server on a free localhost port (with a token, in a temporary folder) opens a small
notebook that builds an :class:`~ctinv_utils.synthesis.explorer.InvarianceExplorer` on a 32 px image
with Gauss+RI and displays its widget. The test drags the alpha slider off the precomputed grid, then
checks what a reader sees: the "computed α" menu follows the slider, the status line says what is
optimised, the window menu still redraws the figure while the run goes (the kernel is not blocked),
and when the run ends the figure shows the new alpha, the bar is green and says where it converged.
A second run is cancelled: the bar turns orange and the controls go back to the figure shown.

Skips where Playwright or Chromium are missing (fails under ``CI=true``: ``tests/needs.py``).
``CTINV_WIDGET_SCREENSHOTS=DIR`` keeps its screenshots there (else in the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import needs

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: The notebook's one cell: a 32 px explorer whose grid (0.05, 0.2) is computed in the cell. Its
#: Gauss+RI waits 4 ms per call, so that an on-demand run (at least 1000 iterations, then it stops as
#: converged) lasts long enough to try the menus during it on a fast machine too.
NOTEBOOK_CODE = """\
import time
import torch
from ctinv_utils.models import GaussRI
from ctinv_utils.synthesis.invariances import Invariance
from ctinv_utils.synthesis.explorer import InvarianceExplorer


class PatientGaussRI(GaussRI):
    def forward(self, x):
        time.sleep(0.004)
        return super().forward(x)


x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.3
grid = Invariance(x, PatientGaussRI(), "mse", alpha=[0.05, 0.2])
grid.synthesize(50, progress=False)
explorer = InvarianceExplorer(x, {"gauss_ri": PatientGaussRI()}, ["mse"], [0.05, 0.2], max_iter=3000,
                              cache_dir="explorer_cache", progress=False,
                              synthesize_kw={"stop_criterion": 0.01, "stop_window": None, "min_iter": 1000})
explorer.add(grid, "gauss_ri")
ui = explorer.widget()
ui
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(path: Path) -> None:
    cell = {"cell_type": "code", "execution_count": None, "id": "explorer", "metadata": {}, "outputs": [],
            "source": NOTEBOOK_CODE.splitlines(keepends=True)}
    nb = {"cells": [cell], "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    path.write_text(json.dumps(nb))


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server in ``tmp_path`` (its own config, data and runtime folders): (url, token)."""
    needs.chromium()
    work = tmp_path / "work"
    work.mkdir()
    _notebook(work / "explorer.ipynb")
    labconfig = tmp_path / "config" / "labconfig"  # no "official Jupyter news?" notification over the page
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "CTINV_CACHE": str(tmp_path / "cache"),
           "JUPYTER_PREFER_ENV_PATH": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.3)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _shots(tmp_path) -> Path:
    folder = Path(os.environ.get("CTINV_WIDGET_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_explorer_widget_stays_usable_while_an_off_grid_alpha_is_optimised(lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, token = lab
    shots = _shots(tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=needs.chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"{url}/lab/tree/explorer.ipynb?token={token}")
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext "
                                   "&& window.jupyterapp.shell.currentWidget.sessionContext.isReady",
                                   timeout=90_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            ui = page.locator(".ctinv-explorer")
            figure = ui.locator("img")
            page.wait_for_function("() => { const i = document.querySelector('.ctinv-explorer img');"
                                   " return i && i.naturalWidth > 100; }", timeout=90_000)
            selects = {name: ui.locator(".widget-dropdown", has_text=name).locator("select")
                       for name in ("denoiser", "distance", "window", "computed α")}
            status = ui.locator(".ctinv-explorer-status")
            readout = ui.locator(".widget-readout")
            bar = ui.locator(".progress-bar")
            _until(lambda: _selected(selects["computed α"]) == "0.2", "the computed-α menu shows the slider's 0.2")
            page.screenshot(path=str(shots / "1_precomputed.png"))
            grid_src = figure.get_attribute("src")

            # drag the slider's handle to the right: a value off the grid
            handle = ui.locator(".noUi-handle").first
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            alpha = readout.inner_text().strip()
            assert alpha not in ("0.05", "0.2"), alpha
            expect(status).to_contain_text(f"optimising α = {alpha}", timeout=10_000)
            _until(lambda: _selected(selects["computed α"]) == "— not computed —",
                   "the computed-α menu follows the slider off the grid",
                   detail=lambda: f"; it shows {_selected(selects['computed α'])!r}")
            # the kernel is not blocked: the window menu redraws the figure shown while the run goes
            selects["window"].select_option("abdomen")
            page.wait_for_function("(src) => document.querySelector('.ctinv-explorer img').src !== src",
                                   arg=grid_src, timeout=10_000)
            assert "converged" not in status.inner_text(), "the run ended before the menus were tried"
            for select in selects.values():
                assert select.is_enabled()
            page.screenshot(path=str(shots / "2_running.png"))
            running_src = figure.get_attribute("src")

            # when the run ends: the figure shows the new alpha, the bar is green, the menu follows
            expect(status).to_contain_text("converged at", timeout=60_000)
            page.wait_for_function("(src) => document.querySelector('.ctinv-explorer img').src !== src",
                                   arg=running_src, timeout=10_000)
            expect(bar).to_have_class(_contains("progress-bar-success"))
            _until(lambda: _selected(selects["computed α"]) == alpha, f"the computed-α menu shows {alpha}")
            assert bar.evaluate("b => b.style.width") == "100%"
            page.screenshot(path=str(shots / "3_converged.png"))

            # another off-grid alpha, cancelled: the controls go back to the figure shown
            handle.focus()
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            cancelled = readout.inner_text().strip()
            expect(status).to_contain_text(f"optimising α = {cancelled}", timeout=10_000)
            ui.get_by_role("button", name="Cancel").click()
            expect(status).to_contain_text("cancelled", timeout=20_000)
            expect(bar).to_have_class(_contains("progress-bar-warning"))
            expect(readout).to_have_text(alpha)
            page.screenshot(path=str(shots / "4_cancelled.png"))
        except BaseException:  # pytest.fail too: keep what the page showed
            page.screenshot(path=str(shots / "failure.png"))
            (shots / "failure.txt").write_text(page.evaluate(
                "() => [...document.querySelectorAll('.jp-OutputArea')].map(o => o.innerText).join('\\n')"))
            raise
        finally:
            browser.close()


def _selected(select) -> str:
    """The text of the option a <select> shows (ipywidgets writes its spaces as no-break spaces)."""
    text = select.evaluate("s => s.selectedIndex < 0 ? '' : s.options[s.selectedIndex].text")
    return text.replace("\xa0", " ").strip()


def _until(check, what: str, timeout: float = 10.0, detail=None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {timeout:g} s: {what}{detail() if detail else ''}")
        time.sleep(0.1)


def _contains(cls: str):
    import re

    return re.compile(rf"(^|\s){re.escape(cls)}(\s|$)")
