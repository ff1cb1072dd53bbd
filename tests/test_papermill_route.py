"""The documented papermill route works as written: a notebook converted with jupytext, its flat
parameter file from configs/<preset>/ (generated from the typed settings, never edited by hand), and
papermill's own command line. Output folders resolve against the working directory, so such a run
never writes into the repository's committed figures."""

import os
import subprocess
import sys

import jupytext
import yaml

from ctinv_utils.pipeline import presets
from ctinv_utils.paths import NOTEBOOK_DIR, PRESET_DIR, REPO_ROOT


def test_parameter_files_are_generated_from_the_settings():
    """configs/<preset>/<notebook>.yaml equal what the typed settings give (a stale or hand-edited file fails)."""
    for name in presets.available_presets():
        preset = presets.load_preset(name)
        for nb in presets.list_notebooks():
            path = PRESET_DIR / name / f"{nb.stem}.yaml"
            assert path.read_text() == presets.papermill_parameters(preset, nb), (
                f"{path} is stale: run python -m ctinv_utils presets --write")
            params = yaml.safe_load(path.read_text())
            assert params["preset"] == name and params["interactive"] is False


def test_notebook_01_through_papermills_command_line(tmp_path):
    ipynb = tmp_path / "01_data.ipynb"
    nb = jupytext.read(NOTEBOOK_DIR / "01_data.py")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, ipynb)
    committed = {p.name: p.stat().st_mtime_ns for p in (REPO_ROOT / "figures" / "quick").iterdir()}
    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"}
    proc = subprocess.run([sys.executable, "-m", "papermill", str(ipynb), str(tmp_path / "out.ipynb"),
                           "-f", str(PRESET_DIR / "smoke" / "01_data.yaml"), "--cwd", str(tmp_path),
                           "--no-progress-bar"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Passed unknown parameter" not in proc.stderr
    made = sorted(p.name for p in (tmp_path / "figures" / "smoke").glob("*.png"))
    assert "01_data_pairs.png" in made, made
    assert (tmp_path / "papermill_runs" / "smoke" / "artifacts").is_dir()
    assert {p.name: p.stat().st_mtime_ns for p in (REPO_ROOT / "figures" / "quick").iterdir()} == committed


def test_every_preset_parameter_file_goes_through_papermill_as_it_is(tmp_path):
    """papermill reads each notebook's generated file of every preset (paper included) without an
    unknown parameter, and what it injects is valid for the notebook's settings model (prepared, not
    executed: the paper notebooks are meant for a GPU)."""
    from ctinv_utils.pipeline.config import settings_model

    env = {**os.environ, "JUPYTER_PREFER_ENV_PATH": "1"}
    for name in ("paper", "quick"):
        for nb in presets.list_notebooks():
            ipynb = tmp_path / f"{nb.stem}.ipynb"
            src = jupytext.read(nb)
            src.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            jupytext.write(src, ipynb)
            out = tmp_path / f"{name}_{nb.stem}.ipynb"
            proc = subprocess.run([sys.executable, "-m", "papermill", str(ipynb), str(out), "-f",
                                   str(PRESET_DIR / name / f"{nb.stem}.yaml"), "--prepare-only"],
                                  capture_output=True, text=True, env=env, timeout=300)
            assert proc.returncode == 0 and "unknown parameter" not in proc.stderr, proc.stderr[-1000:]
            cells = jupytext.read(out).cells
            (injected,) = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
            namespace: dict = {}
            exec(injected.source, namespace)  # noqa: S102 - the file papermill wrote from our own YAML
            values = {k: v for k, v in namespace.items() if not k.startswith("__")}
            settings = settings_model(nb.stem).model_validate(values)
            assert settings.preset == name, (name, nb.stem)
