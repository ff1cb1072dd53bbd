"""ctinv_utils: what does a CT denoiser ignore?

Reconstructing invariances of CT denoising algorithms (Eulig, Maier, Ommer, Kachelriess; CT Meeting
2024). The public API, so that scripts, notebooks and tests use the same names::

    from ctinv_utils import load_data, load_denoiser, Invariance, hu_to_norm

Names are imported on first use (``import ctinv_utils`` stays light). The stage packages behind
them: ``data`` -> ``models`` -> ``training`` / ``synthesis`` -> ``recipes``; the notebook pipeline
(``pipeline``: settings, presets, runner, context, artifacts), the panels drawn from artifacts
(``report``), the arrays-in-HU figures (``figures``), the command-line tools (``tools``, run them as
``python -m ctinv_utils <command>``) and the infrastructure modules sit beside them.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    # data
    "load_data": "data.dataset", "PairedCTData": "data.dataset", "split_patients": "data.sampling",
    "PatchSampler": "data.sampling", "PatientBalancedSampler": "data.sampling",
    # units
    "hu_to_norm": "units", "norm_to_hu": "units", "get_window": "units", "apply_window": "units",
    "Window": "units", "WINDOWS": "units",
    # models
    "build_denoiser": "models", "load_denoiser": "models", "freeze": "models", "CNN10": "models",
    "WGANVGG": "models", "GaussRI": "models", "WGANCritic": "models", "load_vgg": "models.vgg",
    # training
    "TrainConfig": "training.methods", "train_or_load": "training.model_cache", "Trainer": "training.loop",
    "evaluate": "training.evaluation", "denoise_hu": "training.evaluation",
    # synthesis
    "get_distance": "synthesis.distances", "Invariance": "synthesis.invariances",
    "tradeoff_curve": "synthesis.invariances", "FGSM": "synthesis.adversarial", "BIM": "synthesis.adversarial",
    "InvarianceExplorer": "synthesis.explorer", "NaturalInvariance": "synthesis.natural",
    "train_or_load_natural": "synthesis.natural", "at_tolerance": "synthesis.tolerance",
    "linearised_spectrum": "synthesis.linearised", "rate_for": "synthesis.grid", "alphas_for": "synthesis.grid", "require_in_grid": "synthesis.grid",
    "early_stop": "synthesis.grid",
    # hand-off between notebooks
    "Artifacts": "pipeline.artifacts",
    "display_name": "names",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ctinv_utils' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_API))
