"""Checks before the long work: a run that cannot finish says so before any notebook starts."""

from __future__ import annotations

import pytest

from ctinv_utils.pipeline import preflight as pf
from ctinv_utils.pipeline import run
from ctinv_utils.pipeline.preflight import PreflightError


@pytest.fixture
def no_vgg_weights(tmp_path, monkeypatch):
    """A machine without ImageNet VGG weights anywhere ctinv looks."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("CTINV_VGG16_WEIGHTS", raising=False)
    monkeypatch.delenv("CTINV_VGG19_WEIGHTS", raising=False)


def test_required_vgg_follows_the_parameters():
    assert pf.required_vgg("02_denoiser_training", {"wganvgg": {"vgg_weights": "imagenet"}}) == ["vgg19"]
    assert pf.required_vgg("02_denoiser_training", {"wganvgg": {"vgg_weights": "imagenet_or_random"}}) == []
    assert pf.required_vgg("03_image_domain_invariances", {"vgg_weights": "imagenet"}) == ["vgg16"]
    assert pf.required_vgg("04_natural_invariances", {"vgg_weights": "imagenet", "distance": "dssim"}) == []
    assert pf.required_vgg("04_natural_invariances", {"vgg_weights": "imagenet", "distance": "vgg"}) == ["vgg16"]


def test_paper_preset_without_vgg_weights_stops_before_any_notebook(tmp_path, no_vgg_weights, monkeypatch):
    """Today's failure mode: PRESET=paper simulated for a long time, then 02 failed on VGG19."""
    monkeypatch.setattr(pf, "cpu_estimate_hours", lambda params: (123.0, "measured"))
    with pytest.raises(PreflightError) as info:
        run.run("paper", device="cpu", output_root=tmp_path, progress=False)
    msg = str(info.value)
    assert "02_denoiser_training needs ImageNet VGG19" in msg and "03_image_domain_invariances needs ImageNet VGG16" in msg
    assert "python -m ctinv_utils vgg download vgg19" in msg
    assert "meant for a GPU" in msg and "at least 123 hours" in msg and "--confirm-cpu" in msg
    assert not (tmp_path / "papermill_runs").exists()  # nothing started, nothing written


def test_confirmed_cpu_run_of_a_gpu_preset_only_notes_the_estimate(tmp_path, monkeypatch):
    monkeypatch.setattr(pf, "cpu_estimate_hours", lambda params: (2.5, "measured"))
    preset = {"name": "big", "meant_for": "gpu"}
    with pytest.raises(PreflightError, match="at least 2 hours.*--confirm-cpu"):
        pf.preflight(preset, {}, "cpu")
    notes = pf.preflight(preset, {}, "cpu", confirm_cpu=True)
    assert len(notes) == 1 and "running anyway" in notes[0]
    assert pf.preflight(preset, {}, "cuda") == []  # on a GPU nothing to say
    assert pf.preflight({"name": "quick"}, {}, "cpu") == []


def test_cpu_estimate_is_measured_and_grows_with_the_work(monkeypatch):
    """The estimate times real CNN-10 steps, scaled by pixels and iterations."""
    assert 0 < pf._seconds_per_step(2, 32, train=True) < 10 and 0 < pf._seconds_per_step(1, 32, train=False) < 10
    monkeypatch.setattr(pf, "_seconds_per_step", lambda batch, size, train, repeats=2: 1.0 if train else 0.5)
    params = {"02_denoiser_training": {"cnn10": {"iterations": 1000, "batch_size": 8, "patch_size": 64}},
              "03_image_domain_invariances": {"crop": 64, "alphas": [0.1, 0.2], "denoiser_names": ["cnn10"],
                                              "max_iter": 100}}
    h, how = pf.cpu_estimate_hours(params, probe_px=32)
    # training: 1000 steps x 1 s x (8*64^2)/(4*32^2) = 8000 s; invariances: 3 x 100 x 0.5 s x 2 x 4 = 1200 s
    assert h == pytest.approx((8000 + 1200) / 3600)
    assert "cnn10 training 1000 steps" in how and "3 invariance runs x 100 steps" in how


def test_meant_for_is_checked_in_the_preset(tmp_path):
    from ctinv_utils.pipeline import presets
    from ctinv_utils.errors import PresetError

    (tmp_path / "x.yaml").write_text("meant_for: tpu\n")
    with pytest.raises(PresetError, match="meant_for must be one of cpu, gpu, got 'tpu'"):
        presets.load_preset("x", preset_dir=tmp_path)
    assert presets.load_preset("paper")["meant_for"] == "gpu"


def test_data_root_without_a_pairable_patient_stops_before_any_notebook(tmp_path):
    """A TCIA tree whose only patient lacks its low-dose series: found from listings, before 01 runs."""
    series = tmp_path / "data" / "LDCT-and-Projection-data" / "L067" / "1-study" / "1.000000-Full Dose Images-12345"
    series.mkdir(parents=True)
    (series / "1-001.dcm").write_bytes(b"")
    with pytest.raises(PreflightError, match="L067: has .*Full Dose Images.* but no low-dose series"):
        run.run("smoke", data=str(tmp_path / "data"), output_root=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
