"""Input checks shared by the ldct-benchmark networks: one clear error instead of a shape error deep
inside a convolution."""

from __future__ import annotations

import torch

from ...errors import CTInvError


class InputSizeError(CTInvError, ValueError):
    """An input a network cannot process: wrong rank, channels or image size."""


def check_input(x: torch.Tensor, network: str, *, min_size: int = 1, exact: int | None = None) -> None:
    """Raise :class:`InputSizeError` unless ``x`` is ``(B, 1, H, W)`` with ``H, W >= min_size`` (or, for
    ``exact``, ``H == W == exact``). ``network`` is the display name used in the message."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise InputSizeError(f"{network} takes (B, 1, H, W) normalized images, got shape {tuple(x.shape)}; "
                             "add batch and channel axes with x[None, None]")
    h, w = x.shape[-2:]
    if exact is not None and (h, w) != (exact, exact):
        raise InputSizeError(f"{network} works on {exact}x{exact} images only, got {h}x{w}; "
                             f"crop or pad the slice to {exact}x{exact}")
    if min(h, w) < min_size:
        raise InputSizeError(f"{network} needs images of at least {min_size}x{min_size} pixels, got {h}x{w}; "
                             "use a larger crop")
