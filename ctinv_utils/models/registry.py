"""The talk's three denoisers by name, each ``(B, 1, H, W)`` normalized in and out.

``build_denoiser(name)`` makes an untrained one; ``load_denoiser(name, path)`` loads a checkpoint
(``torch.load(..., weights_only=True)``: a checkpoint is untrusted input) and returns it in eval
mode with frozen parameters.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..names import DENOISER_NAMES
from ..settings import check_device
from .checkpoints import CheckpointError, load_state_dict_into, read_checkpoint
from .cnn10 import CNN10
from .gauss_ri import GaussRI
from .ldctbench import build_published, load_published
from .state import freeze
from .wganvgg import WGANVGG

DENOISERS: dict[str, type[nn.Module]] = {"cnn10": CNN10, "wganvgg": WGANVGG, "gauss_ri": GaussRI}
#: Display names for tables and titles.
DISPLAY_NAME = DENOISER_NAMES


def build_denoiser(name: str) -> nn.Module:
    """Build an untrained denoiser by name (to train, or to load weights into).

    Parameters
    ----------
    name : str
        ``"cnn10"``, ``"wganvgg"``, ``"gauss_ri"`` (parameter-free) or ``"ldctbench:<method>"`` (a
        published ldct-benchmark network with its published constructor arguments).

    Returns
    -------
    torch.nn.Module
        Maps ``(B, 1, H, W)`` normalized images to the same shape; in training mode.

    Raises
    ------
    ValueError
        An unknown name.
    PublishedModelError
        An unknown or unported ``ldctbench:`` method.

    Examples
    --------
    >>> from ctinv_utils import build_denoiser
    >>> type(build_denoiser("cnn10")).__name__
    'CNN10'
    """
    if name.startswith("ldctbench:"):
        return build_published(name)
    try:
        return DENOISERS[name]()
    except KeyError:
        raise ValueError(f"unknown denoiser {name!r}; choose one of {sorted(DENOISERS)} "
                         "or ldctbench:<method> (see ctinv_utils.models.ldctbench)") from None


def load_denoiser(name: str, path: str | Path | None = None, device: str = "cpu") -> nn.Module:
    """Load a denoiser, frozen (eval mode, no weight gradients): the state in which it is analysed.

    Checkpoints are read with ``torch.load(..., weights_only=True)``: a checkpoint is untrusted input.

    Parameters
    ----------
    name : str
        ``"gauss_ri"`` (needs no checkpoint), ``"cnn10"``, ``"wganvgg"`` or ``"ldctbench:<method>"``.
    path : str or pathlib.Path, optional
        The checkpoint: ours (``{"model": state_dict}``), ldct-benchmark's, or a plain state dict.
        Needed for CNN-10 and WGAN-VGG; for ``ldctbench:<method>`` None means the verified
        published file in the hub cache (``python -m ctinv_utils hub download <method>`` fetches it).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present, else the CPU).

    Returns
    -------
    torch.nn.Module
        Maps ``(B, 1, H, W)`` normalized images to the same shape.

    Raises
    ------
    CheckpointError
        No ``path`` where one is needed; a missing, damaged or foreign checkpoint; weights that do
        not fit the network (names the first mismatching layer).
    DeviceError
        A device this machine does not have.
    HubError
        ``ldctbench:<method>`` without ``path`` and without a verified downloaded file.

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import hu_to_norm, load_denoiser
    >>> f = load_denoiser("gauss_ri")
    >>> y = f(hu_to_norm(torch.zeros(1, 1, 64, 64)))   # (1, 1, 64, 64), normalized
    >>> cnn = load_denoiser("cnn10", "cnn10.pt")        # doctest: +SKIP
    """
    device = check_device(device, "load_denoiser device")
    if name.startswith("ldctbench:"):
        return load_published(name, path, device)
    model = build_denoiser(name)
    if name != "gauss_ri":
        if path is None:
            raise CheckpointError(f"{name} needs a checkpoint path; train it in notebook 02 first")
        load_state_dict_into(model, read_checkpoint(path), str(path))
    return freeze(model.to(device))
