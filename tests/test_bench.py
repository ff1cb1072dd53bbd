"""The side-by-side benchmark runs end to end at a tiny size: every method is timed in its own child
process, the ratios are computed against the baseline of the same run, and ctinv's fast path gives
the baseline's x_inv (the speed-ups change no result)."""

import json

import pytest

from ctinv_utils import bench

pytestmark = pytest.mark.slow


def test_check_mode_measures_and_agrees_with_the_baseline(tmp_path, capsys):
    assert bench.main(["--check", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["methods"][:2] == ["baseline", "ctinv"] and res["conv_gflops"] > 0
    assert {(r["denoiser"], r["distance"]) for r in res["rows"]} == {("cnn10", "mse"), ("cnn10", "dssim")}
    for r in res["rows"]:
        assert r["baseline_throughput"] > 0 and r["ctinv_throughput"] > 0
        assert r["ratio_to_baseline"] == pytest.approx(r["ctinv_throughput"] / r["baseline_throughput"])
        assert r["within_tolerance"] and max(r["objective_rel_diff_after_check_iters"]) <= bench.TOLERANCE
        assert r["ctinv_precision"] == "fp32" and r["tolerance"] == bench.TOLERANCE  # recorded by the run
        assert 0 < r["fraction_of_conv_peak"] and r["ctinv_peak_mb"] > 0
    assert (tmp_path / "bench.png").is_file()
    assert "x baseline" in capsys.readouterr().out


def test_alpha_grid_is_log_spaced_over_the_talks_range():
    g = bench.alpha_grid(8)
    assert len(g) == 8 and g[0] == pytest.approx(0.01) and g[-1] == pytest.approx(1.0)
    assert all(b / a == pytest.approx(g[1] / g[0]) for a, b in zip(g, g[1:]))


def test_the_tolerance_follows_the_precision_the_run_recorded():
    """Only a VGG16 run whose features computed in bf16 gets the wider tolerance; the precision comes
    from the run (``Distance.precision_on``), not from this machine's hardware."""
    assert bench.tolerance_for("vgg", "bf16") == bench.TOLERANCE_BF16_VGG
    assert bench.tolerance_for("vgg", "fp32") == bench.TOLERANCE
    assert bench.tolerance_for("mse", "bf16") == bench.TOLERANCE
