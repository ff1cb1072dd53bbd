"""The papermill runner: typed parameters, clear failures, preset and --only errors, and a smoke
run of every notebook."""

import os
import textwrap

import pytest

from ctinv_utils.pipeline import presets

from ctinv_utils.pipeline import run
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
    text = (tmp_path / "failed" / "out.ipynb").read_text()  # a failed run goes beside, not over, a good one
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


def test_preset_parameter_not_declared_is_an_error():
    preset = {"name": "t", "common": {}, "notebooks": {"01_data": {"sede": 1}}}
    with pytest.raises(PresetError, match="sede"):
        presets.notebook_settings(preset, "01_data", {})
    preset["notebooks"] = {"01_data": {}}
    assert presets.notebook_settings(preset, "01_data", {"seed": 3, "device": "cpu"}).seed == 3


@pytest.mark.parametrize("name", presets.available_presets())
def test_every_preset_fits_every_notebook(name):
    """A typo in any preset (paper included, which CI never runs) fails here, not on a GPU."""
    from ctinv_utils.data.simulated import SimulationConfig
    from ctinv_utils.training.methods import TrainConfig

    preset = presets.load_preset(name)
    for stem, settings in presets.plan(preset, runtime=presets.runtime_parameters(preset)).items():
        params = settings.parameters()
        if "simulation" in params:
            SimulationConfig.from_dict(params["simulation"])
        for method in ("cnn10", "wganvgg"):
            if method in params:
                TrainConfig.from_dict({"method": method, **params[method]})
        if "alphas" in params:
            assert params["panel_alpha"] in params["alphas"], stem


def test_a_failed_notebook_keeps_the_good_one(tmp_path):
    nb = _write_nb(tmp_path / "01_fail.py", '''\
        # %% tags=["parameters"]
        fail = False

        # %%
        if fail:
            raise ValueError("bad data")
        print("fine")
        ''')
    out = tmp_path / "runs" / "01_fail.ipynb"
    run.execute_notebook(nb, out, {"fail": False}, progress=False)
    good = out.read_text()
    with pytest.raises(run.NotebookFailed, match=r"ValueError: bad data; traceback in .*failed/01_fail.ipynb"):
        run.execute_notebook(nb, out, {"fail": True}, progress=False)
    assert out.read_text() == good and (out.parent / "failed" / "01_fail.ipynb").is_file()
    assert not list(out.parent.glob(".*"))  # no temporary file left behind


def test_tidy_collapses_progress_bars_and_drops_figure_reprs():
    import nbformat

    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="\rbar  10%"),
                    nbformat.v4.new_output("stream", name="stderr", text="\rbar 100%\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="[IPKernelApp] WARNING | Kernel is running over TCP without encryption\n"),
                    nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure size 10x10 with 1 Axes>"})]
    nb = nbformat.v4.new_notebook(cells=[cell])
    run.tidy_notebook(nb)
    out = nb.cells[0].outputs
    assert out[0]["text"].strip() == "bar 100%" and list(out[1]["data"]) == ["image/png"] and len(out) == 2


def test_presets_cli_prints_flat_parameters_for_papermill(capsys):
    import yaml

    assert presets.main(["quick", "03"]) == 0
    params = yaml.safe_load(capsys.readouterr().out)
    assert params["max_iter"] == presets.load_preset("quick")["notebooks"]["03_image_domain_invariances"]["max_iter"]
    assert params["interactive"] is False and params["preset"] == "quick"
    assert run.main(["--only", ","]) == 1
