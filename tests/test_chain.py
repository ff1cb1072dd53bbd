"""The whole chain 01-05 through the runner with the smoke preset: every notebook runs, the run and
figure manifests are complete and true, the same seed gives the same figure data, unchanged notebooks
are not executed again, and the committed quick figures are the set the code makes."""

import json

import numpy as np
import pytest

from ctinv_utils.pipeline import presets

from ctinv_utils.pipeline import run
from ctinv_utils.pipeline.artifacts import sha256_file
from ctinv_utils.paths import REPO_ROOT

pytestmark = pytest.mark.reproduction


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Two smoke runs of 01-05 into separate folders (the second loads the cached data and models)."""
    roots = [tmp_path_factory.mktemp(f"run{i}") for i in (1, 2)]
    manifests = [run.run("smoke", output_root=r, device="cpu", progress=False) for r in roots]
    return roots, manifests


def test_every_notebook_runs_and_the_manifest_says_so(chain):
    (root, _), (manifest, _) = chain
    names = [nb.stem for nb in presets.list_notebooks()]
    assert [e["notebook"] for e in manifest["notebooks"]] == names
    assert all(e["status"] == "ok" for e in manifest["notebooks"])
    on_disk = json.loads((root / "papermill_runs" / "smoke" / "manifest.json").read_text())
    assert on_disk["seed"] == 0 and on_disk["device"] == "cpu" and "torch" in on_disk["versions"]
    assert all(e["data"] == "simulated (embedded default)" and e["preset"] == "smoke" for e in on_disk["notebooks"])
    notes = {e["notebook"]: e.get("notes", {}) for e in on_disk["notebooks"]}
    assert "random init (ImageNet weights unavailable)" in notes["02_denoiser_training"]["vgg"]
    assert "random init (ImageNet weights unavailable)" in notes["03_image_domain_invariances"]["vgg"]
    # the smoke models are trained for a few iterations: notebook 02 must say loudly that they do not denoise
    assert notes["02_denoiser_training"]["denoisers_beat_low_dose"] is False
    assert "Not a denoiser here" in (root / "papermill_runs" / "smoke" / "02_denoiser_training.ipynb").read_text()
    assert set(notes["04_natural_invariances"]["natural_verdicts"]["cnn10"]) == {"noise_amplitude", "noise_realisation",
                                                                                   "anatomy"}


def test_figure_manifest_is_complete_and_true(chain):
    (root, _), _ = chain
    figs = root / "figures" / "smoke"
    manifest = json.loads((figs / "manifest.json").read_text())
    run_manifest = json.loads((root / "papermill_runs" / "smoke" / "manifest.json").read_text())
    hashes = {e["notebook"]: e["config_hash"] for e in run_manifest["notebooks"]}
    on_disk = {p.name for p in figs.iterdir() if p.suffix in (".png", ".pdf", ".csv", ".html")}
    assert set(manifest["files"]) == on_disk and len(on_disk) > 40 and "explorer.html" in on_disk
    for name, rec in manifest["files"].items():
        path = figs / name
        assert path.stat().st_size > 0 and sha256_file(path) == rec["sha256"], name
        assert rec["config_hash"] == hashes[rec["notebook"]], name  # one config hash: figures = runner
        assert rec["seed"] == 0 and rec["device"] == "cpu" and rec["git_commit"] and rec["versions"]["torch"]
        assert rec["data_sha256"], f"{name}: no checksum of the arrays behind it"
    # the talk's panels of notebook 05 are drawn from artifacts, and say which
    assert any(k.startswith("invariances/cnn10_") for k in manifest["files"]["06_results_cnn10.png"]["drawn_from"])
    # the explorer holds every denoiser x distance of notebook 03, and says what it was drawn from
    explorer = manifest["files"]["explorer.html"]
    assert len([k for k in explorer["drawn_from"] if k.startswith("invariances/")]) == 9
    html = (figs / "explorer.html").read_text()
    assert "http://" not in html and "https://" not in html and "CNN-10" in html


def test_same_seed_gives_the_same_figure_data(chain):
    (a, b), _ = chain
    da, db = (r / "papermill_runs" / "smoke" / "artifacts" / "figure_data" for r in (a, b))
    names = sorted(p.name for p in da.glob("*.npz"))
    assert names == sorted(p.name for p in db.glob("*.npz")) and len(names) > 20
    for name in names:
        with np.load(da / name) as fa, np.load(db / name) as fb:
            assert sorted(fa.files) == sorted(fb.files), name
            for k in fa.files:
                if fa[k].dtype.kind == "U":
                    assert np.array_equal(fa[k], fb[k]), (name, k)
                else:
                    np.testing.assert_array_equal(fa[k], fb[k], err_msg=f"{name}:{k}")


def test_unchanged_notebooks_are_not_executed_again(chain, capsys):
    (root, _), (manifest, _) = chain
    again = run.run("smoke", only="04,05", output_root=root, device="cpu", progress=False)
    assert "up to date" in capsys.readouterr().out
    before = {e["notebook"]: e["started"] for e in manifest["notebooks"]}
    assert all(e["started"] == before[e["notebook"]] for e in again["notebooks"])
    # forced: run again although up to date (01, the shortest: 06 would redraw every figure, ~100 s)
    forced = run.run("smoke", only="01", output_root=root, device="cpu", progress=False, force=True)
    entry = next(e for e in forced["notebooks"] if e["notebook"] == "01_data")
    assert entry["started"] != before["01_data"] and entry["status"] == "ok"


def test_executed_notebooks_are_tidy(chain):
    (root, _), _ = chain
    for nb in (root / "papermill_runs" / "smoke").glob("*.ipynb"):
        text = nb.read_text()
        assert "Kernel is running over TCP" not in text, nb.name
        assert "<Figure size" not in text, nb.name
        cells = json.loads(text)["cells"]
        streams = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "stream"]
        assert not any("\r" in "".join(o["text"]) for o in streams), f"{nb.name}: progress bars not collapsed"


def test_committed_quick_figures_are_the_set_the_code_makes(chain):
    """The committed quick manifest lists the same files as a smoke run of today's code makes (the two
    presets draw the same panels), and every committed PNG is one the manifest describes."""
    (root, _), _ = chain
    committed = json.loads((REPO_ROOT / "figures" / "quick" / "manifest.json").read_text())["files"]
    made = json.loads((root / "figures" / "smoke" / "manifest.json").read_text())["files"]
    assert sorted(committed) == sorted(made)
    for png in (REPO_ROOT / "figures" / "quick").glob("*.png"):
        assert png.name in committed and sha256_file(png) == committed[png.name]["sha256"], png.name
    # one file per panel: no two committed PNGs draw the same arrays (notebooks 03-05 show inline what
    # 06 saves). Judged on the quick results: the smoke run's barely trained networks can draw equal panels
    drawn: dict[str, list[str]] = {}
    for name, rec in committed.items():
        if name.endswith(".png") and rec.get("data_sha256"):
            drawn.setdefault(json.dumps(rec["data_sha256"], sort_keys=True), []).append(name)
    assert [names for names in drawn.values() if len(names) > 1] == []
