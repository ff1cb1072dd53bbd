"""ldct-benchmark's published denoisers (Eulig et al., PyPI ``ldct-benchmark`` 0.0.15), rebuilt here.

Each class has ldct-benchmark's parameter names and constructor arguments, so its published
checkpoints load unchanged; none imports ldctbench. Each maps ``(B, 1, H, W)`` normalized images
(the ``meanstd`` normalization of every published model, :func:`~ctinv_utils.units.hu_to_norm`) to
the same shape. ``cnn10`` (:class:`~..cnn10.CNN10`), ``wganvgg`` (:class:`~..wganvgg.WGANVGG`) and
``resnet`` (:class:`.ResNet`, 128 channels x 10) take any size; ``redcnn`` (:class:`.REDCNN`, 96
channels) and ``dugan`` (:class:`.DUGANGenerator`, a RED-CNN) need H, W >= 21, ``qae``
(:class:`.QAE`) H, W >= 3, ``transct`` (:class:`.TransCT`) 512 x 512 only. The bilateral filter is
not ported (it needs ldct-benchmark's compiled CUDA extension); asking for it says so.

``load_published("redcnn")`` loads the verified file that ``python -m ctinv_utils hub download
redcnn`` fetched (:mod:`ctinv_utils.models.ldctbench.hub`); ``load_denoiser("ldctbench:redcnn")`` is
the same call through the common registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from . import hub
from ...errors import CTInvError
from ...names import LDCTBENCH_PREFIX, display_name
from ..checkpoints import load_state_dict_into, read_checkpoint
from ..cnn10 import CNN10
from ..state import freeze
from ..wganvgg import WGANVGG
from .qae import QAE
from .redcnn import REDCNN, DUGANGenerator
from .resnet import ResNet
from .sizes import InputSizeError
from .transct import GaussianBlur, TransCT


class PublishedModelError(CTInvError):
    """A published method that is unknown or not available in ctinv."""


@dataclass(frozen=True)
class Published:
    """One published denoiser: how to build it and where its checkpoint comes from."""

    method: str
    cls: type[nn.Module]
    kwargs: dict = field(default_factory=dict)
    display: str = ""
    checksum: str = ""  # SHA-256 (hex) of the published file
    url: str = ""


CLASSES: dict[str, type[nn.Module]] = {"cnn10": CNN10, "wganvgg": WGANVGG, "redcnn": REDCNN, "resnet": ResNet,
                                       "qae": QAE, "dugan": DUGANGenerator, "transct": TransCT}


def _registry() -> dict[str, Published]:
    table = hub.published_checkpoints()
    return {m: Published(m, cls, dict(table[m]["kwargs"]), display_name(LDCTBENCH_PREFIX + m),
                         table[m]["checksum"], table[m]["url"]) for m, cls in CLASSES.items()}


#: ``{method: Published}`` for every published method ctinv can run (kwargs, checksum and URL from
#: ldct-benchmark's ``checkpoints.json``).
PUBLISHED: dict[str, Published] = _registry()


def _method(method: str) -> str:
    """``"redcnn"`` or ``"ldctbench:redcnn"`` -> ``"redcnn"``, checked."""
    m = method[len(LDCTBENCH_PREFIX):] if method.startswith(LDCTBENCH_PREFIX) else method
    if m in hub.NOT_PORTED:
        raise PublishedModelError(f"ldctbench:{m}: {hub.NOT_PORTED[m]}")
    if m not in PUBLISHED:
        raise PublishedModelError(f"unknown ldct-benchmark method {method!r}; choose one of "
                                  f"{[LDCTBENCH_PREFIX + k for k in sorted(PUBLISHED)]} (bilateral is not ported)")
    return m


def build_published(method: str) -> nn.Module:
    """An untrained network of ``method`` (``"redcnn"`` or ``"ldctbench:redcnn"``) with the published kwargs."""
    rec = PUBLISHED[_method(method)]
    return rec.cls(**rec.kwargs)


def load_published(method: str, path: str | Path | None = None, device: str = "cpu") -> nn.Module:
    """The published network of ``method``, frozen and in ``eval()`` mode on ``device``.

    ``path``: a checkpoint file (ldct-benchmark's ``{"args", "iteration", "model_state_dict"}`` or a
    plain state dict, loaded with ``weights_only=True``). Without it, the verified file in the hub
    cache is used; if there is none the error names the file, its URL and the folder to put it in.
    Nothing is downloaded here (``python -m ctinv_utils hub download <method>`` does that)."""
    m = _method(method)
    if path is None:
        path = hub.checkpoint_path(m)
    model = build_published(m)
    load_state_dict_into(model, read_checkpoint(path), str(path))
    return freeze(model.to(device))


__all__ = ["PUBLISHED", "Published", "CLASSES", "build_published", "load_published", "PublishedModelError",
           "InputSizeError", "REDCNN", "DUGANGenerator", "ResNet", "QAE", "TransCT", "GaussianBlur"]
