"""The first thing to run on a GPU: the GPU check and the paper rehearsal, into one JSON.

    python -m ctinv_utils.tools.gpu_first [--out gpu_first] [--device cuda] [--no-check]

The **paper rehearsal** is the paper preset with every count cut to a few (``configs/paper-rehearsal.yaml``:
whole 512x512 slices, the paper's patches and crops, the published networks, ImageNet VGG required),
run through the same runner and notebooks 01-06 on stand-ins written here, so that no licensed data,
download or trained weight is needed:

* a simulated data tree in the TCIA v3 layout (:func:`write_tcia_tree`), made by ctinv's own simulator
  at the preset's acquisition settings, with patient IDs of ldct-benchmark's split (train, val and test
  patients of each region, chosen so that ctinv's own test split holds one of ldct-benchmark's test
  patients per region: the split path of the published networks runs);
* VGG16 and VGG19 weight files with torchvision's key names and shapes and seeded random values
  (:func:`write_standin_vgg`; named unlike torchvision's files, so no published checksum applies), found
  through ``$CTINV_VGG16_WEIGHTS`` / ``$CTINV_VGG19_WEIGHTS``: the strict ``vgg_weights: imagenet`` path
  runs;
* the preset's published checkpoints in ldct-benchmark's trainer format with seeded weights
  (:func:`write_standin_checkpoints`), found through ``$CTINV_LDCTBENCH_CHECKPOINTS`` (the user's own
  files, see :mod:`ctinv_utils.models.ldctbench.hub`).

Each notebook runs in its own runner call and is measured from inside its kernel (an IPython startup
file, :data:`MEASURE_SCRIPT`): wall time, CPU time, peak resident memory (kernel and its worker
processes), peak GPU memory, and the floating-point operations of every torch operation
(:class:`ctinv_utils.pipeline.preflight.OpCounter`). :func:`gpu_first` adds ``bench --gpu-check``
and the estimate of the real paper preset (:func:`ctinv_utils.pipeline.preflight.gpu_estimate`),
calibrated with the check's measured throughput, and writes everything to ``<out>/gpu_first.json``.
"""

from __future__ import annotations

import argparse
import argparse as _argparse
import contextlib
import itertools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import atomic

#: The rehearsal preset (configs/paper-rehearsal.yaml).
REHEARSAL_PRESET = "paper-rehearsal"
#: Environment variable naming the folder the kernels' measurements are written to.
MEASURE_ENV = "CTINV_MEASURE_DIR"
#: Patients per region of the rehearsal tree: the fewest for which ctinv's split fills train, val and test.
PATIENTS_PER_REGION = 3
#: Slices of a patient in ctinv's test split (the middle slice and pairing of several); others have one.
TEST_SLICES = 2

#: Run inside every notebook kernel of a measured rehearsal (an IPython startup file): counts the
#: floating-point operations of every torch operation, and after each cell writes
#: ``$CTINV_MEASURE_DIR/<pid>.json`` with them, the kernel's CPU time, peak resident memory (its own and
#: its finished child processes') and peak GPU memory.
MEASURE_SCRIPT = '''\
import json as _json, os as _os, resource as _resource, time as _time

def _ctinv_measure():
    from ctinv_utils.pipeline.preflight import OpCounter
    import torch
    counter = OpCounter()
    counter.__enter__()
    started = _time.time()
    out = _os.path.join(_os.environ["CTINV_MEASURE_DIR"], f"{_os.getpid()}.json")

    def record(*_):
        own, kids = _resource.getrusage(_resource.RUSAGE_SELF), _resource.getrusage(_resource.RUSAGE_CHILDREN)
        rec = {"pid": _os.getpid(), "started": started, "wall_s": _time.time() - started,
               "cpu_s": own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
               "peak_rss_mb": own.ru_maxrss / 1024, "peak_rss_children_mb": kids.ru_maxrss / 1024,
               "flops": counter.flops, "flops_by_op": dict(counter.by_op), "ops": counter.ops,
               "cuda_peak_mb": (torch.cuda.max_memory_allocated() / 2**20
                                if torch.cuda.is_available() and torch.cuda.is_initialized() else None)}
        with open(out + ".tmp", "w") as fh:
            _json.dump(rec, fh)
        _os.replace(out + ".tmp", out)

    get_ipython().events.register("post_run_cell", record)

if _os.environ.get("CTINV_MEASURE_DIR"):
    _ctinv_measure()
'''


# -------------------------------------------------------------------------------------------- inputs
def rehearsal_patients(seed: int = 0, per_region: int = PATIENTS_PER_REGION) -> list[dict]:
    """The rehearsal tree's patients: ``per_region`` per region with IDs from ldct-benchmark's split
    (one of its train, val and test patients each), chosen so that ctinv's own seeded split
    (:func:`~ctinv_utils.data.sampling.split_patients`) puts one of ldct-benchmark's test patients into
    its test split in every region, as the published networks need. Each dict: ``patient_id, region,
    phantom_seed, n_slices`` (:data:`TEST_SLICES` for ctinv's test patients, else 1)."""
    from ..data.ldctbench_split import ldctbench_split
    from ..data.regions import PREFIX_OF_REGION, REGIONS
    from ..data.sampling import split_patients

    split = ldctbench_split()
    pools = {r: [[i for i in split[s] if i[0] == PREFIX_OF_REGION[r]] for s in ("train", "val", "test")]
             for r in REGIONS}
    kinds = ("train", "val", "test")[:per_region] if per_region <= 3 else None
    if kinds is None:
        raise ValueError(f"per_region must be at most 3, got {per_region}")
    chosen = {r: [pools[r][k][0] for k in range(per_region)] for r in REGIONS}

    def ctinv_test(choice):
        fake = SimpleNamespace(patients=[SimpleNamespace(patient_id=i, region=r) for r, ids in choice.items()
                                         for i in ids])
        return set(split_patients(fake, seed=seed)["test"])

    for region in REGIONS:  # the first combination (train, val, test candidates) that works for this region
        for combo in itertools.product(*(pools[region][k] for k in range(per_region))):
            trial = {**chosen, region: list(combo)}
            if ctinv_test(trial) & set(combo) & set(split["test"]):
                chosen = trial
                break
        else:
            raise RuntimeError(f"no choice of ldct-benchmark patients puts one of its {region} test patients into "
                               "ctinv's test split; the split changed: adapt rehearsal_patients")
    test = ctinv_test(chosen)
    rng = np.random.default_rng(seed)
    return [dict(patient_id=i, region=r, phantom_seed=int(rng.integers(2**31)),
                 n_slices=TEST_SLICES if i in test else 1) for r in REGIONS for i in sorted(chosen[r])]


def _simulate(args):
    from ..data.simulated import _simulate_patient

    return _simulate_patient(args)


def write_tcia_tree(root: str | Path, simulation: dict, patients: list[dict] | None = None,
                    workers: int | None = None) -> Path:
    """Simulated paired slices of ``patients`` (default :func:`rehearsal_patients`) at the acquisition of
    ``simulation`` (a :class:`~ctinv_utils.data.simulated.SimulationConfig` dict), written in the TCIA v3
    layout under ``root`` (``root/LDCT-and-Projection-data/<ID>/...``); returns ``root``."""
    from ..data.dicom_io import write_patient
    from ..data.simulated import SimulationConfig

    cfg = SimulationConfig.from_dict(simulation)
    patients = rehearsal_patients(cfg.seed) if patients is None else patients
    root = Path(root)
    workers = max(1, min(len(patients), workers or os.cpu_count() or 1))
    jobs = [(cfg, p) for p in patients]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_simulate, jobs))
    else:
        results = [_simulate(j) for j in jobs]
    for p, low, full, _labels, pixel_mm in results:
        write_patient(root, p["patient_id"], low, full, np.arange(p["n_slices"]) * cfg.slice_spacing_mm, pixel_mm,
                      layout="tcia")
    return root


def write_standin_vgg(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """``{"vgg16": path, "vgg19": path}``: state dicts with torchvision's ``features.N.weight/bias`` names
    and shapes and seeded random values (torchvision's VGG init), saved as ``<arch>-standin.pth`` (not
    torchvision's file names, whose SHA-256 prefix :func:`~ctinv_utils.models.vgg.load_vgg` checks).
    torchvision's files also hold the classifier, which ctinv never loads: left out here."""
    import torch
    from torch import nn

    from ..models.vgg import VGGFeatures

    folder = Path(folder)
    out = {}
    for arch in ("vgg16", "vgg19"):
        model = VGGFeatures(arch)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in model.features:
                if isinstance(m, nn.Conv2d):
                    fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                    m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                    m.bias.normal_(0.0, 0.01, generator=gen)
        out[arch] = atomic.torch_save(folder / f"{arch}-standin.pth", model.state_dict())
    return out


def write_standin_checkpoints(folder: str | Path, names, seed: int = 0) -> dict[str, Path]:
    """``{name: path}``: for each ``ldctbench:<method>`` of ``names``, ``<folder>/<method>.pt`` in
    ldct-benchmark's trainer format (``{"args": Namespace, "iteration", "model_state_dict"}``) with the
    network's own initialisation, seeded."""
    import torch

    from ..models.ldctbench import build_published
    from ..names import LDCTBENCH_PREFIX

    folder = Path(folder)
    out = {}
    for k, name in enumerate(names):
        method = name[len(LDCTBENCH_PREFIX):] if name.startswith(LDCTBENCH_PREFIX) else name
        torch.manual_seed(seed + k)
        state = {key: v.detach().clone() for key, v in build_published(method).state_dict().items()}
        out[name] = atomic.torch_save(folder / f"{method}.pt", {
            "args": _argparse.Namespace(lr=1e-4, max_iterations=2, devices=None, note="ctinv paper-rehearsal stand-in"),
            "iteration": 2, "model_state_dict": state})
    return out


def rehearsal_inputs(folder: str | Path, preset: str = REHEARSAL_PRESET, workers: int | None = None) -> dict:
    """Every stand-in the rehearsal needs, under ``folder``: ``{"data": root of the TCIA tree, "env":
    {variable: value} to set while it runs, "patients": [...]}``. The tree is simulated at the preset's
    ``common.simulation`` settings, the checkpoints are those of notebook 02's ``published`` list."""
    from ..pipeline.presets import load_preset, notebook_settings, runtime_parameters

    folder = Path(folder)
    p = load_preset(preset)
    sim = notebook_settings(p, "01_data", runtime_parameters(p)).simulation
    published = notebook_settings(p, "02_denoiser_training", runtime_parameters(p)).published
    patients = rehearsal_patients(int(p["seed"]))
    data = write_tcia_tree(folder / "tcia", sim, patients, workers)
    vgg = write_standin_vgg(folder / "vgg", int(p["seed"]))
    write_standin_checkpoints(folder / "ldctbench", published, int(p["seed"]))
    env = {"CTINV_VGG16_WEIGHTS": str(vgg["vgg16"]), "CTINV_VGG19_WEIGHTS": str(vgg["vgg19"]),
           "CTINV_LDCTBENCH_CHECKPOINTS": str(folder / "ldctbench")}
    return {"data": data, "env": env, "patients": patients}


# ----------------------------------------------------------------------------------------- measuring
def measurement_env(folder: str | Path) -> dict[str, str]:
    """The environment that makes every notebook kernel measure itself (:data:`MEASURE_SCRIPT` as an
    IPython startup file under ``folder/ipython``, measurements into ``folder/measure``)."""
    folder = Path(folder)
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-ctinv-measure.py").write_text(MEASURE_SCRIPT)
    (folder / "measure").mkdir(parents=True, exist_ok=True)
    return {"IPYTHONDIR": str(folder / "ipython"), MEASURE_ENV: str(folder / "measure")}


def _kernel_record(measure_dir: Path, since: float) -> dict:
    """The measurement of the kernel that started after ``since`` (one per runner call)."""
    recs = []
    for f in measure_dir.glob("*.json"):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            rec = json.loads(f.read_text())
            if rec.get("started", 0) >= since:
                recs.append(rec)
    if not recs:
        return {}
    return max(recs, key=lambda r: r["started"])


def rehearse(folder: str | Path, device: str = "cpu", preset: str = REHEARSAL_PRESET, only=None,
             progress: bool = False, inputs: dict | None = None, workers: int | None = None) -> dict:
    """Write the stand-ins under ``folder`` (unless ``inputs`` from :func:`rehearsal_inputs` are given)
    and run notebooks 01-06 of ``preset`` on them through the runner, one notebook per runner call,
    each measured from inside its kernel. Outputs go to ``folder/papermill_runs/<preset>`` and
    ``folder/figures/<preset>``. Returns ``{"preset", "device", "data", "notebooks": {stem: measurement},
    "manifest": the run manifest}``; a failing notebook raises (its measurement so far is in
    ``folder/measure``)."""
    from ..pipeline import run
    from ..pipeline.presets import select_notebooks

    folder = Path(folder)
    t0 = time.perf_counter()
    inputs = inputs or rehearsal_inputs(folder, preset, workers)
    inputs_s = time.perf_counter() - t0
    env = {**inputs["env"], **measurement_env(folder)}
    out = {"preset": preset, "device": device, "data": str(inputs["data"]), "inputs_s": round(inputs_s, 1),
           "patients": inputs["patients"], "notebooks": {}}
    manifest = None
    with run.environment(env):
        for nb in select_notebooks(only):
            since = time.time()
            t = time.perf_counter()
            manifest = run.run(preset, only=nb.stem, data=str(inputs["data"]), device=device, progress=progress,
                               output_root=folder, name=preset, force=True)
            rec = _kernel_record(Path(env[MEASURE_ENV]), since)
            out["notebooks"][nb.stem] = {"runner_wall_s": round(time.perf_counter() - t, 2), **rec}
    out["manifest"] = manifest
    return out


# ------------------------------------------------------------------------------------------ together
def gpu_first(out: str | Path = "gpu_first", device: str = "cuda", check: bool = True,
              check_kwargs: dict | None = None, only: str | None = None, inputs: dict | None = None,
              progress: bool = True) -> dict:
    """``bench --gpu-check`` (unless ``check`` is False), then the paper rehearsal on ``device`` (its
    notebooks ``only``, default all; stand-ins ``inputs`` from :func:`rehearsal_inputs`, default written
    under ``<out>/rehearsal``), then the estimate of the real paper preset calibrated with the check's
    throughput; everything in ``<out>/gpu_first.json`` (also returned). A failing part is recorded
    (``failed``) and the others still run. ``device="cpu"`` with small ``check_kwargs`` runs the same
    code path without a GPU (the tests do)."""
    from ..pipeline.preflight import calibration_from_gpu_check, gpu_estimate, paper_parameters
    from .bench import gpu_check

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"device": device, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    failed = []
    if check:
        try:
            record["gpu_check"] = gpu_check(out, device=device, **(check_kwargs or {}))
        except Exception as exc:  # noqa: BLE001 - recorded, and the rehearsal still runs
            record["gpu_check"] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append("gpu_check")
    try:
        record["rehearsal"] = rehearse(out / "rehearsal", device=device, only=only, inputs=inputs, progress=progress)
    except Exception as exc:  # noqa: BLE001
        record["rehearsal"] = {"error": f"{type(exc).__name__}: {exc}"}
        failed.append("rehearsal")
    calibration = calibration_from_gpu_check(record.get("gpu_check") or {})
    record["paper_estimate"] = {"calibration": calibration,
                                "notebooks": gpu_estimate(paper_parameters(), calibration=calibration or None)}
    record["failed"] = failed
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic.write_json(out / "gpu_first.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctinv_utils.tools.gpu_first", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_first", help="folder of gpu_first.json and the rehearsal's outputs")
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu: the rehearsal and the estimate without "
                    "the GPU check (the rehearsal takes 15-25 min on 2 cores)")
    ap.add_argument("--no-check", action="store_true", help="skip bench --gpu-check (the rehearsal and estimate only)")
    a = ap.parse_args(argv)
    rec = gpu_first(a.out, a.device, check=not a.no_check and a.device != "cpu")
    for stem, m in (rec.get("rehearsal") or {}).get("notebooks", {}).items():
        print(f"rehearsal {stem}: {m.get('runner_wall_s', 0):.0f} s, peak {m.get('peak_rss_mb', 0):.0f} MB RSS"
              + (f", GPU {m['cuda_peak_mb']:.0f} MB" if m.get("cuda_peak_mb") else ""))
    print(f"written: {Path(a.out) / 'gpu_first.json'}" + (f"; FAILED: {', '.join(rec['failed'])}" if rec["failed"] else ""))
    return 1 if rec["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
