"""The state in which a denoiser is analysed: frozen, and where it lives."""

from __future__ import annotations

from torch import nn


def freeze(model: nn.Module) -> nn.Module:
    """Put a model in the state in which a denoiser is analysed: ``eval()``, no weight gradients.

    Eval mode fixes what dropout and batch norm do; without weight gradients a synthesis computes
    input gradients only and can never update the weights.

    Parameters
    ----------
    model : torch.nn.Module
        Frozen in place.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Examples
    --------
    >>> from ctinv_utils import CNN10, freeze
    >>> f = freeze(CNN10())
    >>> f.training, any(p.requires_grad for p in f.parameters())
    (False, False)
    """
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def module_device(module: nn.Module) -> str:
    """Where a module lives (first parameter or buffer); CPU for one without tensors."""
    tensors = [*module.parameters(), *module.buffers()]
    return str(tensors[0].device) if tensors else "cpu"
