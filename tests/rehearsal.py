"""What the paper rehearsal must produce, and the rule that makes it a rehearsal of the paper preset.

The stand-in writers (TCIA tree, VGG weights, published checkpoints) live in
:mod:`ctinv_utils.tools.gpu_first`, which runs the same rehearsal on a GPU; this module holds what the
tests check of its outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctinv_utils.pipeline import presets

#: Parameters the rehearsal may set differently from the paper preset: counts only (iterations, batch
#: sizes, patients, slices, alphas and their grids, samples, lesions and realisations, refinements,
#: products, attack steps, panels). Sizes, crops, rates, distances, denoisers and weights stay.
COUNT_KEYS = {
    "simulation.patients_per_region", "simulation.min_slices", "simulation.max_slices",
    "n_sampler_draws", "noise_slices_per_patient",
    "cnn10.iterations", "cnn10.batch_size", "cnn10.checkpoint_every",
    "wganvgg.iterations", "wganvgg.batch_size", "wganvgg.checkpoint_every",
    "alphas", "max_iter", "max_iter_vgg", "tolerance_refine_steps", "tolerance_refine_steps_vgg",
    "tolerance_candidates", "linearised_max_products", "attack_steps",
    "iterations", "batch_size", "critic_steps", "n_samples",
    "diameters_mm", "contrasts_hu", "realisations", "absent_per_realisation", "example_lesions",
    "invariance_alphas", "invariance_iterations", "n_natural_panels",
}
#: List parameters whose rehearsal value must be a subset of the paper's (fewer, never other, values).
SUBSET_KEYS = {"alphas", "diameters_mm", "contrasts_hu", "example_lesions", "invariance_alphas"}

#: The paper preset's sizes the rehearsal keeps: the analysed slice, the training patches, the crops.
SLICE_PX = 512
LESION_CROP_PX = 96


def _flat(params: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict) and k in ("simulation", "cnn10", "wganvgg"):
            out.update(_flat(v, f"{k}."))
        else:
            out[prefix + k] = v
    return out


def differences_beyond_counts(paper: str = "paper", rehearsal: str = "paper-rehearsal") -> list[str]:
    """Every parameter where the rehearsal differs from the paper preset by more than a count."""
    a, b = presets.load_preset(paper), presets.load_preset(rehearsal)
    problems = []
    for stem in presets.NOTEBOOK_SETTINGS:
        pa = _flat(presets.notebook_settings(a, stem, presets.runtime_parameters(a)).parameters())
        pb = _flat(presets.notebook_settings(b, stem, presets.runtime_parameters(b)).parameters())
        for key in sorted(set(pa) | set(pb)):
            if key in ("preset", "figures_dir", "artifacts_dir") or pa.get(key) == pb.get(key):
                continue
            if key not in COUNT_KEYS:
                problems.append(f"{stem}.{key}: paper {pa.get(key)!r}, rehearsal {pb.get(key)!r}")
            elif key in SUBSET_KEYS and not all(v in pa[key] for v in pb[key]):
                problems.append(f"{stem}.{key}: {pb[key]!r} is not a subset of the paper's {pa[key]!r}")
            elif not isinstance(pb.get(key), (int, float, list)) or isinstance(pb.get(key), bool):
                problems.append(f"{stem}.{key}: {pb.get(key)!r} is not a count")
    return problems


def array_shapes(artifacts: Path) -> dict[str, tuple]:
    """``{artifact file relative to artifacts: shape of each array}`` of the arrays the figures are
    drawn from (``.npz``), for the shape checks."""
    out = {}
    for f in sorted(Path(artifacts).rglob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            out[f.relative_to(artifacts).as_posix()] = {k: z[k].shape for k in z.files}
    return out


def shape_problems(artifacts: Path, denoisers: list[str], n_alphas: int, n_samples: int) -> list[str]:
    """Where the rehearsal's arrays lack the paper's shapes: whole 512 x 512 slices through notebooks
    02-04 and 06, every (denoiser, distance) of notebook 03, the lesion crop of notebook 05."""
    shapes = array_shapes(artifacts)
    problems = []

    def want(name: str, key: str, shape: tuple):
        got = shapes.get(name, {}).get(key)
        if got != shape:
            problems.append(f"{name}:{key} is {got}, expected {shape}")

    px = (SLICE_PX, SLICE_PX)
    want("analysis_slice.npz", "low", px)
    for region in ("chest", "abdomen"):
        for name in ["low", "full", *denoisers]:
            want(f"examples/{region}.npz", name, px)
    for name in denoisers:
        file = name.replace(":", "-")
        for dist in ("mse", "dssim", "vgg"):
            want(f"invariances/{file}_{dist}.npz", "x_inv", (n_alphas, *px))
            want(f"invariances/{file}_{dist}.npz", "f_x_inv", (n_alphas, *px))
            want(f"tolerance/{file}_{dist}.npz", "x_inv", px)
    for name in ("cnn10", "wganvgg", "gauss_ri"):
        want(f"natural/{name}.npz", "samples", (n_samples, *px))
    for name in ("cnn10", "wganvgg"):
        want(f"lesions/invariance_{name}.npz", "x_inv", (1, LESION_CROP_PX + 1, LESION_CROP_PX + 1))
    return problems
