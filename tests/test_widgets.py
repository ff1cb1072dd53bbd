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
    alpha_slider = ui.children[1].children[0]
    alpha_slider.value = 0.5  # a value off the grid: computed on demand through the callback
    assert ("gauss_ri", "mse", 0.5) in ex.results
