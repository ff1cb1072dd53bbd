"""A run never damages committed results: figures are published only when their notebook succeeds,
the figure manifest grows entry by entry, a run on other data writes to its own folders, and two
runners never share an output folder. The notebooks are replaced by a stand-in that writes a figure
into the runner's staging folder (as ctinv_utils.pipeline.context does), so these tests start no kernel."""

import json
import os
from pathlib import Path

import pytest

from ctinv_utils.pipeline import run
from ctinv_utils.paths import STAGING_ENV
from ctinv_utils.errors import CTInvError, DataRootError


def fake_notebook(fail: bool = False, name: str = "01_data_pairs"):
    """A stand-in for execute_notebook: a PNG and its sidecar in the staging folder, then success or an error."""
    def execute(notebook, output, parameters, progress=True):
        staging = Path(os.environ[STAGING_ENV])
        (staging / f"{name}.png").write_bytes(b"new picture")
        (staging / f"{name}.json").write_text(json.dumps({"notebook": notebook.stem, "files": [f"{name}.png"],
                                                          "config_hash": "h"}))
        if fail:
            raise run.NotebookFailed(f"notebook {notebook.name} failed in cell 3: bad slice")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")
    return execute


@pytest.fixture
def committed(tmp_path):
    """An output root whose figures/smoke holds a committed figure and its manifest (no sidecars: a clone)."""
    figs = tmp_path / "figures" / "smoke"
    figs.mkdir(parents=True)
    (figs / "01_data_pairs.png").write_bytes(b"committed picture")
    (figs / "02_examples.png").write_bytes(b"another committed picture")
    manifest = {"preset": "smoke", "files": {"01_data_pairs.png": {"notebook": "01_data", "sha256": "old"},
                                             "02_examples.png": {"notebook": "02_denoiser_training", "sha256": "x"}}}
    (figs / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_a_failed_notebook_leaves_the_committed_figures_and_manifest_alone(committed, monkeypatch):
    figs = committed / "figures" / "smoke"
    before = {p.name: p.read_bytes() for p in figs.iterdir()}
    monkeypatch.setattr(run, "execute_notebook", fake_notebook(fail=True))
    with pytest.raises(run.NotebookFailed, match="bad slice"):
        run.run("smoke", only="01", device="cpu", progress=False, output_root=committed)
    assert {p.name: p.read_bytes() for p in figs.iterdir()} == before
    assert not any((committed / "figures" / ".staging").iterdir())  # nothing half-written is left


def test_a_successful_notebook_publishes_and_updates_only_its_entries(committed, monkeypatch):
    figs = committed / "figures" / "smoke"
    monkeypatch.setattr(run, "execute_notebook", fake_notebook())
    run.run("smoke", only="01", device="cpu", progress=False, output_root=committed)
    assert (figs / "01_data_pairs.png").read_bytes() == b"new picture"
    files = json.loads((figs / "manifest.json").read_text())["files"]
    assert set(files) == {"01_data_pairs.png", "02_examples.png"}  # the other notebook's entry is kept
    assert files["02_examples.png"]["sha256"] == "x" and files["01_data_pairs.png"]["sha256"] != "old"


def test_a_run_on_other_data_writes_to_its_own_folders(committed, monkeypatch, tmp_path_factory):
    data = tmp_path_factory.mktemp("my scans")
    monkeypatch.setattr(run, "preflight", lambda *a, **k: [])  # the folder holds no DICOM: not this test's point
    monkeypatch.setattr(run, "execute_notebook", fake_notebook())
    run.run("smoke", only="01", data=str(data), device="cpu", progress=False, output_root=committed)
    assert (committed / "figures" / "smoke" / "01_data_pairs.png").read_bytes() == b"committed picture"
    (own,) = [p for p in (committed / "figures").iterdir() if p.name.startswith("smoke-data-")]
    assert "my-scans" in own.name and (own / "01_data_pairs.png").is_file()


def test_an_empty_data_path_or_a_path_like_name_is_refused(committed):
    with pytest.raises(DataRootError, match="empty path"):
        run.run("smoke", only="01", data="", device="cpu", progress=False, output_root=committed)
    with pytest.raises(CTInvError, match="plain folder name"):
        run.run("smoke", only="01", device="cpu", progress=False, output_root=committed, name="../elsewhere")


def test_a_second_runner_on_the_same_folder_is_refused(tmp_path):
    with run.runner_lock(tmp_path / "out"):
        with pytest.raises(run.RunnerBusy, match=rf"pid {os.getpid()}"):
            with run.runner_lock(tmp_path / "out"):
                pass
    with run.runner_lock(tmp_path / "out"):  # released: the next run goes ahead
        pass


def test_preset_names_and_files_that_cannot_be_a_preset(tmp_path):
    from ctinv_utils.pipeline import presets
    from ctinv_utils.errors import PresetError

    with pytest.raises(PresetError, match="not a plain name"):
        presets.load_preset("../quick")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(PresetError, match="is empty"):
        presets.load_preset("empty", preset_dir=tmp_path)
    (tmp_path / "neg.yaml").write_text("notebooks:\n  03_image_domain_invariances: {alphas: [0.1, -0.2, .nan]}\n")
    with pytest.raises(PresetError, match=r"alphas\[1\] must be > 0, got -0.2"):
        presets.load_preset("neg", preset_dir=tmp_path)


def test_a_figure_a_notebook_no_longer_makes_is_removed_with_its_entry(committed, monkeypatch):
    """Re-running 01 replaces 01's entries: a figure 01 made before and no longer makes goes (file and
    entry); 02's stay."""
    figs = committed / "figures" / "smoke"
    (figs / "01_data_old.png").write_bytes(b"an old figure of 01")
    manifest = json.loads((figs / "manifest.json").read_text())
    manifest["files"]["01_data_old.png"] = {"notebook": "01_data", "sha256": "o"}
    (figs / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(run, "execute_notebook", fake_notebook())
    run.run("smoke", only="01", device="cpu", progress=False, output_root=committed)
    files = json.loads((figs / "manifest.json").read_text())["files"]
    assert set(files) == {"01_data_pairs.png", "02_examples.png"} and not (figs / "01_data_old.png").exists()
    assert (figs / "02_examples.png").read_bytes() == b"another committed picture"


def test_figure_file_names_of_published_networks_are_portable(tmp_path):
    """A published network's name (ldctbench:cnn10) gives figure files every file system stores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ctinv_utils.pipeline import context

    ctx = context.setup("t", params={"preset": "smoke", "seed": 0, "device": "cpu", "figures_dir": str(tmp_path / "f"),
                                     "artifacts_dir": str(tmp_path / "a"), "interactive": False})
    paths = ctx.save_figure(plt.figure(), "06_results_ldctbench:cnn10")
    assert {p.name for p in paths} == {"06_results_ldctbench-cnn10.png", "06_results_ldctbench-cnn10.pdf"}
