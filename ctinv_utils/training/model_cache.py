"""Finished denoisers cached by config: re-running notebook 02 loads instead of retraining."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .. import atomic
from ..data.dataset import PairedCTData
from ..models import freeze, load_denoiser
from ..paths import cache_dir
from ..provenance import config_hash, provenance
from .methods import TrainConfig, denoiser_trainer


def model_cache_path(cfg: TrainConfig, data_key: str) -> Path:
    """Where the finished model of ``cfg`` trained on the data set ``data_key`` is cached."""
    return cache_dir() / "models" / f"{cfg.method}-{config_hash({'train': cfg.to_dict(), 'data': data_key})}.pt"


def train_or_load(cfg: TrainConfig, data: PairedCTData, data_key: str, device: str = "cpu",
                  progress: bool = True) -> tuple[nn.Module, dict, Path]:
    """The frozen denoiser for ``cfg``: loaded from the model cache, else trained (resuming an
    interrupted run) and cached. Returns (model, record with history and provenance, path)."""
    final = model_cache_path(cfg, data_key)
    if final.is_file():
        rec = torch.load(final, map_location="cpu", weights_only=True)
        return load_denoiser(cfg.method, final, device), rec, final
    trainer = denoiser_trainer(cfg, data, final.with_suffix(".ckpt"), device)
    history = trainer.fit(progress)
    model = trainer.method.model
    rec = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
           "history": history, "config": cfg.to_dict(), "data_key": data_key,
           "notes": trainer.method.notes,
           "provenance": json.dumps(provenance(seed=cfg.seed, config=cfg.to_dict(), device=device,
                                               train_seconds=round(trainer.seconds, 1)))}
    atomic.torch_save(final, rec)
    final.with_suffix(".ckpt").unlink(missing_ok=True)
    return freeze(model), rec, final
