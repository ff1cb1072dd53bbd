"""The paper rehearsal (issue 32): the paper preset with every count cut to a few, through the same
runner and notebooks 01-06, on stand-ins for what a paper run needs and CI lacks (a TCIA-layout tree
of simulated 512 px slices with Mayo patient IDs of ldct-benchmark's split, VGG16/VGG19 files in
torchvision's layout found through the strict ``vgg_weights: imagenet`` path, the published
checkpoints in ldct-benchmark's format). Each notebook is measured from inside its kernel; the FLOPs it
measures check the GPU estimate's counting.

The fast tests at the top need no rehearsal: the preset is the paper's but for counts, the user's own
checkpoint folder, the estimate before a paper run on a GPU.
"""

from __future__ import annotations

import json
import time

import pytest
import rehearsal
import torch

from ctinv_utils.models import load_denoiser
from ctinv_utils.models.ldctbench import hub
from ctinv_utils.pipeline import preflight as pf
from ctinv_utils.tools import gpu_first as gf

NOTEBOOKS = ["01_data", "02_denoiser_training", "03_image_domain_invariances", "04_natural_invariances",
             "05_lesions", "06_figures"]
PUBLISHED = ["ldctbench:cnn10", "ldctbench:wganvgg"]


# ------------------------------------------------------------------------------- without a rehearsal

def test_the_rehearsal_is_the_paper_preset_but_for_counts():
    assert rehearsal.differences_beyond_counts() == []


def test_the_rehearsal_patients_are_ldctbench_patients_that_ctinvs_split_can_test_on():
    from ctinv_utils.data.ldctbench_split import ldctbench_split

    split = ldctbench_split()
    patients = gf.rehearsal_patients()
    ids = {p["patient_id"] for p in patients}
    assert len(patients) == 9 and {p["region"] for p in patients} == {"head", "chest", "abdomen"}
    for kind in ("train", "val", "test"):  # every region has one of each of ldct-benchmark's splits
        assert len(ids & set(split[kind])) == 3, kind


def test_own_checkpoint_folder_is_used_unchecked_and_said_so(tmp_path, monkeypatch):
    """$CTINV_LDCTBENCH_CHECKPOINTS: the user's own files come first, without the published SHA-256,
    with a warning; a download still fetches the published file; a wrong folder is one clear error."""
    monkeypatch.setenv("CTINV_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(hub.OWN_FILES_ENV, raising=False)
    assert hub.present_published(PUBLISHED) == ({}, PUBLISHED)
    files = gf.write_standin_checkpoints(tmp_path / "own", PUBLISHED)
    monkeypatch.setenv(hub.OWN_FILES_ENV, str(tmp_path / "own"))
    with pytest.warns(UserWarning, match="your own file .* not checked against the published SHA-256"):
        present, missing = hub.present_published(PUBLISHED)
    assert present == files and missing == []
    with pytest.warns(UserWarning):
        model = load_denoiser("ldctbench:cnn10")
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)
    rows = {r["method"]: r for r in hub.status()}
    assert rows["cnn10"]["own"] and rows["cnn10"]["found"] == files["ldctbench:cnn10"] and not rows["redcnn"]["own"]
    monkeypatch.setenv(hub.OWN_FILES_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(hub.HubError, match="is not a folder"):
        hub.present_published(PUBLISHED)


def test_standin_vgg_files_take_the_strict_imagenet_path(tmp_path, monkeypatch):
    from ctinv_utils.models.vgg import URLS, VGGFeatures, load_vgg

    files = gf.write_standin_vgg(tmp_path)
    for arch, path in files.items():
        assert path.name != URLS[arch].rsplit("/", 1)[1]  # not torchvision's name, whose SHA-256 prefix is checked
        monkeypatch.setenv(f"CTINV_{arch.upper()}_WEIGHTS", str(path))
        model = load_vgg(arch, allow_random=False)
        assert model.weights_source == f"ImageNet ({path.name})"
        assert set(torch.load(path, weights_only=True)) == set(VGGFeatures(arch).state_dict())


def test_gpu_estimate_of_the_paper_preset_is_labelled_and_plausible():
    rows = pf.gpu_estimate(pf.paper_parameters())
    assert [r["notebook"] for r in rows] == NOTEBOOKS
    assert all(r["label"].startswith("estimate") and "not measured" in r["label"] for r in rows)
    by = {r["notebook"]: r for r in rows}
    # the paper's training and invariance loops are hours of GPU work, not minutes and not days
    assert 0.3 * 3600 < by["02_denoiser_training"]["gpu_seconds"] < 20 * 3600
    assert 0.3 * 3600 < by["03_image_domain_invariances"]["gpu_seconds"] < 20 * 3600
    # 8 alphas x 512^2 through VGG16 fit one 80 GB GPU, and need more than a few GB
    assert 2 < by["03_image_domain_invariances"]["peak_gib"] < 80
    lines = pf.estimate_lines(rows)
    assert lines[0].startswith("GPU time and memory, estimate") and len(lines) == 7
    # a calibration (the GPU check's measured throughput) replaces the assumed rates
    fast = pf.gpu_estimate(pf.paper_parameters(), calibration={"conv_flop_rate": 4e14, "vgg_flop_rate": 4e14,
                                                                "train_cnn10_s": 1e-3, "train_wganvgg_s": 1e-3,
                                                                "source": "test"})
    assert sum(r["gpu_seconds"] for r in fast) < sum(r["gpu_seconds"] for r in rows)
    assert fast[0]["label"] == "calibrated: test"


def test_a_paper_run_on_a_gpu_prints_the_estimate_before_it_starts(monkeypatch):
    monkeypatch.setattr(pf, "missing_vgg_weights", lambda params: [])
    notes = pf.preflight({"name": "paper", "meant_for": "gpu"}, pf.paper_parameters(), "cuda")
    assert notes[0].startswith("GPU time and memory, estimate") and any(n.startswith("03_image_domain") for n in notes)
    with pytest.raises(pf.PreflightError, match="docs/gpu.md"):  # on a CPU: where the GPU estimate is
        pf.preflight({"name": "paper", "meant_for": "gpu"}, {}, "cpu", estimate=False)


def test_op_counter_counts_convolutions_forward_and_backward():
    from ctinv_utils.models import CNN10

    net = CNN10().to("meta")
    with pf.OpCounter() as c:
        net(torch.zeros(1, 1, 512, 512, device="meta")).sum().backward()
    # CNN-10: 9x9x64 + 3x3x64x32 + 5x5x32 multiply-adds per pixel, two FLOPs each; backward: the weight
    # gradients of all three layers and the input gradients of the last two (the image needs none)
    first, rest = 2 * 81 * 64, 2 * (9 * 64 * 32 + 25 * 32)
    assert c.flops == 512 * 512 * (3 * (first + rest) - first) and c.by_op["convolution"] == 512 * 512 * (first + rest)


# ------------------------------------------------------------------------------------- the rehearsal

@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    """Stand-ins written, notebooks 01-06 of the rehearsal run, each measured (about 8 min on 2 idle cores)."""
    folder = tmp_path_factory.mktemp("rehearsal")
    t0 = time.perf_counter()
    inputs = gf.rehearsal_inputs(folder)
    out = gf.rehearse(folder, device="cpu", inputs=inputs)
    out["total_s"] = time.perf_counter() - t0
    out["folder"], out["inputs"] = folder, inputs
    print("\npaper rehearsal on this machine:", json.dumps({
        "total_s": round(out["total_s"]), "inputs_s": out["inputs_s"],
        **{nb: {k: m.get(k) for k in ("runner_wall_s", "cpu_s", "peak_rss_mb", "flops")}
           for nb, m in out["notebooks"].items()}}, indent=1))
    return out


@pytest.mark.reproduction
@pytest.mark.rehearsal  # about 8 min on 2 cores: make rehearse
def test_every_notebook_runs_at_the_papers_sizes(rehearsed):
    manifest = rehearsed["manifest"]
    assert [e["notebook"] for e in manifest["notebooks"]] == NOTEBOOKS
    assert all(e["status"] == "ok" for e in manifest["notebooks"]), [e["status"] for e in manifest["notebooks"]]
    notes = {e["notebook"]: e.get("notes", {}) for e in manifest["notebooks"]}
    # the strict ImageNet path ran on the stand-ins, never a random VGG
    assert notes["02_denoiser_training"]["vgg"].endswith("ImageNet (vgg19-standin.pth)")
    assert notes["03_image_domain_invariances"]["vgg"].startswith("VGG16 distance: ImageNet (vgg16-standin.pth)")
    assert "published_missing" not in notes["02_denoiser_training"]
    art = rehearsed["folder"] / "papermill_runs" / gf.REHEARSAL_PRESET / "artifacts"
    denoisers = json.loads((art / "denoisers.json").read_text())
    assert sorted(denoisers["published"]) == PUBLISHED
    # notebook 03 analysed a chest slice of one of ldct-benchmark's test patients (its split ran)
    from ctinv_utils.data.ldctbench_split import ldctbench_split

    where = json.loads((art / "analysis_slice.json").read_text())
    assert where["meta"]["patient"] in ldctbench_split()["test"] and where["meta"]["patient"].startswith("C")


@pytest.mark.reproduction
@pytest.mark.rehearsal  # about 8 min on 2 cores: make rehearse
def test_outputs_have_the_papers_shapes(rehearsed):
    art = rehearsed["folder"] / "papermill_runs" / gf.REHEARSAL_PRESET / "artifacts"
    problems = rehearsal.shape_problems(art, ["cnn10", "wganvgg", "gauss_ri", *PUBLISHED], n_alphas=1, n_samples=2)
    assert problems == []
    figures = rehearsed["folder"] / "figures" / gf.REHEARSAL_PRESET
    made = json.loads((figures / "manifest.json").read_text())["files"]
    for name in ("06_results_ldctbench-cnn10.png", "06_tolerance_ldctbench-wganvgg.png", "06_natural_gauss_ri.png",
                 "06_contrast_detail.png", "explorer.html", "05_lesion_invariance.png", "03_linearised_wganvgg.png"):
        assert name in made, name


@pytest.mark.reproduction
@pytest.mark.rehearsal  # about 8 min on 2 cores: make rehearse
def test_figure_file_names_are_portable(rehearsed):
    figures = rehearsed["folder"] / "figures" / gf.REHEARSAL_PRESET
    assert [p.name for p in figures.iterdir() if ":" in p.name] == []


@pytest.mark.reproduction
@pytest.mark.rehearsal  # about 8 min on 2 cores: make rehearse
def test_each_notebook_is_measured_and_the_estimate_counts_its_flops(rehearsed):
    """The FLOPs each kernel measured are those :func:`gpu_estimate` counts for the rehearsal's own
    parameters (its work units on the meta device), within 15 %: the estimate of the paper preset
    rests on the same counting."""
    from ctinv_utils.pipeline.presets import load_preset, plan, runtime_parameters

    p = load_preset(gf.REHEARSAL_PRESET)
    params = {s: v.parameters() for s, v in plan(p, runtime=runtime_parameters(p)).items()}
    predicted = {r["notebook"]: r["flops"] for r in pf.gpu_estimate(params, data=rehearsed["data"])}
    for nb, m in rehearsed["notebooks"].items():
        assert m["runner_wall_s"] > 0 and m["peak_rss_mb"] > 100 and m["cpu_s"] > 0, nb
        if predicted[nb] > 1e11:  # the notebooks that compute on the GPU
            assert m["flops"] == pytest.approx(predicted[nb], rel=0.15), nb


@pytest.mark.reproduction
@pytest.mark.rehearsal  # about 8 min on 2 cores: make rehearse
def test_gpu_first_runs_its_code_path_on_cpu(rehearsed, tmp_path):
    """``gpu_first`` (GPU check, rehearsal, calibrated estimate, one JSON) at toy sizes on the CPU: the
    check as tests/test_bench.py runs it, the rehearsal's first notebook on the stand-ins already written."""
    toy = dict(size=32, iterations=6, reference_iterations=3, burst_iterations=1,
               bursts={"cnn10": {"batch_size": 2, "patch_size": 16},
                       "wganvgg": {"batch_size": 2, "patch_size": 32, "vgg_weights": "imagenet_or_random"}})
    rec = gf.gpu_first(tmp_path, device="cpu", check_kwargs=toy, only="01", inputs=rehearsed["inputs"], progress=False)
    assert json.loads((tmp_path / "gpu_first.json").read_text())["failed"] == rec["failed"] == []
    assert rec["gpu_check"]["cnn10_mse"]["alpha_iterations_per_s"] > 0
    assert set(rec["rehearsal"]["notebooks"]) == {"01_data"}
    cal = rec["paper_estimate"]["calibration"]
    assert cal["conv_flop_rate"] > 0 and cal["train_wganvgg_s"] > 0 and "measured on" in cal["source"]
    assert [r["notebook"] for r in rec["paper_estimate"]["notebooks"]] == NOTEBOOKS
    assert rec["paper_estimate"]["notebooks"][0]["label"].startswith("calibrated")


def test_linearised_study_runs_a_fixed_size_network_at_its_size():
    """TransCT takes 512 x 512 only: notebook 03's linearised study (48 px crop) ran it on the crop and
    failed after every invariance of the notebook had been computed. A network with a ``SIZE`` is now
    linearised at that size (a small stand-in here: TransCT's products at 512 px take minutes on a CPU)."""
    from ctinv_utils.models.ldctbench.sizes import check_input
    from ctinv_utils.recipes.invariances import linearised_study

    class FixedSize(torch.nn.Module):
        SIZE = 32

        def forward(self, x):
            check_input(x, "fixed", exact=self.SIZE)
            return 0.5 * x

    written = {}

    class Art:
        def write_arrays(self, kind, arrays, meta, keys):
            written[keys["denoiser"]] = meta

    x = torch.rand(1, 1, 64, 64)
    with pytest.warns(UserWarning, match="not converged"):  # 8 products: the shapes are the point here
        linearised_study(x, {"fixed": FixedSize(), "any": torch.nn.Conv2d(1, 1, 3, padding=1)}, 16, 2, 8, 0, Art(),
                         progress=False)
    assert written["fixed"]["crop"] == 32 and written["any"]["crop"] == 16
