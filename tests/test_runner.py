"""The papermill runner: typed parameters, clear failures, preset and --only errors, and a smoke
run of every notebook."""

import json
import os
import textwrap

import pytest

from ctinv_utils import presets, run
from ctinv_utils.errors import PresetError


def _write_nb(path, body):
    path.write_text(textwrap.dedent(body))
    return path


def test_typed_parameters_and_failure_names_notebook_and_cell(tmp_path, monkeypatch):
    monkeypatch.delenv("CTINV_HEADLESS", raising=False)
    nb = _write_nb(tmp_path / "01_typed.py", '''\
        # %% tags=["parameters"]
        flag = True
        items = [1]
        name = "x"

        # %%
        assert flag is False, f"flag arrived as {flag!r}"
        assert items == [1, 2] and name is None
        print("typed ok")

        # %%
        raise RuntimeError("boom in cell 2")
        ''')
    out = tmp_path / "out.ipynb"
    with pytest.raises(run.NotebookFailed) as err:
        run.execute_notebook(nb, out, {"flag": False, "items": [1, 2], "name": None}, progress=False)
    msg = str(err.value)
    assert "01_typed.py" in msg and "RuntimeError: boom in cell 2" in msg and "raise RuntimeError" in msg
    text = out.read_text()
    assert "typed ok" in text
    assert "CTINV_HEADLESS" not in os.environ  # set for the kernel only, not for the caller


def test_unknown_preset_and_notebook():
    with pytest.raises(PresetError, match="unknown preset 'fast'.*quick"):
        presets.load_preset("fast")
    with pytest.raises(PresetError, match="unknown notebook '07'"):
        presets.select_notebooks("01,07")
    assert [p.stem for p in presets.select_notebooks("01")] == ["01_data"]
    assert run.main(["--preset", "nope"]) == 1


def test_missing_data_root_fails_before_any_notebook(tmp_path, capsys):
    assert run.main(["--preset", "smoke", "--data", str(tmp_path / "nowhere")]) == 1
    assert "data root" in capsys.readouterr().err and not (tmp_path / "papermill_runs").exists()


def test_preset_parameter_not_declared_is_an_error(tmp_path):
    nb = _write_nb(tmp_path / "01_x.py", '# %% tags=["parameters"]\nseed = 0\n')
    preset = {"name": "t", "common": {"simulation": {}}, "notebooks": {"01_x": {"sede": 1}}}
    with pytest.raises(PresetError, match="sede"):
        presets.notebook_parameters(preset, nb, {})
    preset["notebooks"] = {"01_x": {}}
    assert presets.notebook_parameters(preset, nb, {"seed": 3, "device": "cpu"}) == {"seed": 3}


def test_every_notebook_has_a_parameters_cell():
    for nb in presets.list_notebooks():
        declared = presets.declared_parameters(nb)
        for name in ("preset", "data_path", "device", "seed", "figures_dir", "artifacts_dir", "interactive"):
            assert name in declared, f"{nb.name} lacks parameter {name}"


@pytest.mark.slow
def test_smoke_preset_runs_every_notebook(tmp_path):
    manifest = run.run("smoke", output_root=tmp_path, device="cpu", progress=False)
    names = [nb.stem for nb in presets.list_notebooks()]
    assert [e["notebook"] for e in manifest["notebooks"]] == names
    assert all(e["status"] == "ok" for e in manifest["notebooks"])
    on_disk = json.loads((tmp_path / "papermill_runs" / "smoke" / "manifest.json").read_text())
    assert on_disk["seed"] == 0 and on_disk["device"] == "cpu" and "torch" in on_disk["versions"]
    notes = {e["notebook"]: e.get("notes", {}) for e in on_disk["notebooks"]}
    assert "random init (ImageNet weights unavailable)" in notes["02_denoiser_training"]["vgg"]
    assert "random init (ImageNet weights unavailable)" in notes["03_image_domain_invariances"]["vgg"]
    # the smoke models are trained for a few iterations: notebook 02 must say loudly that they do not denoise
    assert notes["02_denoiser_training"]["denoisers_beat_low_dose"] is False
    assert "Not a denoiser here" in (tmp_path / "papermill_runs" / "smoke" / "02_denoiser_training.ipynb").read_text()
    figs = sorted(p.name for p in (tmp_path / "figures" / "smoke").glob("*.png"))
    assert "01_data_pairs.png" in figs and "01_data_sampling.png" in figs
    hashes = {e["notebook"]: e["config_hash"] for e in on_disk["notebooks"]}
    for png in figs:  # every figure has its provenance sidecar, with the manifest's config hash
        side = json.loads((tmp_path / "figures" / "smoke" / png.replace(".png", ".json")).read_text())
        assert side["seed"] == 0 and side["config_hash"] == hashes[side["notebook"]], png


@pytest.mark.parametrize("name", presets.available_presets())
def test_every_preset_fits_every_notebook(name):
    """A typo in any preset (paper included, which CI never runs) fails here, not on a GPU."""
    from ctinv_utils.data.simulated import SimulationConfig
    from ctinv_utils.training.methods import TrainConfig

    preset = presets.load_preset(name)
    for nb in presets.list_notebooks():
        params = presets.notebook_parameters(preset, nb, {"seed": 0})
        if "simulation" in params:
            SimulationConfig.from_dict(params["simulation"])
        for method in ("cnn10", "wganvgg"):
            if method in params:
                TrainConfig.from_dict({"method": method, **params[method]})
        if "alphas" in params:
            assert params["panel_alpha"] in params["alphas"]


def test_parameter_defaults_equal_the_quick_preset():
    """Run All in JupyterLab on a fresh clone (the cells' defaults) does what the quick preset does."""
    preset = presets.load_preset("quick")
    for nb in presets.list_notebooks():
        defaults = presets.parameter_defaults(nb)
        assert defaults["preset"] == "quick" and defaults["seed"] == preset["seed"], nb.name
        for key, value in presets.notebook_parameters(preset, nb, {}).items():
            assert defaults[key] == value, f"{nb.name}: default {key}={defaults[key]!r}, quick preset {value!r}"
