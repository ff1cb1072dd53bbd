"""The embedded default data set: simulated paired low/full-dose CT, cached on disk by config.

Phantoms (``phantoms``) go through a scanner model (``scanner``: the clinical fan-beam,
polychromatic scanner, or the simple parallel-beam one, ``scanner="parallel"``) and are written as
a DICOM tree in the TCIA layout, so the simulated and the real data share one loader. The phantom
label maps are stored beside it (``phantom_labels.npz``) for checks against ground truth.

The cache checks itself: ``<cache>/simulated/<config hash>/simulation.json``, written last, records
size, time and SHA-256 of every file, and every use compares them (:func:`check_cache`); a folder
that fails is regenerated with a warning, never trusted. It is crash-safe: one writer per
configuration holds a ``flock`` lock, builds the tree in a temporary folder and renames it when
complete; temporaries of killed writers are removed (:func:`remove_stale_temps`), and the
generation workers die with the process that started them (:func:`_worker_init`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import atomic, settings
# the writer lock is shared with the model and generator caches; fcntl is None on Windows (no writer
# lock there: stale temporary folders are recognised by age)
from ..atomic import HELD_LOCK_FDS as _HELD_LOCK_FDS, LOCK_DIR, fcntl, try_lock as _try_lock, writer_lock  # noqa: F401
from ..errors import BadArgumentError
from .dicom_io import write_patient
from ..paths import cache_dir
from ..progress import progress_bar
from ..provenance import config_hash, provenance, sha256_file
from .phantoms import Phantom
from .regions import DOSE_FRACTION, PREFIX_OF_REGION, REGIONS
from .scanner.acquire import SCANNERS, make_scanner, scan_slice

DONE_MARKER = "simulation.json"
MARKER_FORMAT = 2             # 2: the marker holds a checksum table ("files", "files_sha256")
VERIFY_ENV = "CTINV_VERIFY_DATA"
VERIFY_MODES = ("quick", "full")
STALE_AGE_S = 24 * 3600       # without flock: a temporary folder this old is taken as abandoned
_TMP_NAME = re.compile(r"^\.([0-9a-f]+)\..*\.tmp$")
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines the simulated data set (its hash keys the cache)."""

    image_size: int = 512            # pixels per side: 0.74 mm over the body's 380 mm field, as clinical scans
    n_views: int = 1152              # views per rotation (clinical) or over 180 degrees (parallel)
    photons_full_dose: float = 2e5   # photons per channel and view in air (clinical) or per ray (parallel)
    head_photon_factor: float = 4.0  # head protocols run at ~4x the dose of body ones (CTDIvol ~55 vs ~13 mGy)
    patients_per_region: int = 4
    min_slices: int = 3              # slices per patient drawn uniformly in [min, max]:
    max_slices: int = 8              # unequal counts make patient-balanced sampling matter
    slice_spacing_mm: float = 5.0
    filter_name: str = "hann"
    scanner: str = "clinical"        # "clinical": fan beam, 120 kVp, bowtie, water correction; "parallel": simple
    seed: int = 0
    version: int = 2                 # bump when the simulation code changes its output

    def __post_init__(self):
        if self.image_size < 64 or self.n_views < 16 or self.photons_full_dose <= 0 or self.head_photon_factor <= 0:
            raise BadArgumentError(f"implausible simulation config {self}: need image_size >= 64, n_views >= 16 "
                                   "and positive photons_full_dose and head_photon_factor")
        if self.scanner not in SCANNERS:
            raise BadArgumentError(f"simulation setting scanner={self.scanner!r}: choose one of {SCANNERS}")
        if not 1 <= self.min_slices <= self.max_slices:
            raise BadArgumentError(f"simulation settings min_slices={self.min_slices}, max_slices={self.max_slices}: "
                                   "need 1 <= min_slices <= max_slices")

    @classmethod
    def from_dict(cls, d: dict | None) -> "SimulationConfig":
        return settings.from_dict(cls, d, "simulation settings")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())

    def make_scanner(self):
        """The scanner model these settings simulate with (:func:`.scanner.acquire.make_scanner`)."""
        return make_scanner(self.scanner, n_views=self.n_views, filter_name=self.filter_name)


def patient_plan(cfg: SimulationConfig) -> list[dict]:
    """IDs, regions, phantom seeds and slice counts of the simulated patients (deterministic)."""
    rng = np.random.default_rng(cfg.seed)
    plan = []
    for region in REGIONS:
        for k in range(cfg.patients_per_region):
            plan.append(dict(patient_id=f"{PREFIX_OF_REGION[region]}{k + 1:03d}", region=region,
                             phantom_seed=int(rng.integers(2**31)),
                             n_slices=int(rng.integers(cfg.min_slices, cfg.max_slices + 1))))
    return plan


def _simulate_patient(args) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, float]:
    cfg, p = args
    phantom = Phantom(p["region"], p["phantom_seed"])
    rng = np.random.default_rng([cfg.seed, p["phantom_seed"]])  # order-independent per patient
    photons = cfg.photons_full_dose * (cfg.head_photon_factor if p["region"] == "head" else 1.0)
    scanner = cfg.make_scanner()
    lows, fulls, labels = [], [], []
    n = p["n_slices"]
    for i in range(n):
        z = (i + 0.5) / n
        hu, lab, pixel_mm = phantom.slice(z, cfg.image_size)
        low, full = scan_slice(hu, lab, pixel_mm, photons_full_dose=photons, dose_fraction=DOSE_FRACTION[p["region"]],
                               rng=rng, scanner=scanner)
        lows.append(low), fulls.append(full), labels.append(lab)
    return p, np.stack(lows), np.stack(fulls), np.stack(labels), pixel_mm


def _worker_init(parent_pid: int) -> None:
    """Start of every generation worker: die with the parent.

    On Linux the worker sets ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (the kernel kills it when the
    thread that started it ends; the pool lives only within one ``generate`` call in that thread)
    and then checks that its parent is still the one it was started by (it may have died before
    prctl); elsewhere a thread polls the parent PID every second. It also closes its inherited copy
    of the writer lock, so a worker never keeps the lock held nor a waiting process waiting."""
    for fd in list(_HELD_LOCK_FDS):  # a forked worker shares the parent's lock: drop its copy
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _pool_context():
    """fork on Linux (what Python 3.11-3.13 use, no re-import of the caller's script); spawn
    elsewhere. Either way the worker's parent is this process, which ``_worker_init`` relies on."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def generate(cfg: SimulationConfig, out_root: str | Path, workers: int | None = None,
             progress: bool = True) -> Path:
    """Simulate every patient of ``cfg`` and write the DICOM tree under ``out_root``, then the
    completion marker with a checksum table of every file written."""
    out_root = Path(out_root)
    plan = patient_plan(cfg)
    workers = workers or min(len(plan), os.cpu_count() or 1)
    labels_out = {}
    t0 = time.perf_counter()
    jobs = [(cfg, p) for p in plan]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:
            results = pool.map(_simulate_patient, jobs)
            results = list(progress_bar(results, total=len(jobs), desc="simulating patients", disable=not progress))
    else:
        results = [_simulate_patient(j) for j in progress_bar(jobs, desc="simulating patients", disable=not progress)]
    for p, low, full, lab, pixel_mm in results:
        z = np.arange(p["n_slices"]) * cfg.slice_spacing_mm
        write_patient(out_root, p["patient_id"], low, full, z, pixel_mm, layout="tcia")
        labels_out[p["patient_id"]] = lab
    np.savez_compressed(out_root / "phantom_labels.npz", **labels_out)
    table = file_table(out_root)
    atomic.write_json(out_root / DONE_MARKER, provenance(
        seed=cfg.seed, config=cfg.to_dict(), patients=plan, seconds=round(time.perf_counter() - t0, 2),
        marker_format=MARKER_FORMAT, files=table, files_sha256=table_digest(table)))
    return out_root


# ---------------------------------------------------------------------------------------------
# checksums
def _data_files(root: Path) -> dict[str, Path]:
    """Every file of a data folder but the marker, by POSIX path relative to ``root``. Hidden files
    (``.DS_Store``, atomic writers' temporaries) are not data: the loader ignores them too."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and rel.as_posix() != DONE_MARKER and not any(part.startswith(".") for part in rel.parts):
            out[rel.as_posix()] = p
    return out


def file_table(root: str | Path) -> dict[str, dict]:
    """``{relative path: {"size", "mtime_ns", "sha256"}}`` of every data file under ``root``."""
    out = {}
    for rel, p in sorted(_data_files(Path(root)).items()):
        st = p.stat()
        out[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(p)}
    return out


def table_digest(table: dict[str, dict]) -> str:
    """SHA-256 of the (path, size, SHA-256) list: detects an edited or truncated marker."""
    rows = [[rel, int(e["size"]), str(e["sha256"])] for rel, e in sorted(table.items())]
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def check_cache(root: str | Path, cfg: SimulationConfig, verify: str = "quick") -> str | None:
    """None when ``root`` holds the complete, unchanged data set of ``cfg``; else why not (a phrase
    that follows the folder's name). ``verify='quick'`` compares the recorded table's hash, the
    configuration, the file list and sizes (milliseconds) and hashes only files whose modification
    time changed; ``'full'`` hashes all, which also finds a change that kept size and time. A folder
    without its marker, or with files missing, added or changed, is not complete."""
    if verify not in VERIFY_MODES:
        raise BadArgumentError(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
    root = Path(root)
    if not root.is_dir():
        return "does not exist"
    marker = root / DONE_MARKER
    if not marker.is_file():
        return f"has no completion marker {DONE_MARKER} (its generation was interrupted, or it was copied in part)"
    try:
        rec = json.loads(marker.read_text())
        table = rec["files"]
        digest_ok = rec.get("files_sha256") == table_digest(table)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"has a completion marker without a readable checksum table ({type(exc).__name__}; an older ctinv wrote it, or it is damaged)"
    if not digest_ok:
        return "has a completion marker whose checksum table was changed"
    if rec.get("config") != cfg.to_dict():
        return "holds the data of another configuration"
    on_disk = _data_files(root)
    missing, extra = sorted(set(table) - set(on_disk)), sorted(set(on_disk) - set(table))
    if missing:
        return f"lacks {len(missing)} of its {len(table)} files (e.g. {missing[0]})"
    if extra:
        return f"holds {len(extra)} files its generator did not write (e.g. {extra[0]}), which the loader would read"
    stale = []
    for rel, entry in table.items():
        st = on_disk[rel].stat()
        if st.st_size != entry["size"]:
            return f"has {rel} at {st.st_size} bytes instead of {entry['size']}"
        if verify == "full" or st.st_mtime_ns != entry.get("mtime_ns"):
            if sha256_file(on_disk[rel]) != entry["sha256"]:
                return f"has {rel} changed since it was written (SHA-256 differs)"
            if st.st_mtime_ns != entry.get("mtime_ns"):
                stale.append((rel, st.st_mtime_ns))
    if stale:  # same content, new times (a copy): record them so the next check is quick again
        for rel, mtime_ns in stale:
            table[rel]["mtime_ns"] = mtime_ns
        with contextlib.suppress(OSError):
            atomic.write_json(marker, rec)
    return None


# ---------------------------------------------------------------------------------------------
# one writer at a time, and what killed writers left behind
def remove_stale_temps(parent: str | Path, held: str | None = None) -> list[Path]:
    """Remove the ``.<hash>.*.tmp`` folders of killed writers under ``parent``; returns them.
    ``held``: the key whose lock the caller holds (its temporaries are stale by definition); others
    are removed only when their lock is free (with flock) or, without flock, after ``STALE_AGE_S``."""
    parent = Path(parent)
    removed = []
    for tmp in sorted(parent.glob(".*.tmp")) if parent.is_dir() else []:
        m = _TMP_NAME.match(tmp.name)
        if not m:
            continue
        key = m.group(1)
        fd = None
        if key != held:
            if fcntl is None:
                with contextlib.suppress(OSError):
                    if time.time() - tmp.stat().st_mtime < STALE_AGE_S:
                        continue
            else:
                fd = _try_lock(parent, key, wait=False)
                if fd is None:
                    continue  # a live writer owns it
        try:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            removed.append(tmp)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def _install(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``, moving an invalid ``final`` aside first."""
    if final.exists() or final.is_symlink():
        old = final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.old.tmp"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    else:
        os.replace(tmp, final)


def _sweep(parent: Path, key: str) -> None:
    """On a start that finds the cache valid: remove what killed processes left, if anything. The
    temporaries under ``parent`` go as in ``remove_stale_temps``; hidden ``*.tmp`` files inside the
    data folder (a marker rewrite of ``check_cache`` killed halfway) go when ``key``'s lock is free
    (a live rewrite that loses its temporary only skips recording new modification times)."""
    inner = sorted((parent / key).glob(".*.tmp"))
    if any(parent.glob(".*.tmp")):
        remove_stale_temps(parent)
    if inner:
        fd = _try_lock(parent, key, wait=False)
        if fd is not None:
            try:
                for tmp in inner:
                    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            finally:
                os.close(fd)


def simulated_data_root(cfg: SimulationConfig | dict | None = None, progress: bool = True,
                        verify: str | None = None) -> Path:
    """Path of the cached simulated data set for ``cfg``; generates it on first use, and again when
    the cached folder fails its check (``check_cache`` with ``verify``; when None,
    ``$CTINV_VERIFY_DATA`` or else ``'quick'``).

    The tree is built in a temporary folder and renamed when complete, under a lock, so an
    interrupted run leaves no half-written cache behind and two runs (where ``flock`` exists) never
    build it twice. Every start removes the temporaries of killed writers (:func:`remove_stale_temps`).
    Without ``flock`` (Windows) there is no writer lock: two writers may both generate (the rename
    still keeps the result whole)."""
    if not isinstance(cfg, SimulationConfig):
        cfg = SimulationConfig.from_dict(cfg)
    if verify is None:
        verify = os.environ.get(VERIFY_ENV) or "quick"
    if verify not in VERIFY_MODES:
        raise BadArgumentError(f"verify (or ${VERIFY_ENV}) must be one of {VERIFY_MODES}, not {verify!r}")
    parent = cache_dir() / "simulated"
    final = parent / cfg.hash
    if check_cache(final, cfg, verify) is None:
        _sweep(parent, cfg.hash)
        return final
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with writer_lock(parent, cfg.hash):
            remove_stale_temps(parent, held=cfg.hash)
            problem = check_cache(final, cfg, verify)
            if problem is None:  # another process finished it while we waited
                return final
            if problem != "does not exist":
                warnings.warn(f"simulated data cache {final} {problem}; regenerating it", stacklevel=2)
            tmp = parent / f".{cfg.hash}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            tmp.mkdir()
            try:
                generate(cfg, tmp, progress=progress)
                _install(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except OSError as exc:  # a full disk or a read-only cache, raised deep inside pydicom or numpy
        err = atomic.cache_write_error(exc, final, "the simulated data set")
        if err is None:
            raise
        raise err from exc
    return final


def load_phantom_labels(root: str | Path) -> dict[str, np.ndarray]:
    """Phantom label maps ``{patient_id: (S, H, W) uint8}`` of a simulated data set."""
    with np.load(Path(root) / "phantom_labels.npz") as f:
        return {k: f[k] for k in f.files}
