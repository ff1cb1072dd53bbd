"""The talk's three denoisers, each ``(B, 1, H, W)`` normalized in and out.

``build_denoiser(name)`` makes an untrained one; ``load_denoiser(name, path)`` loads a checkpoint
(``torch.load(..., weights_only=True)``: a checkpoint is untrusted input) and returns it in eval
mode with frozen parameters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from ..errors import CTInvError
from .cnn10 import CNN10
from .gauss_ri import GaussRI, central_square
from .wganvgg import WGANCritic, WGANVGG

DENOISERS: dict[str, type[nn.Module]] = {"cnn10": CNN10, "wganvgg": WGANVGG, "gauss_ri": GaussRI}
#: Display names for tables and titles.
DISPLAY_NAME = {"cnn10": "CNN-10", "wganvgg": "WGAN-VGG", "gauss_ri": "Gauss+RI"}


class CheckpointError(CTInvError):
    """A checkpoint that cannot be loaded into the model."""


def build_denoiser(name: str) -> nn.Module:
    try:
        return DENOISERS[name]()
    except KeyError:
        raise ValueError(f"unknown denoiser {name!r}; choose one of {sorted(DENOISERS)}") from None


def freeze(model: nn.Module) -> nn.Module:
    """``eval()`` and ``requires_grad_(False)``: the state in which a denoiser is analysed."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


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


def load_denoiser(name: str, path: str | Path | None = None, device: str = "cpu") -> nn.Module:
    """A frozen denoiser: Gauss+RI needs no checkpoint; CNN-10 / WGAN-VGG load ``path``."""
    model = build_denoiser(name)
    if name != "gauss_ri":
        if path is None:
            raise CheckpointError(f"{name} needs a checkpoint path; train it in notebook 02 first")
        load_state_dict_into(model, read_checkpoint(path), str(path))
    return freeze(model.to(device))


__all__ = ["CNN10", "WGANVGG", "WGANCritic", "GaussRI", "central_square", "DENOISERS", "DISPLAY_NAME",
           "build_denoiser", "load_denoiser", "read_checkpoint", "load_state_dict_into", "freeze",
           "CheckpointError"]
