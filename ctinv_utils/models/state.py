"""The state in which a denoiser is analysed: frozen, and where it lives."""

from __future__ import annotations

from torch import nn


def freeze(model: nn.Module) -> nn.Module:
    """``eval()`` and ``requires_grad_(False)``: the state in which a denoiser is analysed."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def module_device(module: nn.Module) -> str:
    """Where a module lives (first parameter or buffer); CPU for one without tensors."""
    tensors = [*module.parameters(), *module.buffers()]
    return str(tensors[0].device) if tensors else "cpu"
