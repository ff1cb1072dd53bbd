"""Finished denoisers cached by config: re-running notebook 02 loads instead of retraining."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from torch import nn

from .. import atomic
from ..data.dataset import PairedCTData
from .distributed import barrier, is_main, main_rank_lock
from ..models import load_denoiser
from ..models.checkpoints import CheckpointError, check_finite, load_file
from ..paths import cache_dir
from ..provenance import config_hash, provenance
from .methods import TrainConfig, denoiser_trainer


def training_data_key(data: PairedCTData, split: dict) -> str:
    """The key of a training set in the model caches (data source, root and training patients): the
    one place notebooks 02 and 04 and ``python -m ctinv_utils sweep train`` compute it, so a model
    trained by one is found by the others."""
    from ..provenance import config_hash

    return config_hash({"source": data.source, "root": str(data.root), "train": split["train"]})

def model_cache_path(cfg: TrainConfig, data_key: str) -> Path:
    """Where the finished model of ``cfg`` trained on the data set ``data_key`` is cached."""
    return cache_dir() / "models" / f"{cfg.method}-{config_hash({'train': cfg.to_dict(), 'data': data_key})}.pt"


def train_or_load(cfg: TrainConfig, data: PairedCTData, data_key: str, device: str = "cpu",
                  progress: bool = True) -> tuple[nn.Module, dict, Path]:
    """Load the denoiser of ``cfg`` from the model cache, or train it (resuming) and cache it.

    Keyed by the config and the training data, so re-running notebook 02 loads instead of
    retraining; a damaged entry (SHA-256) is trained again. A second run of the same config waits,
    then loads. Under ``torchrun`` every rank calls this and they train together.

    Parameters
    ----------
    cfg : TrainConfig
        The training settings.
    data : PairedCTData
        The training data (e.g. ``data.subset(split["train"])``).
    data_key : str
        Identifies the training data in the cache (``training_data_key(data, split)``).
    device : str
        ``"cpu"``, ``"cuda[:N]"`` or ``"auto"``.
    progress : bool
        Show a progress bar while training.

    Returns
    -------
    model : torch.nn.Module
        The trained denoiser, frozen (eval mode, no weight gradients).
    record : dict
        ``history`` (loss curves), ``config``, ``data_key``, ``notes`` and ``provenance``.
    path : pathlib.Path
        The cached model file.

    Raises
    ------
    TrainingDiverged, CheckpointWriteError
        A loss became NaN or infinite; the cache cannot be written (full disk, read-only folder).

    Examples
    --------
    >>> from ctinv_utils import TrainConfig, load_data, split_patients, train_or_load
    >>> from ctinv_utils.training.model_cache import training_data_key
    >>> data = load_data(); split = split_patients(data)
    >>> cfg = TrainConfig.from_dict({"method": "cnn10", "iterations": 200})
    >>> model, record, path = train_or_load(cfg, data.subset(split["train"]), training_data_key(data, split))
    """
    final = model_cache_path(cfg, data_key)
    # one writer per configuration: a second run of the same config waits, then loads the cached model
    # (it never trains beside the first and deletes its checkpoint)
    with main_rank_lock(final.parent, final.stem):
        return _train_or_load(cfg, data, data_key, final, device, progress)


def _train_or_load(cfg, data, data_key, final: Path, device, progress):
    if final.is_file() and (problem := atomic.checksum_problem(final)):
        # a damaged entry can still be a readable zip with wrong weights: the checksum decides
        warnings.warn(f"cached model {final}: {problem}; it is deleted and trained again", stacklevel=2)
        if is_main():
            atomic.remove_checksummed(final)
    if final.is_file():
        try:
            rec = load_file(final, "cached model", "it is deleted and trained again")
            check_finite(rec.get("model", {}), final, "cached model", "it is deleted and trained again")
            return load_denoiser(cfg.method, final, device), rec, final
        except CheckpointError as exc:  # damaged cache entry: say so, and recompute it
            warnings.warn(str(exc), stacklevel=2)
            if is_main():
                atomic.remove_checksummed(final)
    trainer = denoiser_trainer(cfg, data, final.with_suffix(".ckpt"), device)
    history = trainer.fit(progress)
    model = trainer.method.model
    rec = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
           "history": history, "config": cfg.to_dict(), "data_key": data_key,
           "notes": trainer.method.notes,
           "provenance": json.dumps(provenance(seed=cfg.seed, config=cfg.to_dict(), device=device,
                                               train_seconds=round(trainer.seconds, 1)))}
    if is_main():  # several ranks: rank 0 writes, the others wait for the file
        atomic.torch_save(final, rec, checksum=True)
        final.with_suffix(".ckpt").unlink(missing_ok=True)
    barrier()
    # the model goes back to the caller the way a cache hit does (read from the file, default memory
    # layout): the trained in-memory copy is channels_last, whose convolutions round differently in
    # the last bits, and the same seed must give the same numbers whether or not the cache was warm
    return load_denoiser(cfg.method, final, device), rec, final
