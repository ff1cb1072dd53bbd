"""Export a run's results as DICOM, to open in a radiologist's own viewer.

    python -m ctinv_utils export --preset quick [--out DIR] [--denoiser cnn10 ...] [--distance mse ...]

Reads the artifacts of notebooks 03 (invariances) and 04 (natural invariances) of the preset and
writes one DICOM study per case under ``figures/<preset>/dicom/`` (layout and headers:
:mod:`ctinv_utils.data.dicom_export`). Nothing is recomputed; a missing artifact stops with one line
naming the notebook that makes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from ..pipeline.artifacts import ArrayArtifact, ArtifactError, Artifacts
from ..data import dicom_io
from ..data.dicom_export import ExportStudy, invariance_study, natural_study, write_study
from ..data.regions import FOV_MM
from ..errors import CTInvError, first_line
from ..names import DENOISER_NAMES, DISTANCE_NAMES, LDCTBENCH_NAMES, LDCTBENCH_PREFIX
from ..paths import PRESET_DIR, figure_dir, repo_relative
from ..pipeline.presets import available_presets


class ExportError(CTInvError):
    """The export lacks a fact it needs (e.g. the pixel size) and cannot guess it."""


def _stored_pairs(art: Artifacts) -> list[tuple[str, str]]:
    """(denoiser, distance) of every invariance_arrays artifact on disk."""
    folder = art.path("invariance_arrays", denoiser="d", distance="t").parent
    return sorted(tuple(p.stem.rsplit("_", 1)) for p in folder.glob("*_*.npz"))


def _stored_natural(art: Artifacts) -> list[str]:
    return sorted(p.stem for p in art.path("natural_arrays", denoiser="d").parent.glob("*.npz"))


def _provenance(a: ArrayArtifact) -> dict:
    try:
        return json.loads(a.path.with_suffix(".json").read_text()).get("provenance", {})
    except (OSError, json.JSONDecodeError):
        return {}


def _created(prov: dict) -> datetime | None:
    try:
        return datetime.strptime(prov["created"], "%Y-%m-%dT%H:%M:%S%z")
    except (KeyError, TypeError, ValueError):
        return None


def pixel_size_mm(art: Artifacts, slice_meta: dict) -> float:
    """The pixel size of the analysed slice: its artifact's ``pixel_mm``; for simulated data the
    simulation's field of view over its matrix size; for real data the PixelSpacing of the patient's
    full-dose series (read from the data root notebook 01 used)."""
    if slice_meta.get("pixel_mm"):
        return float(slice_meta["pixel_mm"])
    info = art.read_json("data")
    region, patient = slice_meta.get("region"), slice_meta.get("patient")
    why = "the analysis slice's artifact does not record it"
    if str(info.get("source", "")).startswith("simulated"):
        size = (info.get("simulation") or {}).get("image_size")
        if size and region in FOV_MM:
            return FOV_MM[region] / float(size)
        why = "data.json lacks the simulation's image_size or the slice's region"
    elif info.get("root") and patient:
        try:
            located, _ = dicom_io.locate_patients(Path(info["root"]))
            found = [full for d, _, _, _, _, full in located if d.name == patient]
            if not found:
                raise CTInvError(f"no pairable series of patient {patient} under {info['root']}")
            full_files = found[0]
            mm = dicom_io.read_slice_header(full_files[0]).pixel_mm
            if mm == mm:  # not nan
                return mm
            why = f"patient {patient}'s series has no PixelSpacing"
        except CTInvError as exc:
            why = f"the data of patient {patient} is not readable here ({exc})"
    raise ExportError(f"the pixel size of the analysed slice is unknown ({why}); pass --pixel-mm MM "
                      "(the PixelSpacing of the data the run used)")


def _note(preset: str, prov: dict, meta: dict) -> str:
    parts = [f"ctinv preset {preset}", f"data: {prov.get('data_source', 'unknown')}",
             f"notebook {prov.get('notebook', '?')}", f"commit {str(prov.get('git_commit', '?'))[:12]}"]
    if meta.get("vgg"):
        parts.append(str(meta["vgg"]))
    return "; ".join(parts) + "; synthetic research result, not for diagnosis"


def known_denoisers() -> list[str]:
    """Every denoiser name a run can hold: the talk's three and ldct-benchmark's published methods."""
    return sorted(DENOISER_NAMES) + [f"{LDCTBENCH_PREFIX}{m}" for m in sorted(LDCTBENCH_NAMES)]


def check_names(art: Artifacts, denoisers=None, distances=None) -> None:
    """An :class:`ExportError` for a denoiser or distance name that no run can hold, listing the known
    names and those with results in this run (a known name without results is left to the artifact
    check, which names the notebook that makes it)."""
    stored = _stored_pairs(art)
    for kind, asked, known, have in (
            ("denoiser", denoisers, known_denoisers(), sorted({d for d, _ in stored} | set(_stored_natural(art)))),
            ("distance", distances, list(DISTANCE_NAMES), sorted({t for _, t in stored}))):
        unknown = [n for n in asked or () if n not in known and n not in have]
        if unknown:
            raise ExportError(f"unknown {kind}{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)}; known {kind}s: {', '.join(known)} "
                              f"(with results in {art.root}: {', '.join(have) or 'none'}); pass --{kind} with "
                              "one of them, or leave it out to export every one with results")


def build_studies(art: Artifacts, denoisers=None, distances=None, natural: bool = True, differences: bool = True,
                  pixel_mm: float | None = None) -> list[tuple[ExportStudy, datetime | None]]:
    """The studies of a run (each with the time its result was made), read from ``art``. A denoiser
    or distance name that no run can hold is an :class:`ExportError` listing the known ones."""
    check_names(art, denoisers, distances)
    sl = art.read_arrays("analysis_slice")
    region = sl.meta.get("region")
    pixel_mm = pixel_mm or pixel_size_mm(art, sl.meta)
    found = _stored_pairs(art)
    if denoisers and distances:
        pairs = [(d, t) for d in denoisers for t in distances]
    else:
        pairs = [(d, t) for d, t in found if (not denoisers or d in denoisers) and (not distances or t in distances)]
        if not pairs:  # nothing stored: the artifacts module names what is missing and how to make it
            pairs = [((denoisers or ["cnn10"])[0], (distances or ["mse"])[0])]
    studies = []
    for d, t in pairs:
        a = art.read_arrays("invariance_arrays", denoiser=d, distance=t)
        # x went HU -> normalized -> HU (differs from the slice by ~1e-4 HU)
        same_slice = sl["low"].shape == a["x"].shape and np.abs(sl["low"] - a["x"]).max() < 0.5
        full = sl["full"] if same_slice else None
        prov = _provenance(a)
        studies.append((invariance_study(a["x"], a["f_x"], a["x_inv"], a["f_x_inv"], a["alphas"], denoiser=d,
                                         distance=t, pixel_mm=pixel_mm, region=region, full_hu=full,
                                         differences=differences, note=_note(art.preset, prov, a.meta)),
                        _created(prov)))
    if natural:
        stored = _stored_natural(art)
        for d in denoisers or stored:
            if d not in stored:
                print(f"note: no natural invariances of {d} (notebook 04 made them for: {', '.join(stored) or 'none'})")
                continue
            a = art.read_arrays("natural_arrays", denoiser=d)
            prov = _provenance(a)
            studies.append((natural_study(a["x"], a["samples"], a["f_x"], a["f_samples"], denoiser=d,
                                          pixel_mm=pixel_mm, region=region, full_hu=a.arrays.get("full"),
                                          std_hu=a.arrays.get("std"), differences=differences,
                                          note=_note(art.preset, prov, a.meta)),
                            _created(prov)))
    return studies


def export(art: Artifacts, out: str | Path, **kwargs) -> list[Path]:
    """Write every study of :func:`build_studies` under ``out``; returns the study folders."""
    name = art.preset.upper()
    folders = []
    for study, when in build_studies(art, **kwargs):
        folder = write_study(study, out, patient_name=f"CTINV^{name}", patient_id=f"CTINV-{name}",
                             study_datetime=when)
        n = sum(len(s.images_hu) for s in study.series)
        print(f"wrote {repo_relative(folder)}: {len(study.series)} series, {n} images ({study.description})")
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctinv_utils export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick", help="the run to export (default: quick)")
    ap.add_argument("--out", type=Path, help="output folder (default: figures/<preset>/dicom/)")
    ap.add_argument("--denoiser", nargs="+", help="denoisers to export (default: every one with results)")
    ap.add_argument("--distance", nargs="+", help="distances to export (default: every one with results)")
    ap.add_argument("--no-natural", action="store_true", help="leave out the natural invariances")
    ap.add_argument("--no-differences", action="store_true", help="leave out the difference series")
    ap.add_argument("--pixel-mm", type=float, help="pixel size in mm when the run does not record it")
    ap.add_argument("--artifacts", type=Path, help="artifacts folder (default: papermill_runs/<preset>/artifacts)")
    args = ap.parse_args(argv)
    if not args.artifacts and args.preset not in available_presets():
        print(f"error: unknown preset {args.preset!r}; available: {', '.join(available_presets())} (files in "
              f"{repo_relative(PRESET_DIR)}); or pass --artifacts DIR for a run kept elsewhere", file=sys.stderr)
        return 1
    art = Artifacts(args.artifacts, args.preset) if args.artifacts else Artifacts.of_preset(args.preset)
    out = args.out or figure_dir(args.preset) / "dicom"
    try:
        folders = export(art, out, denoisers=args.denoiser, distances=args.distance, natural=not args.no_natural,
                         differences=not args.no_differences, pixel_mm=args.pixel_mm)
    except (ArtifactError, CTInvError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    print(f"{len(folders)} studies in {repo_relative(Path(out))}: open the folder in a DICOM viewer (one study per case)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
