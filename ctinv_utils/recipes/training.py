"""Notebook 02's training recipe, once: the sweep's data-parallel training calls the same function."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..models import build_denoiser, freeze
from ..training.methods import TrainConfig
from ..training.model_cache import train_or_load

#: The denoisers ctinv trains (Gauss+RI has no weights).
TRAINED = ("cnn10", "wganvgg")


def train_denoisers(settings, train_data, data_key: str, device: str = "cpu", progress: bool = True,
                    log=None) -> tuple[dict[str, nn.Module], dict[str, dict], dict[str, Path]]:
    """CNN-10 and WGAN-VGG trained (or loaded from the model cache) with notebook 02's settings, and
    the weight-free Gauss+RI.

    Parameters
    ----------
    settings : TrainingSettings or mapping
        Notebook 02's settings: ``seed`` and the ``cnn10``/``wganvgg`` TrainConfig keyword arguments.
    train_data : PairedCTData
        The training patients.
    data_key : str
        The training set's key in the model cache (:func:`~ctinv_utils.training.model_cache.training_data_key`).
    log : callable, optional
        Called with one line per model.

    Returns
    -------
    models, records, paths : dict, dict, dict
        Frozen denoisers by name; each trained one's record (history, config, notes) and cache file.
    """
    get = settings.get if isinstance(settings, dict) else (lambda k: getattr(settings, k))
    models, records, paths = {}, {}, {}
    for name in TRAINED:
        cfg = TrainConfig.from_dict({"method": name, "seed": int(get("seed")), **get(name)})
        models[name], records[name], paths[name] = train_or_load(cfg, train_data, data_key, device, progress=progress)
        if log:
            log(f"{name}: {paths[name]}")
    models["gauss_ri"] = freeze(build_denoiser("gauss_ri").to(device))
    return models, records, paths
