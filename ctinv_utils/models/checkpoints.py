"""Reading checkpoint files safely (weights only) and loading them into a model with clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from ..errors import CTInvError


class CheckpointError(CTInvError):
    """A checkpoint that cannot be loaded into the model."""


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely (weights only). Accepts a plain state dict, ours
    (``{"model": ...}``) or ldct-benchmark's (``{"model_state_dict": ...}``, which may hold an
    argparse.Namespace of training arguments: that one class is allowed, nothing else)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train the model (notebook 02) or fix the path")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path} cannot be loaded as a weights-only checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0]}); it may be corrupt or contain code") from exc
    if isinstance(obj, dict):
        for key in ("model", "model_state_dict", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} is not a state dict (a mapping of parameter names to tensors); "
                              "save model.state_dict(), not the model object or an optimizer")
    return obj


def load_state_dict_into(model: nn.Module, state: dict, source: str = "checkpoint") -> nn.Module:
    """Strict load with one clear message naming the first mismatching layer."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: missing keys {missing[:4]}, "
                              f"unexpected keys {unexpected[:4]}; is it a checkpoint of another model?")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise CheckpointError(f"{source}: layer {k} has shape {tuple(state[k].shape)}, "
                                  f"{type(model).__name__} expects {tuple(v.shape)}")
    model.load_state_dict(state)
    return model
