"""Sharded invariance sweeps and data-parallel training across GPUs and nodes, launched by ``torchrun``.

    python -m ctinv_utils sweep --preset quick [--out DIR] [--denoisers ...] [--distances ...]
                                [--patients N] [--slices N] [--max-iter N] [--alphas ...]
    torchrun --nproc-per-node 8 -m ctinv_utils sweep --preset paper
    torchrun --nproc-per-node 8 -m ctinv_utils sweep train --preset paper

**Sweep.** The work items are (test slice x denoiser x distance), each with the distance's whole alpha
grid as one batch, computed with notebook 03's settings under the preset and the item's own seed, so
a result does not depend on how many ranks ran. Items are written atomically with checksums
(:class:`ItemStore`); a relaunched job computes only what is missing (:func:`run_items`). Rank 0
writes ``<out>/summary.json`` and ``<out>/rows.csv``; :class:`SweepResults` reads them back.

**Training** (``train``): the denoisers of notebook 02 and the generators of notebook 04, trained
data-parallel into the model caches the notebooks read, so the notebooks then load instead of train.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import signal
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import atomic
from ..pipeline import presets
from ..pipeline.artifacts import Artifacts, ArtifactError
from ..data.dataset import anatomy_crop_origin, crop_at, load_data
from ..errors import CTInvError
from ..paths import run_dir
from ..pipeline.presets import load_preset
from ..progress import progress_bar
from ..provenance import array_sha256, config_hash, provenance, sha256_bytes
from ..recipes import InvarianceProtocol, optimise_invariance, train_denoisers, train_generators
from ..synthesis.base import SynthesisDiverged
from ..synthesis.distances import DISTANCES, get_distance
from ..training import distributed, model_cache
from ..units import hu_to_norm

#: Test hook only: ``"RANK:N"`` makes rank RANK SIGKILL itself after writing N items (a pre-emption).
KILL_ENV = "CTINV_SWEEP_KILL_AFTER"
#: The arrays of an item that are images (left out with ``--metrics-only``).
IMAGE_ARRAYS = ("x", "f_x", "x_inv", "f_x_inv")


class SweepError(CTInvError):
    """A sweep that cannot run as asked (unknown denoiser or distance, no slices selected, ...)."""


# -- work items ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkItem:
    """One (slice, denoiser, distance); the slice is ``slice_index`` of test patient ``patient``.

    Items come in a fixed order (test patients of notebook 01's split, slices, denoisers of notebook
    02, distances); each one's seed comes from its identity, never from the rank, so its result is
    the same however many ranks ran (bitwise on the CPU with the same thread count; on GPUs up to
    cuDNN's choice of kernels)."""

    patient: str
    slice_index: int
    region: str
    denoiser: str
    distance: str

    @property
    def slice_id(self) -> str:
        return f"{self.patient}_s{self.slice_index:04d}"

    @property
    def name(self) -> str:
        """The item's file name (without suffix)."""
        return f"{self.slice_id}__{self.denoiser.replace(':', '-')}__{self.distance}"

    def seed(self, base_seed: int) -> int:
        """The item's own seed: a hash of the preset seed and the item's identity (never the rank)."""
        key = f"{int(base_seed)}|{self.patient}|{self.slice_index}|{self.denoiser}|{self.distance}"
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") & 0x7FFFFFFF


def spread(n_slices: int, k: int | None) -> list[int]:
    """``k`` slice indices spread evenly through a scan of ``n_slices`` (all for None; ``k=1``: the
    middle slice, the one notebook 03 analyses)."""
    if k is None or k >= n_slices:
        return list(range(n_slices))
    return [(2 * j + 1) * n_slices // (2 * k) for j in range(k)]


def plan(patients: list[tuple[str, str, int]], denoisers: list[str], distances: list[str],
         slices: int | None = None) -> list[WorkItem]:
    """The work items in their fixed order. ``patients``: (ID, region, number of slices) in split
    order; ``slices``: at most this many per patient (:func:`spread`)."""
    return [WorkItem(pid, s, region, d, dist) for pid, region, n in patients for s in spread(n, slices)
            for d in denoisers for dist in distances]


# -- item files ----------------------------------------------------------------------------------
class ItemStore:
    """``<folder>/items/<item>.npz`` and its JSON sidecar, in the layout of
    :meth:`~ctinv_utils.pipeline.artifacts.Artifacts.write_arrays` (file and per-array SHA-256, ``meta``,
    ``provenance``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, item: WorkItem) -> Path:
        return self.folder / "items" / f"{item.name}.npz"

    def write(self, item: WorkItem, arrays: dict[str, np.ndarray], meta: dict, record: dict) -> Path:
        path = self.path(item)
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        atomic.write_bytes(path, data)
        atomic.write_json(path.with_suffix(".json"), {  # written last: the item is done once this exists
            "sha256": sha256_bytes(data),
            "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str, "sha256": array_sha256(v)}
                       for k, v in arrays.items()},
            "meta": meta, "provenance": record})
        return path

    def sidecar(self, item: WorkItem) -> dict | None:
        try:
            return json.loads(self.path(item).with_suffix(".json").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def status(self, item: WorkItem, settings_hash: str) -> str:
        """``"done"``, ``"missing"``, ``"damaged"`` (no or unreadable sidecar, checksum mismatch) or
        ``"other settings"`` (computed with other settings: recomputed)."""
        path = self.path(item)
        if not path.is_file():
            return "missing"
        record = self.sidecar(item)
        if record is None:
            return "damaged"
        try:
            ok = sha256_bytes(path.read_bytes()) == record.get("sha256")
        except OSError:
            ok = False
        if not ok:
            return "damaged"
        return "done" if record.get("meta", {}).get("settings_hash") == settings_hash else "other settings"

    def read(self, item: WorkItem) -> tuple[dict[str, np.ndarray], dict]:
        """The item's arrays and sidecar, its checksum verified."""
        return read_item_file(self.path(item))


def read_item_file(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays and sidecar of an item file, its checksum verified."""
    side = path.with_suffix(".json")
    try:
        record = json.loads(side.read_text())
        data = path.read_bytes()
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        record, data = None, b""
    if record is None or sha256_bytes(data) != record.get("sha256"):
        raise SweepError(f"sweep item {path} is missing or damaged; run the sweep again to recompute it")
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}, record


# -- the sharded loop ------------------------------------------------------------------------------
def _kill_hook() -> tuple[int, int] | None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return None
    rank, n = spec.split(":")
    return int(rank), int(n)


def run_items(items: list[WorkItem], compute: Callable[[WorkItem], tuple[dict, dict]],
              settings_hash: Callable[[WorkItem], str], store: ItemStore, record: dict,
              progress: bool = True, log=print, failures: tuple[type[BaseException], ...] = ()) -> dict | None:
    """Compute the items not yet done, sharded over the ranks; returns the summary on rank 0 (None
    on the others). ``compute(item)`` -> (arrays, meta with ``rows``: one dict per alpha);
    ``settings_hash(item)``: what an item's file must have been made with; ``record``: provenance
    stored with each item; ``failures``: exceptions of one item that are reported and skipped (the
    item stays missing, a later launch retries it) instead of ending the run.

    An item is done when its file and sidecar exist, the checksum verifies and the settings hash
    matches; anything else is (re)computed, so a killed or pre-empted job computes only what is
    missing. The ranks first check their static share (item i on rank i mod world) and exchange what
    they found; the items still to do are dealt out round-robin, so a resumed job is balanced too."""

    r = distributed.ranks()
    hashes = [settings_hash(it) for it in items]
    # 1. every rank checks its static share (item i on rank i mod world) and all learn every status
    found = {i: store.status(items[i], hashes[i]) for i in range(r.rank, len(items), r.world)}
    shares = distributed.all_gather({"status": found, "run": uuid.uuid4().hex[:12]})
    run_id = shares[0]["run"]
    status = {i: s for share in shares for i, s in share["status"].items()}
    pending = [i for i in range(len(items)) if status[i] != "done"]
    mine = pending[r.rank::r.world]  # the items still to do, dealt out round-robin
    if r.main:
        counts = {s: sum(v == s for v in status.values()) for s in ("done", "missing", "damaged", "other settings")}
        log(f"sweep run {run_id}: {len(items)} items on {r.world} rank(s): {counts['done']} done, "
            f"{counts['missing']} missing, {counts['damaged']} damaged, {counts['other settings']} made with other "
            f"settings; {len(pending)} to compute")
    kill = _kill_hook()
    t0 = time.perf_counter()
    seconds, failed = [], []
    bar = progress_bar(total=len(mine), desc=f"sweep rank 0 of {r.world}",
                       disable=not progress or not r.main or not mine, mininterval=1.0)
    for n, i in enumerate(mine, 1):
        item = items[i]
        t_item = time.perf_counter()
        try:
            arrays, meta = compute(item)
        except failures as exc:
            failed.append({"item": item.name, "rank": r.rank, "error": f"{type(exc).__name__}: {exc}"})
            bar.update(1)
            continue
        took = time.perf_counter() - t_item
        meta = {**meta, "settings_hash": hashes[i], "run": run_id, "rank": r.rank, "world_size": r.world,
                "seconds": round(took, 3)}
        store.write(item, arrays, meta, record)
        seconds.append(took)
        bar.update(1)
        if kill is not None and kill == (r.rank, n):  # tests: a pre-empted rank
            os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    account = {"rank": r.rank, "computed": len(seconds), "failed": failed, "compute_seconds": round(sum(seconds), 3),
               "wall_seconds": round(time.perf_counter() - t0, 3)}
    accounts = distributed.gather_to_main(account)
    summary = None
    if r.main:
        summary, rows = summarise(items, store, run_id, accounts, status)
        write_rows(store.folder / "rows.csv", rows)
        atomic.write_json(store.folder / "summary.json", summary)
        n_failed = len(summary["this_run"]["failed"])
        log(f"sweep run {run_id}: computed {summary['this_run']['computed']} items in "
            f"{summary['this_run']['wall_seconds']:.1f} s on {r.world} rank(s)"
            + (f"; {n_failed} FAILED (see summary.json; a new launch retries them)" if n_failed else "")
            + f"; summary in {store.folder / 'summary.json'}")
    distributed.barrier()
    return summary


ROW_FIELDS = ("item", "patient", "slice", "region", "denoiser", "distance", "alpha", "input_rms_hu", "output_rms_hu",
              "input_max_hu", "input_distance", "output_distance", "out_of_range_fraction", "min_hu", "max_hu",
              "converged", "iterations", "run", "rank")


def write_rows(path: Path, rows: list[dict]) -> Path:
    """The per-item-and-alpha rows as CSV (written atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ROW_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic.write_text(path, buf.getvalue())


def summarise(items: list[WorkItem], store: ItemStore, run_id: str, accounts: list[dict],
              status: dict[int, str]) -> tuple[dict, list[dict]]:
    """The summary (this run's account, per (denoiser, distance, alpha) the medians over slices) and
    the rows (per item and alpha, from the item files: the metrics of the items earlier runs made too)."""
    rows, missing = [], []
    for it in items:
        side = store.sidecar(it)
        if side is None:
            missing.append(it.name)
            continue
        meta = side["meta"]
        for row in meta["rows"]:
            rows.append({"item": it.name, "patient": it.patient, "slice": it.slice_index, "region": it.region,
                         "denoiser": it.denoiser, "distance": it.distance, "iterations": meta["iterations"],
                         "run": meta["run"], "rank": meta["rank"], **row})
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["denoiser"], row["distance"], row["alpha"]), []).append(row)
    aggregate = [{"denoiser": d, "distance": dist, "alpha": a, "slices": len(g),
                  "median_input_rms_hu": statistics.median(x["input_rms_hu"] for x in g),
                  "median_output_rms_hu": statistics.median(x["output_rms_hu"] for x in g),
                  "converged_fraction": sum(x["converged"] for x in g) / len(g)}
                 for (d, dist, a), g in groups.items()]
    wall = max(a["wall_seconds"] for a in accounts)
    computed = sum(a["computed"] for a in accounts)
    summary = {"items": len(items), "complete": not missing, "missing": missing,
               "this_run": {"run": run_id, "world_size": len(accounts), "computed": computed,
                            "failed": [f for a in accounts for f in a["failed"]],
                            "skipped_done": sum(s == "done" for s in status.values()),
                            "recomputed_damaged": sum(s == "damaged" for s in status.values()),
                            "recomputed_other_settings": sum(s == "other settings" for s in status.values()),
                            "wall_seconds": wall,
                            "items_per_minute": round(60 * computed / wall, 3) if wall > 0 else None,
                            "ranks": [{k: v for k, v in a.items() if k != "failed"} for a in accounts]},
               "aggregate": aggregate}
    return summary, rows


# -- reading results back ----------------------------------------------------------------------------
class SweepResults:
    """A finished sweep's folder, read back for figures and tables.

    ``summary`` (``summary.json``), ``rows()`` (``rows.csv``: one dict per item and alpha, numbers as
    floats), ``tradeoff(...)`` (median changes per alpha, the curves of
    :func:`~ctinv_utils.figures.curves.tradeoff_figure`), ``arrays(item)`` (an item's x, x_inv, f(x),
    f(x_inv) and histories in HU, checksum verified)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / "summary.json"
        if not path.is_file():
            raise SweepError(f"{path} is missing: no sweep finished in {self.folder}; run "
                             "`python -m ctinv_utils sweep --preset ... --out " + str(self.folder) + "`")
        self.summary = json.loads(path.read_text())

    def rows(self) -> list[dict]:
        out = []
        with open(self.folder / "rows.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                for k in ("alpha", "input_rms_hu", "output_rms_hu", "input_max_hu", "input_distance",
                          "output_distance", "out_of_range_fraction", "min_hu", "max_hu"):
                    row[k] = float(row[k]) if row[k] != "" else None
                for k in ("slice", "iterations", "rank"):
                    row[k] = int(row[k]) if row[k] != "" else None
                row["converged"] = row["converged"] == "True"
                out.append(row)
        return out

    def tradeoff(self, distance: str, denoisers, key_in: str = "input_rms_hu",
                 key_out: str = "output_rms_hu") -> dict[str, tuple[list, list, list]]:
        """{denoiser: (alphas, median input change, median output change)} over the swept slices."""
        rows = self.rows()
        out = {}
        for d in denoisers:
            by_alpha: dict[float, list[dict]] = {}
            for r in rows:
                if r["denoiser"] == d and r["distance"] == distance:
                    by_alpha.setdefault(r["alpha"], []).append(r)
            alphas = sorted(by_alpha)
            out[d] = (alphas, [statistics.median(r[key_in] for r in by_alpha[a]) for a in alphas],
                      [statistics.median(r[key_out] for r in by_alpha[a]) for a in alphas])
        return out

    def items(self) -> list[str]:
        return sorted(p.stem for p in (self.folder / "items").glob("*.npz"))

    def arrays(self, item: str) -> dict[str, np.ndarray]:
        return read_item_file(self.folder / "items" / f"{item}.npz")[0]


# -- settings from the preset ------------------------------------------------------------------------
def notebook_settings(preset: dict, stem: str, data_path: str | None, device: str):
    """The settings notebook ``stem`` runs with under ``preset`` (as the runner resolves them)."""
    return presets.notebook_settings(preset, stem, presets.runtime_parameters(preset, data_path, device))


def _start(args):
    """Thread count, preset, process group (when under torchrun) and the rank's logger of a command."""

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = load_preset(args.preset)
    r, device = distributed.init_from_env(args.device, args.timeout_min)
    return preset, r, device, _log(r)


# -- the command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ctinv_utils sweep", description=(
        "Invariances of every test slice x denoiser x distance (alpha grids batched), sharded over the ranks of "
        "a torchrun job; resumable. 'train' as the first argument trains the denoisers and natural-invariance "
        "generators data-parallel into the notebooks' caches instead."))
    p.add_argument("--preset", required=True, help="quick, paper or smoke: notebook 03's settings under it")
    p.add_argument("--out", help="results folder (default: papermill_runs/<preset>/artifacts/sweep)")
    p.add_argument("--artifacts", help="the run's artifacts folder, where notebooks 01 and 02 wrote the split and "
                                       "the trained denoisers (default: papermill_runs/<preset>/artifacts)")
    p.add_argument("--data", help="real data root (TCIA/AAPM); default: $CTINV_DATA, else the preset's simulated data")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: each rank on cuda:LOCAL_RANK when torch sees GPUs (backend nccl), else CPU (gloo)")
    p.add_argument("--denoisers", nargs="+", help="default: the preset's denoiser_names of notebook 03")
    p.add_argument("--distances", nargs="+", help="default: mse dssim vgg")
    p.add_argument("--regions", nargs="+", help="only test patients of these regions (head, chest, abdomen)")
    p.add_argument("--patients", type=int, help="only the first N test patients (split order)")
    p.add_argument("--slices", type=int, help="at most N slices per test patient, spread evenly through the scan "
                                              "(1: the middle slice, as in notebook 03; default: every slice)")
    p.add_argument("--alphas", nargs="+", type=float, help="alpha grid of every distance (default: the preset's)")
    p.add_argument("--max-iter", type=int, help="Adam iterations of every distance (default: the preset's)")
    p.add_argument("--crop", type=int, help="centre crop in px, 0 for the whole slice (default: the preset's)")
    p.add_argument("--metrics-only", action="store_true",
                   help="store histories and metrics but not the images (a 512 px item with 8 alphas is ~18 MB)")
    p.add_argument("--threads", type=int, help="torch CPU threads per rank (torchrun sets 1 per rank)")
    p.add_argument("--timeout-min", type=float, default=180.0,
                   help="how long a rank waits for the others at a collective (the end of the sweep) [180]")
    p.add_argument("--no-progress", action="store_true")
    return p


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ctinv_utils sweep train", description=(
        "Train the denoisers of notebook 02 and the natural-invariance generators of notebook 04 under a preset, "
        "data-parallel over the ranks of a torchrun job, into the caches the notebooks load from."))
    p.add_argument("--preset", required=True)
    p.add_argument("--artifacts", help="where notebook 01 wrote the split (default: papermill_runs/<preset>/artifacts)")
    p.add_argument("--data", help="real data root; default: $CTINV_DATA, else the preset's simulated data")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-natural", action="store_true", help="train the denoisers only")
    p.add_argument("--threads", type=int)
    p.add_argument("--timeout-min", type=float, default=60.0)
    p.add_argument("--no-progress", action="store_true")
    return p


def _positive(name: str, value) -> None:
    if value is not None and value < 1:
        raise SweepError(f"--{name} must be >= 1, got {value}")


def _log(r):
    """Messages of rank 0 (the others stay quiet: they run the same steps)."""
    def log(msg: str) -> None:
        if r.main:
            print(f"[rank {r.rank} of {r.world}] {msg}", file=sys.stderr, flush=True)
    return log


def sweep_main(args) -> int:


    for name in ("patients", "slices", "max_iter", "threads"):
        _positive(name.replace("_", "-"), getattr(args, name))
    preset, r, device, log = _start(args)
    try:
        nb = notebook_settings(preset, "03_image_domain_invariances", args.data, device)
        crop = nb.crop if args.crop is None else (args.crop or None)
        # a grid given on the command line is every distance's: it replaces the per-distance ones
        grids = {"alphas": list(args.alphas), "alphas_dssim": None, "alphas_vgg": None} if args.alphas else {}
        iters = {"max_iter": args.max_iter, "max_iter_vgg": args.max_iter} if args.max_iter else {}
        protocol = InvarianceProtocol.from_settings(nb, **grids, **iters)
        seed = int(preset["seed"])
        for dist in DISTANCES:
            protocol.rate(dist)  # a bad lr fails before any work is handed out
        denoiser_names = list(args.denoisers or nb.denoiser_names)
        distances = list(args.distances or DISTANCES)
        unknown = sorted(set(distances) - set(DISTANCES))
        if unknown:
            raise SweepError(f"unknown distance(s) {unknown}; choose from {', '.join(DISTANCES)}")
        artifacts_dir = Path(args.artifacts) if args.artifacts else run_dir(args.preset) / "artifacts"
        art = Artifacts(artifacts_dir, args.preset)
        out = Path(args.out) if args.out else artifacts_dir / "sweep"

        data = load_data(args.data, nb.simulation, progress=False)
        test_ids = art.data_split(data)["test"]
        patients = [(pid, data.patients[data.index_of(pid)].region, data.patients[data.index_of(pid)].n_slices)
                    for pid in test_ids]
        if args.regions:
            patients = [p for p in patients if p[1] in args.regions]
        patients = patients[:args.patients] if args.patients else patients
        if not patients:
            raise SweepError(f"no test patient left to sweep (test patients: {test_ids}, regions asked: "
                             f"{args.regions}); widen --regions")
        items = plan(patients, denoiser_names, distances, args.slices)
        denoisers = art.load_denoisers(denoiser_names, device)  # names notebook 02 when missing
        identity = {}
        for name in denoiser_names:
            side = art.path("model", name=name).with_suffix(".pt.json")
            identity[name] = json.loads(side.read_text())["sha256"] if side.is_file() else name
        vgg = None
        if "vgg" in distances:
            vgg = get_distance("vgg", vgg_allow_random=nb.vgg_weights == "imagenet_or_random", seed=seed).to(device)
        data_id = {"source": data.source, "root": str(data.root)}

        def item_settings(item: WorkItem) -> dict:
            return {"data": data_id, "patient": item.patient, "slice": item.slice_index,
                    "denoiser": identity[item.denoiser], "distance": item.distance, "alphas": protocol.grid(item.distance),
                    "iterations": protocol.iterations(item.distance), "lr": protocol.rate(item.distance),
                    "adam_betas": list(protocol.adam_betas), "stop": protocol.stop() or None,
                    "lr_schedule": protocol.lr_schedule, "hu_range": protocol.hu_range, "crop": crop,
                    "init_noise_std": protocol.init_noise_std, "seed": item.seed(seed),
                    "vgg": vgg.describe(device) if item.distance == "vgg" else None, "images": not args.metrics_only}

        def compute(item: WorkItem) -> tuple[dict, dict]:
            low_hu, full_hu = data.slice_hu(data.index_of(item.patient), item.slice_index)
            low_hu = crop_at(low_hu, anatomy_crop_origin(full_hu, crop), crop)  # notebook 03's window
            x = torch.from_numpy(hu_to_norm(low_hu))[None, None].float().to(device)
            inv = optimise_invariance(x, denoisers[item.denoiser], item.distance, protocol, item.seed(seed),
                                      distance_module=vgg if item.distance == "vgg" else None, device=device)
            arrays = inv.figure_arrays()
            if args.metrics_only:
                arrays = {k: v for k, v in arrays.items() if k not in IMAGE_ARRAYS}
            rows = [{**row, "converged": c} for row, c in zip(inv.summary(), inv.convergence())]
            meta = {**asdict(item), "slice_id": item.slice_id, "seed": item.seed(seed),
                    "iterations": inv.iteration, "lr": protocol.rate(item.distance), "lr_schedule": protocol.lr_schedule,
                    "hu_range": protocol.hu_range, "crop": crop, "rows": rows,
                    "vgg": vgg.describe(device) if item.distance == "vgg" else ""}
            return arrays, meta

        record = provenance(seed=seed, config={"preset": args.preset, "protocol": protocol.as_dict(), "crop": crop},
                            device=device, preset=args.preset, data_source=data.source)
        run_items(items, compute, lambda it: config_hash(item_settings(it)), ItemStore(out), record,
                  progress=not args.no_progress, log=log, failures=(SynthesisDiverged,))
    finally:
        distributed.shutdown()
    return 0


def train_main(args) -> int:

    _positive("threads", args.threads)
    preset, r, device, log = _start(args)
    try:
        nb02 = notebook_settings(preset, "02_denoiser_training", args.data, device)
        art = Artifacts(Path(args.artifacts) if args.artifacts else run_dir(args.preset) / "artifacts", args.preset)
        data = load_data(args.data, nb02.simulation, progress=False)
        split = art.data_split(data)
        train_data = data.subset(split["train"])
        data_key = model_cache.training_data_key(data, split)
        models, _, _ = train_denoisers(nb02, train_data, data_key, device, progress=not args.no_progress, log=log)
        if not args.no_natural:
            nb04 = notebook_settings(preset, "04_natural_invariances", args.data, device)
            trained = train_generators(nb04, {n: models[n] for n in nb04.natural_denoisers}, train_data, data_key,
                                       progress=not args.no_progress)
            for name, (_, path, loaded) in trained.items():
                log(f"natural invariances of {name}: {'loaded' if loaded else 'trained'} ({path})")
        log("done: `python -m ctinv_utils run --preset {0}` now loads these models instead of training "
            "them".format(args.preset))
    finally:
        distributed.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    training = bool(argv) and argv[0] == "train"
    args = (_train_parser() if training else _parser()).parse_args(argv[1:] if training else argv)
    try:
        return train_main(args) if training else sweep_main(args)
    except (CTInvError, ArtifactError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
