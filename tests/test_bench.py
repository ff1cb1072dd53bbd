"""The side-by-side benchmark runs end to end at a tiny size: every method is timed in its own child
process, the ratios are computed against the baseline of the same run, and ctinv's fast path gives
the baseline's x_inv (the speed-ups change no result)."""

import json

import pytest

from ctinv_utils.tools import bench

pytestmark = pytest.mark.reproduction


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


def test_gpu_check_runs_its_code_path_on_cpu(tmp_path):
    """The GPU check has no GPU to run on in CI: its whole code path (synthesis against an fp32
    reference, both training bursts, the JSON) runs here at toy sizes on the CPU, where the fast and
    the reference bounded-MSE runs compute the same thing."""
    import json

    from ctinv_utils.tools.bench import gpu_check

    out = gpu_check(tmp_path, device="cpu", size=32, iterations=6, reference_iterations=3, burst_iterations=1,
                    bursts={"cnn10": {"batch_size": 2, "patch_size": 16},
                            "wganvgg": {"batch_size": 2, "patch_size": 32, "vgg_weights": "imagenet_or_random"}})
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == json.loads(json.dumps(out))
    assert set(out) >= {"cnn10_mse", "cnn10_vgg", "train_cnn10", "train_wganvgg"}
    # no TF32 on a CPU: the bounded-MSE run is the fp32 reference itself
    assert max(out["cnn10_mse"]["objective_rel_diff_to_fp32_after_3"]) == 0.0
    for key in ("cnn10_mse", "cnn10_vgg"):
        assert out[key]["alpha_iterations_per_s"] > 0 and out[key]["seconds_6_iterations_8_alphas"] > 0
        assert out[key]["within_tolerance"] and len(out[key]["objective_rel_diff_to_fp32_after_3"]) == 8
    assert out["train_wganvgg"]["iterations_per_s"] > 0 and out["train_wganvgg"]["patch_size"] == 32
    with pytest.raises(ValueError, match="must exceed"):
        gpu_check(tmp_path, device="cpu", size=32, iterations=3, reference_iterations=3)


def test_gpu_check_without_a_gpu_says_so(tmp_path):
    import torch

    from ctinv_utils.tools.bench import gpu_check

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        gpu_check(tmp_path)
