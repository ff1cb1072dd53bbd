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
    """An untrained denoiser: ``cnn10``, ``wganvgg``, ``gauss_ri`` or ``ldctbench:<method>``."""
    if name.startswith("ldctbench:"):
        return build_published(name)
    try:
        return DENOISERS[name]()
    except KeyError:
        raise ValueError(f"unknown denoiser {name!r}; choose one of {sorted(DENOISERS)} "
                         "or ldctbench:<method> (see ctinv_utils.models.ldctbench)") from None


def load_denoiser(name: str, path: str | Path | None = None, device: str = "cpu") -> nn.Module:
    """A frozen denoiser: Gauss+RI needs no checkpoint; CNN-10 / WGAN-VGG load ``path``;
    ``ldctbench:<method>`` loads ``path`` or, without one, the verified published file from the hub
    cache (``python -m ctinv_utils hub download <method>`` fetches it). ``device``: 'cpu', 'cuda[:N]'
    or 'auto'; one that this machine lacks is a :class:`~ctinv_utils.settings.DeviceError`."""
    device = check_device(device, "load_denoiser device")
    if name.startswith("ldctbench:"):
        return load_published(name, path, device)
    model = build_denoiser(name)
    if name != "gauss_ri":
        if path is None:
            raise CheckpointError(f"{name} needs a checkpoint path; train it in notebook 02 first")
        load_state_dict_into(model, read_checkpoint(path), str(path))
    return freeze(model.to(device))
