"""Sharded invariance sweeps (``python -m ctinv_utils sweep``): two gloo ranks under torchrun on the
CPU against one plain process, item by item; a rank killed mid-sweep and the job launched again.

A tiny sweep: 2 test slices of the smoke data (32 px crops) x Gauss+RI and a seeded untrained CNN-10 x
bounded MSE and (1-SSIM)/2, 2 alphas, 5 iterations: 8 items. Every process runs one torch thread, so
equal results are bitwise equal (an item's seed comes from its identity, never from the rank).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ctinv_utils.tools import sweep
from ctinv_utils.tools.sweep import ItemStore, WorkItem, plan, spread
from ctinv_utils.training import model_cache

REPO = Path(sweep.__file__).resolve().parents[2]
ARGS = ["--preset", "smoke", "--patients", "2", "--slices", "1", "--crop", "32", "--max-iter", "5",
        "--alphas", "0.2", "0.5", "--distances", "mse", "dssim", "--denoisers", "gauss_ri", "cnn10",
        "--threads", "1", "--no-progress"]
N_ITEMS = 8


@pytest.fixture(scope="module")
def run_artifacts(smoke_data, tmp_path_factory):
    """What notebooks 01 and 02 would leave: the split, Gauss+RI and a seeded untrained CNN-10."""
    from ctinv_utils import GaussRI
    from ctinv_utils.pipeline.artifacts import Artifacts
    from ctinv_utils.data.sampling import split_patients
    from ctinv_utils.models import build_denoiser

    folder = tmp_path_factory.mktemp("artifacts")
    art = Artifacts(folder, "smoke")
    art.write_json("data", {"source": smoke_data.source, "root": str(smoke_data.root),
                            "split": split_patients(smoke_data, seed=0)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cnn10 = build_denoiser("cnn10")
    art.save_denoisers({"gauss_ri": GaussRI(), "cnn10": cnn10}, {})
    return folder


def one_process(artifacts: Path, out: Path, *extra: str) -> int:
    """The sweep in this process (world size 1, no process group); torch's thread count restored."""
    threads = torch.get_num_threads()
    try:
        return sweep.main([*ARGS, "--artifacts", str(artifacts), "--out", str(out), *extra])
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(run_artifacts, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_process")
    assert one_process(run_artifacts, out) == 0
    return out


def torchrun(artifacts: Path, out: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ctinv_utils", "sweep", *ARGS, "--artifacts", str(artifacts), "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=240)


def items_of(out: Path) -> dict[str, dict]:
    """{item: sidecar} of the item files whose checksum verifies."""
    found = {}
    for side in sorted((out / "items").glob("*.json")):
        record = json.loads(side.read_text())
        npz = side.with_suffix(".npz")
        if npz.is_file() and sweep.sha256_bytes(npz.read_bytes()) == record["sha256"]:
            found[side.stem] = record
    return found


def assert_same_items(out: Path, ref: Path) -> None:
    mine, theirs = items_of(out), items_of(ref)
    assert sorted(mine) == sorted(theirs) and len(theirs) == N_ITEMS
    for name in theirs:
        a, b = np.load(out / "items" / f"{name}.npz"), np.load(ref / "items" / f"{name}.npz")
        assert a.files == b.files and "x_inv" in a.files
        for k in a.files:
            assert np.array_equal(a[k], b[k]), f"{name}: {k} differs"
        assert mine[name]["meta"]["rows"] == theirs[name]["meta"]["rows"]


def test_two_ranks_equal_one_process_item_by_item(run_artifacts, reference, tmp_path):
    done = torchrun(run_artifacts, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_items(tmp_path, reference)
    ranks = {rec["meta"]["rank"] for rec in items_of(tmp_path).values()}
    assert ranks == {0, 1}  # both ranks computed items
    results = sweep.SweepResults(tmp_path)  # rank 0 gathered the summary
    summary = results.summary
    assert summary["complete"] and summary["this_run"]["world_size"] == 2 and not summary["this_run"]["failed"]
    assert summary["this_run"]["computed"] == N_ITEMS and len(results.rows()) == 2 * N_ITEMS
    assert [a["computed"] for a in summary["this_run"]["ranks"]] == [4, 4]
    def metrics(rows):
        return [{k: v for k, v in r.items() if k not in ("run", "rank")} for r in rows]

    assert metrics(results.rows()) == metrics(sweep.SweepResults(reference).rows())
    curves = results.tradeoff("mse", ["gauss_ri", "cnn10"])
    assert curves["cnn10"][0] == [0.2, 0.5] and len(curves["cnn10"][1]) == 2


def test_killed_rank_resumes_with_only_the_missing_items(run_artifacts, reference, tmp_path):
    killed = torchrun(run_artifacts, tmp_path, {sweep.KILL_ENV: "1:1"})  # rank 1 dies after its first item
    assert killed.returncode != 0
    before = {name: rec["meta"]["run"] for name, rec in items_of(tmp_path).items()}
    assert 1 <= len(before) < N_ITEMS
    again = torchrun(run_artifacts, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    after = items_of(tmp_path)
    runs = {name: rec["meta"]["run"] for name, rec in after.items()}
    summary = json.loads((tmp_path / "summary.json").read_text())
    new_run = summary["this_run"]["run"]
    assert all(runs[name] == run for name, run in before.items())  # nothing done was computed again
    assert {name for name, run in runs.items() if run == new_run} == set(after) - set(before)
    assert summary["this_run"]["computed"] == N_ITEMS - len(before)
    assert summary["this_run"]["skipped_done"] == len(before)
    assert_same_items(tmp_path, reference)


def test_a_damaged_item_is_recomputed_and_nothing_else(run_artifacts, reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    victim = sorted((out / "items").glob("*.npz"))[3]
    data = bytearray(victim.read_bytes())
    data[-30] ^= 0xFF
    victim.write_bytes(bytes(data))
    (out / "items" / sorted(p.name for p in (out / "items").glob("*.json"))[5]).unlink()  # an interrupted write
    assert one_process(run_artifacts, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["this_run"]["computed"] == 2
    assert summary["this_run"]["recomputed_damaged"] == 2 and summary["this_run"]["skipped_done"] == N_ITEMS - 2
    assert_same_items(out, reference)


def test_other_settings_are_recomputed(run_artifacts, reference, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    assert one_process(run_artifacts, out, "--max-iter", "4") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["this_run"]["recomputed_other_settings"] == N_ITEMS
    assert {row["iterations"] for row in sweep.SweepResults(out).rows()} == {4}


def test_item_seeds_and_order_do_not_depend_on_ranks():
    items = plan([("C001", "chest", 5), ("L002", "abdomen", 3)], ["cnn10", "gauss_ri"], ["mse", "dssim"], slices=1)
    assert [(i.patient, i.slice_index) for i in items[::4]] == [("C001", 2), ("L002", 1)]  # middle slices
    assert items[0].name == "C001_s0002__cnn10__mse"
    assert len({i.seed(0) for i in items}) == len(items)
    assert items[0].seed(0) == WorkItem("C001", 2, "chest", "cnn10", "mse").seed(0) != items[0].seed(1)
    assert spread(5, 1) == [2] and spread(10, 3) == [1, 5, 8] and spread(3, None) == [0, 1, 2]


def test_missing_denoisers_name_notebook_02(run_artifacts, tmp_path, capsys):
    import shutil

    art = tmp_path / "artifacts"
    shutil.copytree(run_artifacts, art)
    (art / "denoisers.json").unlink()
    assert one_process(art, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "notebook 02_denoiser_training makes it" in err and "--only 02" in err


def test_training_data_key_is_the_notebooks_formula():
    """Models trained by ``sweep train`` land where notebooks 02 and 04 look for them: one helper."""
    for nb in ("02_denoiser_training", "04_natural_invariances"):
        assert "data_key = training_data_key(data, split)" in (REPO / "notebooks" / f"{nb}.py").read_text(), nb
    assert "model_cache.training_data_key(data, split)" in Path(sweep.__file__).read_text()


def test_sweep_item_equals_the_notebook_path(reference, run_artifacts, smoke_data, tmp_path):
    """One recipe: a sweep item and notebook 03's study (recipes.invariance_study) of the same slice,
    settings and seed give bit-identical invariances."""
    from ctinv_utils import hu_to_norm, recipes
    from ctinv_utils.pipeline.artifacts import Artifacts
    from ctinv_utils.data.dataset import anatomy_crop_origin, crop_at
    from ctinv_utils.pipeline.presets import load_preset

    nb03 = sweep.notebook_settings(load_preset("smoke"), "03_image_domain_invariances", None, "cpu")
    protocol = recipes.InvarianceProtocol.from_settings(nb03, alphas=[0.2, 0.5], alphas_dssim=None, alphas_vgg=None,
                                                        max_iter=5, max_iter_vgg=5)
    item = next(it for it in (WorkItem(r["patient"], r["slice"], r["region"], r["denoiser"], r["distance"])
                              for r in sweep.SweepResults(reference).rows()) if it.denoiser == "gauss_ri")
    swept, _ = ItemStore(reference).read(item)
    low_hu, full_hu = smoke_data.slice_hu(smoke_data.index_of(item.patient), item.slice_index)
    x = torch.from_numpy(hu_to_norm(crop_at(low_hu, anatomy_crop_origin(full_hu, 32), 32)))[None, None].float()
    denoisers = Artifacts(run_artifacts, "smoke").load_denoisers(["gauss_ri"], "cpu")
    art = Artifacts(tmp_path / "nb03", "smoke")
    recipes.invariance_study(x, denoisers, [item.distance], protocol, item.seed(0), art, tol_hu=5.0, refine_steps=0,
                             refine_steps_vgg=0, candidates=1, progress=False)
    notebook = art.read_arrays("invariance_arrays", denoiser="gauss_ri", distance=item.distance)
    assert swept["x_inv"].shape == notebook["x_inv"].shape and np.array_equal(swept["x_inv"], notebook["x_inv"])
    assert np.array_equal(swept["f_x_inv"], notebook["f_x_inv"])


def test_item_store_reads_what_it_wrote(tmp_path):
    store = ItemStore(tmp_path)
    item = WorkItem("C001", 0, "chest", "ldctbench:redcnn", "vgg")
    store.write(item, {"x": np.ones((2, 2), np.float32)}, {"settings_hash": "h", "rows": []}, {"seed": 0})
    assert store.path(item).name == "C001_s0000__ldctbench-redcnn__vgg.npz"
    assert store.status(item, "h") == "done" and store.status(item, "other") == "other settings"
    arrays, record = store.read(item)
    assert np.array_equal(arrays["x"], np.ones((2, 2))) and record["provenance"] == {"seed": 0}
    assert not list(tmp_path.rglob("*.tmp"))


def _trained_files(artifacts: Path, smoke_data):
    """The model-cache files notebooks 02 and 04 would look for under the smoke preset."""
    from ctinv_utils.pipeline.artifacts import Artifacts
    from ctinv_utils.pipeline.presets import load_preset
    from ctinv_utils.training.methods import TrainConfig
    from ctinv_utils.training.model_cache import model_cache_path

    nb02 = sweep.notebook_settings(load_preset("smoke"), "02_denoiser_training", None, "cpu")
    key = model_cache.training_data_key(smoke_data, Artifacts(artifacts, "smoke").data_split(smoke_data))
    return {name: model_cache_path(TrainConfig.from_dict({"method": name, "seed": 0, **getattr(nb02, name)}), key)
            for name in ("cnn10", "wganvgg")}


@pytest.mark.filterwarnings("ignore:VGG. random init")
def test_train_fills_the_caches_the_notebooks_read(run_artifacts, smoke_data, test_cache_dir):
    """``sweep train`` in one process: the denoisers land where notebook 02 looks (model_cache_path of
    the preset's settings and the notebooks' data key), a natural-invariance generator in the cache."""
    files = _trained_files(run_artifacts, smoke_data)
    for f in files.values():
        f.unlink(missing_ok=True)
    threads = torch.get_num_threads()
    try:
        assert sweep.main(["train", "--preset", "smoke", "--artifacts", str(run_artifacts), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert all(f.is_file() for f in files.values())
    assert list((test_cache_dir / "natural").glob("*.pt"))


@pytest.mark.reproduction
def test_train_on_two_ranks_writes_one_cached_model(run_artifacts, smoke_data):
    files = _trained_files(run_artifacts, smoke_data)
    for f in files.values():
        f.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
           "ctinv_utils.tools.sweep", "train", "--preset", "smoke", "--artifacts", str(run_artifacts), "--no-progress",
           "--no-natural"]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for f in files.values():
        rec = torch.load(f, weights_only=True)
        assert rec["notes"]["data_parallel_ranks"] == 2
        assert not f.with_suffix(".ckpt").exists()


def test_a_diverged_item_is_reported_and_retried(tmp_path):
    """One item whose optimisation diverges does not end the sweep; the next launch retries it."""
    from ctinv_utils.synthesis.base import SynthesisDiverged

    items = plan([("C001", "chest", 2)], ["gauss_ri"], ["mse", "dssim"])
    bad = items[3].name

    def compute(item, fail=True):
        if fail and item.name == bad:
            raise SynthesisDiverged("loss is nan at iteration 3")
        row = {"alpha": 0.1, "input_rms_hu": 10.0 + item.slice_index, "output_rms_hu": 1.0, "converged": True}
        return {"x_inv": np.full((1, 4, 4), item.slice_index, np.float32)}, {"rows": [row], "iterations": 3}

    store = ItemStore(tmp_path)
    args = (lambda it: "h", store, {"seed": 0})
    summary = sweep.run_items(items, compute, *args, progress=False, log=lambda m: None,
                              failures=(SynthesisDiverged,))
    assert [f["item"] for f in summary["this_run"]["failed"]] == [bad] and "loss is nan" in str(summary)
    assert summary["missing"] == [bad] and not summary["complete"] and summary["this_run"]["computed"] == 3
    summary = sweep.run_items(items, lambda it: compute(it, fail=False), *args, progress=False, log=lambda m: None)
    assert summary["complete"] and summary["this_run"]["computed"] == 1 and summary["this_run"]["skipped_done"] == 3
    assert [r["item"] for r in sweep.SweepResults(tmp_path).rows()] == [it.name for it in items]
