"""VGG16 / VGG19 feature stacks without torchvision, loading torchvision's ImageNet weights.

The ``features`` Sequential has torchvision's layout, so the state-dict keys (``features.0.weight``
...) are torchvision's and its published files load directly. Weights are looked up, in order, at
an explicit path, ``$CTINV_VGG16_WEIGHTS`` / ``$CTINV_VGG19_WEIGHTS``, and torch.hub's cache
(``<torch hub dir>/checkpoints/``). Nothing is downloaded unless asked (``download=True`` or
``python -m ctinv_utils vgg download vgg16 vgg19``). Files load with ``weights_only=True`` and, when
the file name is torchvision's, its SHA-256 is checked against the prefix in that name.

Why our own and not torchvision's: the torchvision paired with the CPU build of torch does not
import beside it (its wheel is built against CUDA torch), and the VGG definition is 20 lines.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import CTInvError
from ..provenance import sha256_file
from ..units import norm_to_hu
from .checkpoints import CheckpointError, load_file

CONFIGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}
RANDOM_INIT_LABEL = "VGG: random init (ImageNet weights unavailable)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsError(CTInvError):
    """ImageNet VGG weights are missing, corrupt or do not fit."""


def layer_names(arch: str) -> list[str]:
    """Names of the ``features`` modules: conv1_1, relu1_1, ..., pool1, ... (torchvision order)."""
    names, block, idx = [], 1, 1
    for v in CONFIGS[arch]:
        if v == "M":
            names.append(f"pool{block}")
            block, idx = block + 1, 1
        else:
            names += [f"conv{block}_{idx}", f"relu{block}_{idx}"]
            idx += 1
    return names


class VGGFeatures(nn.Module):
    """VGG ``features`` stack. ``forward(x, layers)`` takes ``(B, 3, H, W)`` ImageNet-normalized
    input and returns ``{layer_name: activation}``, stopping after the deepest requested layer."""

    def __init__(self, arch: str = "vgg16"):
        super().__init__()
        if arch not in CONFIGS:
            raise ValueError(f"unknown VGG {arch!r}; choose one of {sorted(CONFIGS)}")
        self.arch = arch
        mods: list[nn.Module] = []
        c_in = 3
        for v in CONFIGS[arch]:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        self.features = nn.Sequential(*mods)
        self.names = layer_names(arch)
        self.weights_source = "untrained"

    def forward(self, x: torch.Tensor, layers=("relu4_3",)) -> dict[str, torch.Tensor]:
        unknown = set(layers) - set(self.names)
        if unknown:
            raise ValueError(f"unknown {self.arch} layers {sorted(unknown)}; e.g. relu2_2, relu4_3, relu5_4")
        last = max(self.names.index(n) for n in layers)
        out = {}
        for i in range(last + 1):
            x = self.features[i](x)
            if self.names[i] in layers:
                out[self.names[i]] = x
        return out


def ct_to_vgg_input(x_norm: torch.Tensor) -> torch.Tensor:
    """Normalized CT ``(B, 1, H, W)`` -> ImageNet-normalized ``(B, 3, H, W)``.

    HU are mapped linearly with [-1024, 1024] HU -> [0, 1] and *not clipped*: soft tissue lands
    mid-range where VGG's filters see contrast, and a perturbation keeps its gradient anywhere (a
    clipping window would zero it outside the window). Grayscale is repeated to three channels and
    standardised with ImageNet's mean and std, as the published weights expect."""
    v = (norm_to_hu(x_norm) + 1024.0) / 2048.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=x_norm.dtype, device=x_norm.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x_norm.dtype, device=x_norm.device).view(1, 3, 1, 1)
    return (v.expand(-1, 3, -1, -1) - mean) / std


def _hub_file(arch: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / URLS[arch].rsplit("/", 1)[1]


def _check_sha256(path: Path, arch: str) -> None:
    name = URLS[arch].rsplit("/", 1)[1]
    if path.name != name:
        return  # a user's own file: no known hash
    prefix = name.rsplit("-", 1)[1].split(".")[0]
    digest = sha256_file(path)
    if not digest.startswith(prefix):
        raise VGGWeightsError(f"{path}: SHA-256 {digest[:12]}... does not match torchvision's {prefix}; "
                              "the file is corrupt or not the published one: delete it and download again")


def weights_path(arch: str, path: str | Path | None = None) -> Path | None:
    """The first existing weights file for ``arch`` (explicit path, environment variable, hub cache)."""
    env = os.environ.get(f"CTINV_{arch.upper()}_WEIGHTS")
    for cand in (path, env, _hub_file(arch)):
        if cand and Path(cand).expanduser().is_file():
            return Path(cand).expanduser()
    if path:
        raise VGGWeightsError(f"VGG weights file {path} does not exist; fix the path")
    return None


def download_weights(arch: str) -> Path:
    """Download torchvision's ImageNet weights into torch.hub's cache (needs internet)."""
    try:
        torch.hub.load_state_dict_from_url(URLS[arch], progress=True, check_hash=True, map_location="cpu",
                                           weights_only=True)
    except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, hash mismatch
        raise VGGWeightsError(f"could not download {URLS[arch]} ({exc}); without internet, copy the file to "
                              f"{_hub_file(arch)} or set CTINV_{arch.upper()}_WEIGHTS") from exc
    return _hub_file(arch)


def load_vgg(arch: str = "vgg16", path: str | Path | None = None, allow_random: bool = False,
             download: bool = False, seed: int = 0, device: str = "cpu") -> VGGFeatures:
    """Load a frozen VGG16 or VGG19 feature stack with torchvision's ImageNet weights.

    Looked up at ``path``, ``$CTINV_VGG16_WEIGHTS`` / ``$CTINV_VGG19_WEIGHTS``, then torch.hub's cache
    (a torchvision file name's SHA-256 is checked); ``model.weights_source`` names them for captions.

    Parameters
    ----------
    arch : {"vgg16", "vgg19"}
        The network (VGG16: the perceptual distance; VGG19: WGAN-VGG's perceptual loss).
    path : str or pathlib.Path, optional
        A weights file in torchvision's layout (``features.0.weight`` ...).
    allow_random : bool
        Without weights, warn and use a seeded random init (``weights_source`` is then
        :data:`RANDOM_INIT_LABEL`, shown in every table, title and manifest).
    download : bool
        Without weights, download them into torch.hub's cache (needs internet).
    seed : int
        Seeds the random init.
    device : str
        Where to put the model.

    Returns
    -------
    VGGFeatures
        ``model(x, layers)`` maps ``(B, 3, H, W)`` ImageNet-normalized input (:func:`ct_to_vgg_input`)
        to ``{layer name: activation}``.

    Raises
    ------
    VGGWeightsError
        No weights (and neither ``download`` nor ``allow_random``), a failed download, a file that
        is damaged, fails its checksum or holds another architecture.

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import load_vgg
    >>> from ctinv_utils.models.vgg import ct_to_vgg_input
    >>> vgg = load_vgg("vgg16", allow_random=True)       # ImageNet weights when present
    >>> vgg(ct_to_vgg_input(torch.zeros(1, 1, 32, 32)), layers=("relu2_2",))["relu2_2"].shape
    torch.Size([1, 128, 16, 16])
    """
    model = VGGFeatures(arch)
    found = weights_path(arch, path)
    if found is None and download:
        found = download_weights(arch)
    if found is None:
        if not allow_random:
            raise VGGWeightsError(
                f"ImageNet {arch.upper()} weights not found (looked at ${f'CTINV_{arch.upper()}_WEIGHTS'} and "
                f"{_hub_file(arch)}); download them once with `python -m ctinv_utils vgg download {arch}`, or copy "
                f"{URLS[arch]} to that path")
        warnings.warn(f"{RANDOM_INIT_LABEL}: using a seeded random {arch.upper()}", stacklevel=2)
        gen = torch.Generator().manual_seed(seed)
        for m in model.features:
            if isinstance(m, nn.Conv2d):  # torchvision's VGG init
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                with torch.no_grad():
                    m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                    m.bias.zero_()
        model.weights_source = RANDOM_INIT_LABEL
    else:
        _check_sha256(found, arch)
        try:
            state = load_file(found, f"{arch.upper()} weights file", f"delete it and download it again "
                              f"(python -m ctinv_utils vgg download {arch}), or copy {URLS[arch]} there")
        except CheckpointError as exc:
            raise VGGWeightsError(str(exc)) from None
        feats = {k: v for k, v in state.items() if k.startswith("features.")} if isinstance(state, dict) else {}
        own = model.state_dict()
        if set(feats) != set(own) or any(feats[k].shape != own[k].shape for k in own):
            raise VGGWeightsError(f"{found} does not hold {arch.upper()} features weights in torchvision's layout "
                                  f"(keys like features.0.weight); is it another architecture?")
        model.load_state_dict(feats)
        model.weights_source = f"ImageNet ({found.name})"
    model.eval().requires_grad_(False)
    return model.to(device)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "download" or any(a not in URLS for a in args[1:]):
        print("usage: python -m ctinv_utils vgg download vgg16 [vgg19]", file=sys.stderr)
        return 2
    for arch in args[1:]:
        print(f"{arch}: {download_weights(arch)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
