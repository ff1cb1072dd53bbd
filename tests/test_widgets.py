"""The explorer's callbacks, without a browser."""

import numpy as np
import pytest
import torch

from ctinv_utils.models import GaussRI
from ctinv_utils.synthesis.invariances import Invariance
from ctinv_utils.synthesis.explorer import InvarianceExplorer


@pytest.fixture
def x():
    return torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(0)) * 0.3


def test_precomputed_results_show_without_recomputing(x, monkeypatch):
    inv = Invariance(x, GaussRI(), "mse", alpha=[0.1, 1.0])
    inv.synthesize(5, progress=False)
    ex = InvarianceExplorer(x, {"gauss_ri": GaussRI()}, ["mse", "dssim"], [0.1, 1.0], max_iter=3, progress=False)
    ex.add(inv, "gauss_ri")
    monkeypatch.setattr(Invariance, "synthesize", lambda *a, **k: pytest.fail("recomputed a precomputed value"))
    p = ex.panels("gauss_ri", "mse", 1.0)
    assert np.allclose(p["dx"], p["x_inv"] - p["x"])
    assert set(p) == {"x", "x_inv", "f_x", "f_x_inv", "dx", "dy"}
    # HU: the input is about -540 HU +- noise
    assert -700 < p["x"].mean() < -400


def test_new_alpha_is_computed_once_and_cached_on_disk(x, tmp_path):
    ex = InvarianceExplorer(x, {"gauss_ri": GaussRI()}, ["mse"], [0.1, 1.0], max_iter=3, progress=False,
                            cache_dir=tmp_path)
    a = ex.result("gauss_ri", "mse", 0.3)
    assert len(list(tmp_path.glob("*/*/gauss_ri_mse_0.3.npy"))) == 1
    fresh = InvarianceExplorer(x, {"gauss_ri": GaussRI()}, ["mse"], [0.1, 1.0], max_iter=3, progress=False,
                               cache_dir=tmp_path)
    assert np.array_equal(fresh.result("gauss_ri", "mse", 0.3), a)
    # another image or other settings never see that cached result
    other = InvarianceExplorer(x + 0.1, {"gauss_ri": GaussRI()}, ["mse"], [0.1, 1.0], max_iter=3, progress=False,
                               cache_dir=tmp_path)
    assert not np.array_equal(other.result("gauss_ri", "mse", 0.3), a)
    assert len(list(tmp_path.glob("*/*/gauss_ri_mse_0.3.npy"))) == 2
    with pytest.raises(ValueError, match="unknown distance"):
        ex.result("gauss_ri", "dssim", 0.3)
    with pytest.raises(ValueError, match="alpha must be finite"):
        ex.result("gauss_ri", "mse", -1.0)


def _cached_explorer(x, cache_dir, distance, module=None):
    """A two-step Gauss+RI explorer of one distance with a disk cache (``module``: None = built by it)."""
    return InvarianceExplorer(x, {"gauss_ri": GaussRI()}, [distance], [0.1], max_iter=2, progress=False,
                              cache_dir=cache_dir, distance_modules={distance: module} if module else None)


def test_disk_key_knows_the_precision_of_the_distance_a_run_uses(x, tmp_path, monkeypatch):
    """Two distances with equal weights that compute in different precisions (VGG16: bf16 on AMX, fp32
    elsewhere) never share a cached result, also when the explorer builds the distance itself."""
    from ctinv_utils.synthesis import explorer as explorer_module
    from ctinv_utils.synthesis.distances import BoundedMSE

    class Precise(BoundedMSE):
        def __init__(self, precision):
            super().__init__()
            self.precision = precision

        def precision_on(self, device="cpu"):
            return self.precision

    def explore(module=None):
        return _cached_explorer(x, tmp_path, "mse", module)

    explore(Precise("fp32")).result("gauss_ri", "mse", 0.3)
    explore(Precise("bf16")).result("gauss_ri", "mse", 0.3)
    assert len(list(tmp_path.glob("*/*/gauss_ri_mse_0.3.npy"))) == 2
    # built by the explorer: keyed by the module it built, which is built once for every run
    built = []
    monkeypatch.setattr(explorer_module, "get_distance", lambda name, seed: built.append(name) or Precise("bf16"))
    ex = explore()
    with monkeypatch.context() as m:  # the bf16 entry above: read from disk, nothing computed
        m.setattr(Invariance, "synthesize", lambda *a, **k: pytest.fail("recomputed a cached result"))
        ex.result("gauss_ri", "mse", 0.3)
    ex.result("gauss_ri", "mse", 0.4)
    assert built == ["mse"] and len(list(tmp_path.glob("*/*/gauss_ri_mse_0.*.npy"))) == 3
    monkeypatch.setattr(explorer_module, "get_distance", lambda name, seed: Precise("fp32 on another machine"))
    explore().result("gauss_ri", "mse", 0.3)
    assert len(list(tmp_path.glob("*/*/gauss_ri_mse_0.3.npy"))) == 3


def test_disk_key_knows_a_distance_s_settings(x, tmp_path):
    """DSSIM's window is a setting, not a weight: two windows never share a cached result."""
    from ctinv_utils.synthesis.distances import DSSIM

    for module in (DSSIM(), DSSIM(win_size=7), DSSIM()):  # the third: the first one's entry again
        _cached_explorer(x, tmp_path, "dssim", module).result("gauss_ri", "dssim", 0.3)
    assert len(list(tmp_path.glob("*/*/gauss_ri_dssim_0.3.npy"))) == 2


def test_figure_and_widget_build(x):
    import matplotlib

    matplotlib.use("Agg")
    ex = InvarianceExplorer(x, {"gauss_ri": GaussRI()}, ["mse"], [0.1, 1.0], max_iter=2, progress=False)
    fig = ex.figure("gauss_ri", "mse", 0.1, "abdomen")
    assert len(fig.axes) >= 6
    ui = ex.widget()
    assert not ui.background  # no event loop here: a new alpha is computed in the call that selects it
    ui.alpha.value = 0.5  # a value off the grid: computed on demand through the callback
    assert ("gauss_ri", "mse", 0.5) in ex.results
    assert ui.shown == ("gauss_ri", "mse", 0.5, "lung") and ui.computed.value == 0.5


# -- the widget in a kernel: runs in the background ------------------------------------------------
STOP = {"stop_criterion": 0.01, "stop_window": None, "min_iter": 30}


def _explorer(x, **kw):
    grid = Invariance(x, GaussRI(), "mse", alpha=[0.1, 1.0])
    grid.synthesize(5, progress=False)
    ex = InvarianceExplorer(x, {"gauss_ri": GaussRI()}, ["mse"], [0.1, 1.0], progress=False, **kw)
    ex.add(grid, "gauss_ri")
    return ex


async def _until_idle(ui, timeout=60.0):
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while ui.running is not None:
        assert time.monotonic() < deadline, f"the run did not end within {timeout} s: {ui.status.value}"
        await asyncio.sleep(0.02)


def test_widget_optimises_off_grid_in_the_background_and_shows_it_when_done(x):
    """Where an event loop runs (a kernel), an off-grid alpha is optimised in a thread: the call that
    moved the slider returns at once, the computed-α menu follows the slider, the window menu still
    redraws the figure shown, and when the run converged the figure shows it and the bar is green."""
    import asyncio

    import matplotlib

    matplotlib.use("Agg")

    async def scenario():
        ex = _explorer(x, max_iter=400, synthesize_kw=STOP)
        ui = ex.widget()
        assert ui.background and ui.shown == ("gauss_ri", "mse", 1.0, "lung") and ui.computed.value == 1.0
        ui.alpha.value = 0.3
        assert ui.running == ("gauss_ri", "mse", 0.3) and ui.computed.value == "off"
        assert "optimising α = 0.3" in ui.status.value and not ui.cancel.disabled
        before = ui.image.value
        ui.window.value = "abdomen"  # the kernel is free: the figure shown is redrawn at once
        assert ui.shown == ("gauss_ri", "mse", 1.0, "abdomen") and ui.image.value != before
        await _until_idle(ui)
        assert ui.shown == ("gauss_ri", "mse", 0.3, "abdomen") and ui.computed.value == 0.3
        assert ui.progress.bar_style == "success" and ui.progress.value == ui.progress.max < 400
        assert f"converged at {ui.progress.max}" in ui.status.value and ui.cancel.disabled
        # a computed alpha chosen in the menu moves the slider and shows at once
        ui.computed.value = 0.1
        assert ui.alpha.value == 0.1 and ui.shown[:3] == ("gauss_ri", "mse", 0.1) and ui.running is None

    asyncio.run(scenario())


def test_widget_queues_a_second_alpha_and_cancel_goes_back_to_the_figure_shown(x):
    import asyncio

    import matplotlib

    matplotlib.use("Agg")

    async def scenario():
        ex = _explorer(x, max_iter=100_000)  # no early stop: runs until cancelled
        ui = ex.widget()
        ui.alpha.value = 0.2
        await asyncio.sleep(0.3)
        assert ui.running == ("gauss_ri", "mse", 0.2) and ui.progress.value > 0
        ui.alpha.value = 0.5  # a second new alpha waits for the first, and the status line says so
        assert ui.running == ("gauss_ri", "mse", 0.2) and "queued next: α = 0.5" in ui.status.value
        ui.cancel.click()
        await _until_idle(ui)
        assert ui.progress.bar_style == "warning" and "cancelled α = 0.2" in ui.status.value
        # the controls show what the figure shows; nothing half-done is kept or started again
        assert ui.selection() == ui.shown[:3] == ("gauss_ri", "mse", 1.0) and ui.computed.value == 1.0
        assert set(ex.results) == {("gauss_ri", "mse", 0.1), ("gauss_ri", "mse", 1.0)}
        ui.window.value = "head"
        await asyncio.sleep(0.1)
        assert ui.running is None

    asyncio.run(scenario())


# -- progress bars end in a state that says how the run ended ---------------------------------------
def test_a_run_stopped_because_it_converged_ends_its_bar_at_100_percent(x, monkeypatch, capsys):
    from ctinv_utils.progress import HEADLESS_ENV

    monkeypatch.setenv(HEADLESS_ENV, "1")  # the text bar of a headless run
    inv = Invariance(x, GaussRI(), "mse", alpha=[0.1])
    inv.synthesize(400, **STOP)
    assert inv.iteration < 400
    final = capsys.readouterr().err.split("\r")[-1]
    assert "100%" in final and f"{inv.iteration}/{inv.iteration}" in final
    assert f"converged at {inv.iteration}" in final


def test_notebook_bar_is_green_when_converged_and_red_when_it_failed(x):
    from tqdm.notebook import tqdm

    from ctinv_utils.progress import finish

    bar = tqdm(total=400, display=False)
    bar.update(120)
    finish(bar, "converged at 120")
    pbar = bar.container.children[1]
    assert pbar.bar_style == "success" and pbar.max == pbar.value == 120 and "converged at 120" in bar.postfix
    broken = tqdm(total=400, display=False)
    broken.update(120)
    broken.close()  # an error: the bar keeps the count where it stopped
    assert broken.container.children[1].bar_style == "danger"


def test_progress_reported_to_a_function_and_a_cancel_stops_the_loop(x):
    from ctinv_utils.progress import report_to

    class Stop(Exception):
        pass

    seen = []

    def report(bar):
        seen.append((bar.n, bar.total, bar.state))
        if bar.n == 7 and bar.state == "running":
            raise Stop

    inv = Invariance(x, GaussRI(), "mse", alpha=[0.1])
    with report_to(report), pytest.raises(Stop):
        inv.synthesize(50, progress=True)
    assert inv.iteration == 7 and seen[-1] == (7, 50, "failed")
    seen.clear()
    with report_to(report):
        inv.synthesize(5, progress=True)
    assert seen[-1] == (5, 5, "success")
