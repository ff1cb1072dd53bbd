"""Image distances for invariance synthesis; each returns one value per sample, shape ``(B,)``.

Inputs are ``(B, 1, H, W)`` normalized images (1 unit = 502 HU); every distance lies in [0, 1].

* ``mse``, bounded MSE ``tanh(MSE)``: the MSE for small differences, saturating smoothly at 1 (the
  talk's "MSE bounded by +1"); unlike a hard clamp it keeps a gradient everywhere.
* ``dssim``, ``(1 - SSIM) / 2`` with pytorch-msssim's SSIM (Gaussian window 11 px, sigma 1.5), averaged
  over every pixel of the image mirrored at its edges (scikit-image's full SSIM map; see
  :class:`DSSIM`). The data range is fixed at 1 normalized unit (~502 HU), because the image leaves
  any fixed range during optimisation.
* ``vgg``, VGG16 perceptual distance: channel-normalized features at five layers, squared distance
  averaged over positions and layers, divided by 4 (LPIPS without its learned weights); the feature
  stack runs in bf16 where the hardware multiplies bf16 (:func:`~ctinv_utils.speed.autocast`).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..models.vgg import ct_to_vgg_input, load_vgg
from ..names import DISTANCE_NAMES
from ..speed import autocast, channels_last, resolve_precision

DISTANCES = ("mse", "dssim", "vgg")
DISPLAY_NAME = DISTANCE_NAMES


def bounded_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.tanh(((a - b) ** 2).flatten(1).mean(1))


def check_images(name: str, min_size: int, why: str, *images: torch.Tensor) -> None:
    """Each image ``(B, 1, H, W)`` with H, W >= ``min_size``, all of the same H, W, and batch sizes
    equal or 1 (broadcast). One ``ValueError`` naming the distance and the minimum size otherwise."""
    for x in images:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"the {name} distance takes normalized images of shape (B, 1, H, W), got {got}; "
                             "add batch and channel axes with x[None, None]")
        if min(x.shape[-2:]) < min_size:
            raise ValueError(f"the {name} distance needs images of at least {min_size}x{min_size} px ({why}), got "
                             f"{x.shape[-2]}x{x.shape[-1]}; use a larger crop or patch (>= {min_size} px), or the mse "
                             "distance")
    sizes = {tuple(x.shape[-2:]) for x in images}
    batches = {len(x) for x in images} - {1}
    if len(sizes) > 1 or len(batches) > 1:
        raise ValueError(f"the {name} distance compares images of one shape, got "
                         f"{' and '.join(str(tuple(x.shape)) for x in images)}")


class Distance(nn.Module):
    """``d(a, b) -> (B,)`` for ``(B, 1, H, W)`` normalized images. ``against(a)`` returns ``d(a, .)``
    for a fixed ``a`` ``(1, 1, H, W)``, computing once what depends on ``a`` alone (the VGG features
    of x and f(x) in an invariance run), and broadcasting it to any batch. ``min_size``: the smallest
    side in px the distance is defined on (an image smaller is a ``ValueError`` saying so)."""

    min_size = 1
    display = "image"
    why_min_size = "one pixel"

    def check(self, *images: torch.Tensor) -> None:
        check_images(self.display, self.min_size, self.why_min_size, *images)

    def precision_on(self, device="cpu") -> str:
        """The precision this distance computes in on ``device``: ``"fp32"`` unless a subclass says
        otherwise (VGG16's feature stack: bf16 where the hardware multiplies bf16)."""
        return "fp32"

    def against(self, a: torch.Tensor):
        self.check(a)  # a too-small image fails here, when the synthesis is set up, not mid-run
        return lambda b: self(a.expand(len(b), -1, -1, -1), b)


class BoundedMSE(Distance):
    display = "bounded MSE"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.check(a, b)
        return bounded_mse(a, b)

    def against(self, a: torch.Tensor):
        self.check(a)
        return lambda b: self(a, b)  # broadcasts


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """The normalised 1-D Gaussian ``(size,)`` of pytorch-msssim's SSIM window."""
    c = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(c ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).float()


PADDINGS = ("reflect", "valid")


@functools.lru_cache(maxsize=32)
def _band(n: int, size: int, sigma: float, device: str, dtype: torch.dtype, padding: str = "valid") -> torch.Tensor:
    """The 1-D Gaussian filter as a matrix. ``valid``: ``(n - size + 1, n)``, row i holds the window
    at columns i..i+size-1. ``reflect``: ``(n, n)``, the valid filter of the signal padded by
    ``size // 2`` mirrored samples on each side (scipy's 'reflect', the edge sample repeated: what
    scikit-image's SSIM filters with), folded back onto the n samples it reads."""
    g = gaussian_window(size, sigma)
    if padding == "valid":
        m = torch.zeros(n - size + 1, n, dtype=torch.float32)
        for i in range(n - size + 1):
            m[i, i:i + size] = g
        return m.to(device=device, dtype=dtype)
    r = size // 2
    if n < r:
        raise ValueError(f"reflect padding of {r} px needs at least {r} px, got {n}")
    m = torch.zeros(n, n, dtype=torch.float32)
    for i in range(n):
        for k in range(size):
            j = i + k - r  # the padded signal's sample, mirrored back into [0, n)
            j = -j - 1 if j < 0 else (2 * n - j - 1 if j >= n else j)
            m[i, j] += g[k]
    return m.to(device=device, dtype=dtype)


def gaussian_filter(t: torch.Tensor, size: int, sigma: float, padding: str = "valid") -> torch.Tensor:
    """pytorch-msssim's separable Gaussian filter of ``(B, C, H, W)`` as two banded matrix products
    ``G_H @ t @ G_W^T``: its valid region (``padding="valid"``), or every pixel of a reflect-padded
    image (``"reflect"``, see :func:`_band`). Our own because it is the step's cost and CPU depthwise
    convolutions are slow (timings in the documentation's performance notes); equal to float
    rounding (tested)."""
    h, w = t.shape[-2:]
    dev, dt = str(t.device), t.dtype
    return _band(h, size, sigma, dev, dt, padding) @ t @ _band(w, size, sigma, dev, dt, padding).T


class DSSIM(Distance):
    """``(1 - SSIM) / 2``, computed from one filtering of the stacked maps (b, b^2, a*b) by
    :func:`gaussian_filter`; ``against(a)`` filters a's maps once.

    ``padding="reflect"`` (default): the SSIM map covers every pixel, the image mirrored at its edges
    (scikit-image's SSIM map before it crops; tested). ``"valid"``: pytorch-msssim's definition, the
    map only where the window fits (equal to it to float rounding; tested). Why reflect: with 'valid'
    the pixels within ``win_size // 2`` of the edge enter the distance with a weight down to 0.4 %
    (the Gaussian's tail), while Adam moves every pixel by about its learning rate whatever its
    gradient, so on a small crop x_inv and f(x_inv) wander freely in that ring. On a whole 512 px
    slice (the talk) the ring is air."""

    display = "(1-SSIM)/2"

    def __init__(self, data_range: float = 1.0, win_size: int = 11, win_sigma: float = 1.5, padding: str = "reflect"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
        self.padding = padding
        if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 3 or win_size % 2 == 0:
            raise ValueError(f"win_size must be an odd integer >= 3 (the SSIM window in px), got {win_size!r}")
        for name, v in (("data_range", data_range), ("win_sigma", win_sigma)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
        self.data_range, self.win_size, self.win_sigma = data_range, win_size, win_sigma
        self.min_size = win_size
        self.why_min_size = f"its {win_size} px Gaussian window"

    def _filter(self, t: torch.Tensor) -> torch.Tensor:
        return gaussian_filter(t, self.win_size, float(self.win_sigma), self.padding)

    def _from_moments(self, mu_a, e_aa, mu_b, e_bb, e_ab) -> torch.Tensor:
        c1, c2 = (0.01 * self.data_range) ** 2, (0.03 * self.data_range) ** 2
        mu_ab = mu_a * mu_b
        cs = (2 * (e_ab - mu_ab) + c2) / ((e_aa - mu_a ** 2) + (e_bb - mu_b ** 2) + c2)
        ssim_map = (2 * mu_ab + c1) / (mu_a ** 2 + mu_b ** 2 + c1) * cs
        return (1 - ssim_map.flatten(1).mean(1)) / 2

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.check(a, b)
        a, b = torch.broadcast_tensors(a, b)
        m = self._filter(torch.cat([a, a * a, b, b * b, a * b], 1))
        return self._from_moments(*m.unbind(1))

    def against(self, a: torch.Tensor):
        self.check(a)
        with torch.no_grad():
            mu_a, e_aa = self._filter(torch.cat([a, a * a], 1)).unbind(1)

        def d(b):
            self.check(a, b)
            mu_b, e_bb, e_ab = self._filter(torch.cat([b, b * b, a * b], 1)).unbind(1)
            return self._from_moments(mu_a, e_aa, mu_b, e_bb, e_ab)

        return d


class VGGDistance(Distance):
    LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    display = "VGG16"
    min_size = 16  # relu5_3 comes after four 2x max-poolings: 16 px -> 1 px
    why_min_size = "relu5_3 lies behind four 2x poolings"

    def __init__(self, vgg=None, allow_random: bool = False, seed: int = 0, eps: float = 1e-6,
                 precision: str = "auto"):
        super().__init__()
        self.vgg = channels_last(vgg if vgg is not None else load_vgg("vgg16", allow_random=allow_random, seed=seed))
        self.weights_source = self.vgg.weights_source
        self.eps = eps
        resolve_precision(precision)  # a wrong name fails here, not at the first step
        self.precision = precision

    def precision_on(self, device="cpu") -> str:
        return resolve_precision(self.precision, device)

    def describe(self, device="cpu") -> str:
        """The weights and the precision of the feature stack on ``device``, for notes and captions."""
        return f"{self.weights_source}; features in {self.precision_on(device)}"

    def _raw(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw fp32 features at :attr:`LAYERS` (the stack in bf16 where ``precision`` says so)."""
        with autocast(self.precision, self.vgg, x.device) as vgg:
            f = vgg(ct_to_vgg_input(x), self.LAYERS)
        return {k: v.float() for k, v in f.items()}

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Channel-normalized features at :attr:`LAYERS`."""
        self.check(x)
        return {k: v / (v.norm(dim=1, keepdim=True) + self.eps) for k, v in self._raw(x).items()}

    def _between(self, fa: dict, fb: dict) -> torch.Tensor:
        total = 0.0
        for name in self.LAYERS:
            total = total + ((fa[name] - fb[name]) ** 2).sum(1).flatten(1).mean(1)
        return total / (4 * len(self.LAYERS))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.check(a, b)
        return self._between(self._features(a), self._features(b))

    def against(self, a: torch.Tensor):
        """``d(a, .)`` with a's normalized features computed once. Per layer and pixel the distance is
        ``|fa|^2 + |v|^2/(|v|+eps)^2 - 2 fa.v/(|v|+eps)`` for b's raw features ``v``: the same value as
        ``|fa - v/(|v|+eps)|^2`` (to float rounding), without materialising the normalized features,
        whose element-wise ops and their backward cost about as much as the convolutions."""
        with torch.no_grad():
            fa = self._features(a)  # computed once, not every iteration
            fa_sq = {k: v.square().sum(1) for k, v in fa.items()}

        def d(b):
            self.check(a, b)
            raw = self._raw(b)
            total = 0.0
            for name in self.LAYERS:
                v = raw[name]
                scale = v.norm(dim=1) + self.eps  # (B, h, w)
                per_px = fa_sq[name] + (scale - self.eps).square() / scale.square() - 2 * (fa[name] * v).sum(1) / scale
                total = total + per_px.flatten(1).mean(1)
            return total / (4 * len(self.LAYERS))

        return d


def against(distance: nn.Module, a: torch.Tensor):
    """``d(a, .)`` for a fixed ``a``: the distance's own :meth:`Distance.against` when it has one
    (a user's module may not), else ``d`` with ``a`` repeated to the batch."""
    if isinstance(distance, Distance):
        return distance.against(a)
    return lambda b: distance(a.expand(len(b), -1, -1, -1), b)


def get_distance(name: str, *, vgg_allow_random: bool = False, seed: int = 0, vgg=None,
                 ssim_data_range: float = 1.0, vgg_precision: str = "auto", ssim_padding: str = "reflect") -> nn.Module:
    """Build an image distance by name; ``d(a, b)`` gives one value in [0, 1] per sample.

    Parameters
    ----------
    name : {"mse", "dssim", "vgg"}
        Bounded MSE, (1-SSIM)/2 or the VGG16 perceptual distance (module docstring).
    vgg_allow_random : bool
        VGG16 only: without ImageNet weights, a random VGG16 instead of an error.
    seed : int
        VGG16 only: seeds that random VGG16.
    vgg : VGGFeatures, optional
        VGG16 only: a ready feature stack (:func:`~ctinv_utils.models.vgg.load_vgg`) to share.
    ssim_data_range : float
        (1-SSIM)/2 only: the data range in normalized units (1 = 502 HU).
    vgg_precision : {"auto", "fp32", "bf16"}
        VGG16's feature stack: ``"auto"`` is bf16 where the hardware multiplies bf16, else fp32.
    ssim_padding : {"reflect", "valid"}
        (1-SSIM)/2 only: the SSIM map over every pixel (mirrored edges) or where the window fits.

    Returns
    -------
    torch.nn.Module
        ``d(a, b) -> (B,)`` for ``(B, 1, H, W)`` normalized images (a batch of 1 broadcasts);
        ``d.against(a)`` precomputes what depends on ``a`` alone.

    Raises
    ------
    ValueError
        An unknown name, precision or padding; at call time, images too small for the distance.
    VGGWeightsError
        ``"vgg"`` without ImageNet weights and without ``vgg_allow_random``.

    Examples
    --------
    >>> import torch
    >>> from ctinv_utils import get_distance, hu_to_norm
    >>> a = hu_to_norm(torch.zeros(2, 1, 32, 32))
    >>> get_distance("mse")(a, a + 0.1)                  # tanh(0.01)
    tensor([0.0100, 0.0100])
    """
    if name == "mse":
        return BoundedMSE()
    if name == "dssim":
        return DSSIM(data_range=ssim_data_range, padding=ssim_padding)
    if name == "vgg":
        return VGGDistance(vgg=vgg, allow_random=vgg_allow_random, seed=seed, precision=vgg_precision)
    raise ValueError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)}")
