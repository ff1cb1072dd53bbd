"""Image-domain invariances of a denoiser (the talk's core method).

    x_inv = argmin  d(f(x), f(x_inv)) - alpha * d(x, x_inv),    x_inv0 = x + n,  n ~ N(0, 0.1²)

optimised with Adam (or the batched L-BFGS of :mod:`.lbfgs`). Large ``alpha`` allows a large input
change; the output term keeps f(x_inv) close to f(x). What survives is a perturbation the denoiser
ignores. :func:`stack_runs` puts single-alpha runs side by side as one batch (a continuation over an
alpha grid, where each alpha starts from its neighbour's result: ``start=``).

**Physically valid by default.** Unconstrained, x_inv leaves the values a scanner produces (below
-1024 HU the attenuation would be negative), so every iterate is kept inside ``hu_range=(-1024, 3071)``;
``hu_range=None`` is the talk's unconstrained form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..settings import check_device
from ..models import freeze, module_device
from ..speed import channels_last, fast_input_gradients
from .distances import DISTANCES, against, get_distance
from ..units import PHYSICAL_HU_RANGE, hu_to_norm, norm_difference_to_hu, norm_to_hu
from ..errors import BadArgumentError
from .base import Synthesis, check_denoiser, check_image, check_lr
from .lbfgs import BatchedLBFGS


RANGE_MODES = ("project", "penalty")
#: The optimisers of an invariance: the talk's Adam, or a batched projected L-BFGS.
OPTIMIZERS = ("adam", "lbfgs")


def check_hu_range(hu_range, range_mode: str = "project", range_penalty: float = 10.0):
    """``None`` or a (low, high) pair in HU with low < high; returns it as floats."""
    if range_mode not in RANGE_MODES:
        raise ValueError(f"range_mode must be one of {RANGE_MODES}, got {range_mode!r}")
    if not (isinstance(range_penalty, (int, float)) and math.isfinite(range_penalty) and range_penalty >= 0):
        raise ValueError(f"range_penalty must be a finite number >= 0, got {range_penalty!r}")
    if hu_range is None:
        return None
    try:
        lo, hi = (float(v) for v in hu_range)
    except (TypeError, ValueError):
        raise ValueError(f"hu_range must be None or (low, high) in HU, e.g. {PHYSICAL_HU_RANGE}; got {hu_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"hu_range must be finite with low < high, got {hu_range!r}")
    return lo, hi


def out_of_range_fraction(image_hu: torch.Tensor, hu_range=PHYSICAL_HU_RANGE) -> torch.Tensor:
    """Per sample, the fraction of pixels outside ``hu_range`` (default: the physical CT range)."""
    lo, hi = hu_range
    return ((image_hu < lo) | (image_hu > hi)).flatten(1).float().mean(1)


def check_betas(betas) -> tuple[float, float]:
    """Adam's ``(beta1, beta2)``, each in [0, 1)."""
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise ValueError(f"adam_betas must be two numbers (beta1, beta2), got {betas!r}") from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"adam_betas must each lie in [0, 1), got {betas!r}")
    return b1, b2


#: The largest useful alpha (exclusive). Every distance lies in [0, 1], so the output term can move the
#: loss by at most 1 while the input term moves it by up to alpha: from alpha = 100 on, once the input
#: distance nears 1 (where the input term pushes it), the whole output term is within the 1 % that
#: :meth:`~ctinv_utils.synthesis.base.Synthesis.convergence` tolerates, so a run "converges" however the
#: output moves, and x_inv runs to the HU range's bounds whatever the denoiser does.
MAX_ALPHA = 100.0

_NUMBER = (int, float, np.integer, np.floating)


def _alpha_values(alpha) -> tuple[list, bool]:
    """(the alpha values as given, whether ``alpha`` was one value); ``alpha`` in any numeric form."""
    if isinstance(alpha, (str, bytes)):
        raise BadArgumentError(f"alpha must be a number or a sequence of numbers, got the string {alpha!r}; "
                               "pass e.g. alpha=0.05 or alpha=[0.01, 0.05]")
    if isinstance(alpha, (torch.Tensor, np.ndarray)):
        if alpha.ndim > 1:
            raise BadArgumentError(f"alpha must be one number or a 1-d sequence of numbers, got an array of shape "
                                   f"{tuple(alpha.shape)}; pass e.g. alpha=[0.01, 0.05]")
        if alpha.ndim == 0:
            return [alpha], True
        return list(alpha), False
    if isinstance(alpha, Sequence):
        return list(alpha), False
    return [alpha], True


def _one_alpha(a) -> float:
    """One alpha as a float (exactly its value); numbers, numpy scalars and 0-d arrays or tensors."""
    if isinstance(a, (torch.Tensor, np.ndarray)) and a.ndim == 0:
        a = a.item()
    if isinstance(a, (bool, np.bool_)) or not isinstance(a, _NUMBER):
        what = (f"the string {a!r}" if isinstance(a, (str, bytes))
                else f"the boolean {bool(a)}" if isinstance(a, (bool, np.bool_)) else repr(a))
        raise BadArgumentError(f"alpha must be a number or a sequence of numbers, got {what}; pass e.g. alpha=0.05 "
                               "or alpha=[0.01, 0.05]")
    return float(a)


def check_alpha_values(alpha) -> tuple[list[float], bool]:
    """``alpha`` (a number, numpy scalar, 0-d or 1-d tensor or array, or a list of those) as
    ``(values, single)``: the float values, exactly as given, and whether one value was given.
    Each must be finite, >= 0 and below :data:`MAX_ALPHA`; anything else is one
    :class:`~ctinv_utils.errors.BadArgumentError` naming the value and the fix."""
    vals, single = _alpha_values(alpha)
    if not vals:
        raise BadArgumentError("alpha is an empty sequence; give one value or several")
    out = [_one_alpha(a) for a in vals]
    for a in out:
        if not math.isfinite(a) or a < 0:
            raise BadArgumentError(f"alpha must be finite and >= 0 (it weighs how far x_inv may move), got {a}")
        if a >= MAX_ALPHA:
            raise BadArgumentError(
                f"alpha {a:g} cannot give an invariance: every distance is at most 1, so at alpha >= {MAX_ALPHA:g} the "
                "input term outweighs the whole output term (it stays within the 1 % convergence tolerance) and x_inv "
                f"runs to the HU range's bounds whatever the denoiser does; use alpha < {MAX_ALPHA:g} (the talk's "
                "0.002-0.2)")
    return out, single


def check_alphas(alpha) -> torch.Tensor:
    """The alphas of :func:`check_alpha_values` as a float32 tensor ``(A,)``."""
    return torch.tensor(check_alpha_values(alpha)[0], dtype=torch.float32)


class Invariance(Synthesis):
    """An image-domain invariance of a denoiser at one image, for one or several alphas in one batch.

    Minimises ``d(f(x), f(x_inv)) - alpha * d(x, x_inv)`` from ``x + noise`` (or ``start``) with Adam
    or L-BFGS (:meth:`synthesize`); each alpha has its own objective from the same start, so a batched
    result equals that alpha run alone. ``result``: ``(A, 1, H, W)``; ``history``: per iteration, A values
    each of ``loss``, ``output_distance``, ``input_distance``, ``grad_norm``, ``pixel_change``, ``lr``.

    Parameters
    ----------
    image : torch.Tensor, shape (1, 1, H, W)
        The image x in normalized units (an image in HU is refused).
    denoiser : torch.nn.Module
        Maps ``(B, 1, H, W)`` to the same shape; frozen, its weights are never updated.
    distance : {"mse", "dssim", "vgg"}
        Bounded MSE, (1-SSIM)/2 or VGG16 (:func:`~ctinv_utils.synthesis.distances.get_distance`).
    alpha : float or sequence of float
        Weight(s) of the input term, each in [0, 100); the talk uses 0.002-0.2.
    lr : float
        Adam's learning rate, normalized units per step.
    hu_range : tuple of float or None
        ``(low, high)`` in HU every iterate is kept in (default ``(-1024, 3071)``); None: the
        talk's unconstrained form.
    """

    def __init__(self, image, denoiser: nn.Module, distance: str = "mse", alpha=0.5,
                 init_noise_std: float = 0.1, seed: int = 0, lr: float = 1e-2, device: str | None = None,
                 distance_module: nn.Module | None = None, vgg_allow_random: bool = False,
                 hu_range=PHYSICAL_HU_RANGE, range_mode: str = "project", range_penalty: float = 10.0,
                 adam_betas=(0.9, 0.999), optimizer: str = "adam", start=None):
        """
        Other Parameters
        ----------------
        init_noise_std : float
            Std of the start noise in normalized units (> 0; 0.1 = 50 HU).
        seed : int
            Seed of the start noise (own generator; the global RNG is untouched).
        device : str, optional
            Where to run; default the denoiser's device.
        distance_module : torch.nn.Module, optional
            A ready distance module to use instead of building ``distance`` (e.g. one shared VGG16).
        vgg_allow_random : bool
            For ``"vgg"`` without ImageNet weights: a seeded random VGG16 instead of an error.
        range_mode : {"project", "penalty"}
            Clip after each step (exact), or add ``range_penalty * mean(distance outside)^2``.
        range_penalty : float
            Weight of the penalty (normalized units).
        adam_betas : tuple of float
            ``(0.9, 0.999)``: the talk's Adam; ``(0.9, 0.9)`` forgets the large first gradients sooner.
        optimizer : {"adam", "lbfgs"}
            The talk's Adam, or :class:`~ctinv_utils.synthesis.lbfgs.BatchedLBFGS` (a quasi-Newton
            step per alpha with its own line search; ``lr`` is then its first step's largest pixel
            change, and the HU range is kept exactly).
        start : torch.Tensor, shape (1, 1, H, W) or (A, 1, H, W), optional
            Where x_inv starts instead of ``x`` + noise, in normalized units: e.g. the result of a
            neighbouring alpha (a warm start, as the explorer does for an alpha not computed yet).
            The talk starts every alpha from ``x`` + noise.

        Raises
        ------
        BadArgumentError
            A bad image (shape, NaN, in HU), alpha, ``init_noise_std`` or ``lr``.
        ValueError
            An unknown distance, a bad ``hu_range``, ``range_mode`` or ``adam_betas``, or a denoiser
            that changes the shape.

        Examples
        --------
        >>> import torch
        >>> from ctinv_utils import Invariance, hu_to_norm, load_denoiser
        >>> x = hu_to_norm(torch.full((1, 1, 48, 48), 40.0))
        >>> inv = Invariance(x, load_denoiser("gauss_ri"), "mse", alpha=[0.01, 0.1], lr=0.05)
        >>> inv.synthesize(30, progress=False).shape
        torch.Size([2, 1, 48, 48])
        """
        if distance not in DISTANCES:
            raise ValueError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
        self.alpha_values, self.single_alpha = check_alpha_values(alpha)  # exact, for tables
        self.alphas = torch.tensor(self.alpha_values, dtype=torch.float32)
        try:
            std = float(init_noise_std) if not isinstance(init_noise_std, (bool, np.bool_, str, bytes)) else math.nan
        except (TypeError, ValueError):
            std = math.nan
        if not math.isfinite(std) or std < 0:
            raise BadArgumentError(f"init_noise_std must be a finite number >= 0 (normalized units), got "
                                   f"{init_noise_std!r}")
        check_lr(lr)
        self.adam_betas = check_betas(adam_betas)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        self.optimizer_name = optimizer
        image = check_image(image)
        hu_range = check_hu_range(hu_range, range_mode, range_penalty)
        if start is not None:
            start = torch.as_tensor(start)
            if start.ndim != 4 or start.shape[1:] != image.shape[1:] or start.shape[0] not in (1, len(self.alphas)):
                raise BadArgumentError(f"start must have shape (1, 1, H, W) or ({len(self.alphas)}, 1, H, W) like the "
                                       f"image {tuple(image.shape)}, got {tuple(start.shape)}")
            for one in start:
                check_image(one[None])  # finite, in normalized units
        elif std == 0 and (hu_range is None or (
                float(image.min()) >= float(hu_to_norm(hu_range[0])) and float(image.max()) <= float(hu_to_norm(hu_range[1])))):
            # x_inv = x minimises both distances: both terms have a zero gradient there
            raise BadArgumentError(
                f"init_noise_std={init_noise_std!r} starts x_inv exactly at x, where both distances have a zero "
                "gradient: no iteration could move it; use init_noise_std > 0 (the talk's 0.1)")
        self.device = check_device(device, "Invariance device") if device else module_device(denoiser)
        self.image = image.to(self.device)
        # the state in which a denoiser is analysed (and the fast path): eval mode, no gradients for its
        # weights, channels_last convolutions
        self.denoiser = channels_last(freeze(denoiser))
        self.target = check_denoiser(self.denoiser, self.image)  # f(x)
        self.distance_name, self.seed, self.init_noise_std = distance, int(seed), float(init_noise_std)
        self.distance = distance_module or get_distance(distance, vgg_allow_random=vgg_allow_random, seed=seed)
        self.distance.to(self.device)
        self._d_target, self._d_image = against(self.distance, self.target), against(self.distance, self.image)
        self.hu_range = check_hu_range(hu_range, range_mode, range_penalty)
        self.range_mode, self.range_penalty = range_mode, float(range_penalty)
        self._bounds = None if self.hu_range is None else tuple(float(hu_to_norm(v)) for v in self.hu_range)
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(self.image.shape, generator=gen) * self.init_noise_std
        A = len(self.alphas)
        self.warm_start = start is not None
        first = self.image + noise.to(self.device) if start is None else start.detach().float().to(self.device)
        self.param = first.repeat(A // len(first), 1, 1, 1).clone()
        if self._bounds is not None and self.range_mode == "project":
            self.param.clamp_(*self._bounds)  # the start is physical too
        self.param.requires_grad_(True)
        self.alphas = self.alphas.to(self.device)
        self._init_state(lr, "output_distance", "input_distance")

    def _desc(self) -> str:
        name = getattr(self.denoiser, "display_name", type(self.denoiser).__name__)
        return f"Invariance {name}/{self.distance_name} α={','.join(f'{a:g}' for a in self.alpha_values)}"

    def _make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        self.lr = lr
        if self.optimizer_name == "lbfgs":
            bounds = self._bounds if self.range_mode == "project" else None
            return BatchedLBFGS([self.param], lr=lr, bounds=bounds)
        return torch.optim.Adam([self.param], lr=lr, betas=self.adam_betas)

    def objective(self):
        return self._objective_at(self.param, self.alphas)

    def _closure(self, x: torch.Tensor, index: torch.Tensor):
        return self._objective_at(x, self.alphas[index])

    def _objective_at(self, x: torch.Tensor, alphas: torch.Tensor):
        """Per sample of ``x`` ``(k, 1, H, W)`` with its alphas ``(k,)``: the loss and both distances."""
        with fast_input_gradients(self.denoiser):
            out = self.denoiser(x)
        d_out, d_in = self._d_target(out), self._d_image(x)
        loss = d_out - alphas * d_in
        if self._bounds is not None and self.range_mode == "penalty":
            lo, hi = self._bounds
            outside = torch.relu(lo - x) + torch.relu(x - hi)
            loss = loss + self.range_penalty * outside.pow(2).flatten(1).mean(1)
        return loss, {"output_distance": d_out, "input_distance": d_in}

    def _project(self) -> None:
        if self._bounds is not None and self.range_mode == "project":
            self.param.clamp_(*self._bounds)

    @property
    def iterations_per_alpha(self) -> list[int]:
        """Iterations each alpha ran (all the same in one batch; each run's own after :func:`stack_runs`)."""
        return list(getattr(self, "run_iterations", None) or [self.iteration] * len(self.alpha_values))

    def final_loss(self) -> list[float]:
        """Each alpha's last recorded loss (the end of its own run after :func:`stack_runs`)."""
        return [[v for v in column if v == v][-1] for column in zip(*self.history["loss"])]

    @torch.no_grad()
    def outputs(self) -> torch.Tensor:
        """The denoised current x_inv, f(x_inv): ``(A, 1, H, W)`` in normalized units."""
        return self.denoiser(self.param.detach())

    @torch.no_grad()
    def summary(self) -> list[dict]:
        """Per alpha, what the current x_inv changed: both distances and the changes in HU.

        Returns
        -------
        list of dict
            One row per alpha: ``alpha``, ``input_distance`` d(x, x_inv), ``output_distance``
            d(f(x), f(x_inv)), ``input_rms_hu`` and ``input_max_hu`` (x_inv - x), ``output_rms_hu``
            (f(x_inv) - f(x)), ``out_of_range_fraction`` (pixels outside -1024..3071 HU), ``min_hu``
            and ``max_hu`` of x_inv.

        Examples
        --------
        >>> rows = inv.summary()
        >>> [r["alpha"] for r in rows], "output_rms_hu" in rows[0]
        ([0.01, 0.1], True)
        """
        out = self.outputs()
        d_out, d_in = self._d_target(out).cpu(), self._d_image(self.result).cpu()
        dx = norm_difference_to_hu(self.result - self.image).flatten(1)
        dy = norm_difference_to_hu(out - self.target).flatten(1)
        x_inv_hu = norm_to_hu(self.result)
        outside = out_of_range_fraction(x_inv_hu).cpu()
        return [{"alpha": float(a), "input_distance": float(d_in[i]), "output_distance": float(d_out[i]),
                 "input_rms_hu": float(dx[i].pow(2).mean().sqrt()), "input_max_hu": float(dx[i].abs().max()),
                 "output_rms_hu": float(dy[i].pow(2).mean().sqrt()), "out_of_range_fraction": float(outside[i]),
                 "min_hu": float(x_inv_hu[i].min()), "max_hu": float(x_inv_hu[i].max())}
                for i, a in enumerate(self.alpha_values)]

    @torch.no_grad()
    def figure_arrays(self) -> dict[str, np.ndarray]:
        """Everything a figure needs, in HU, so that it can be drawn without the denoiser.

        Returns
        -------
        dict of numpy.ndarray
            ``x``, ``f_x`` ``(H, W)`` and ``x_inv``, ``f_x_inv`` ``(A, H, W)``, float32 in HU;
            ``alphas`` ``(A,)``; ``history_loss``, ``history_output_distance`` and
            ``history_input_distance`` ``(T, A)`` after T iterations.

        Examples
        --------
        >>> arrays = inv.figure_arrays()
        >>> arrays["x_inv"].shape                  # (A, H, W)
        (2, 48, 48)
        """
        def hu(t):
            return norm_to_hu(t.detach().cpu().double().numpy()).astype(np.float32)

        out = {"x": hu(self.image[0, 0]), "f_x": hu(self.target[0, 0]), "x_inv": hu(self.result[:, 0]),
               "f_x_inv": hu(self.outputs()[:, 0]), "alphas": np.asarray(self.alpha_values, dtype=np.float64)}
        for k in ("loss", "output_distance", "input_distance"):
            out[f"history_{k}"] = np.asarray(self.history[k], dtype=np.float64).reshape(-1, len(self.alpha_values))
        return out

    def _state(self) -> dict:
        return {"image": self.image.cpu(), "target": self.target.cpu(), "alphas": self.alphas.cpu(), "alpha_values": self.alpha_values,
                "distance": self.distance_name, "seed": self.seed, "init_noise_std": self.init_noise_std,
                "lr": self.lr, "single_alpha": self.single_alpha,
                "hu_range": list(self.hu_range) if self.hu_range else None, "range_mode": self.range_mode,
                "range_penalty": self.range_penalty, "adam_betas": list(self.adam_betas),
                "optimizer_name": self.optimizer_name, "warm_start": self.warm_start}

    @classmethod
    def load(cls, path: str | Path, denoiser: nn.Module, device: str | None = None,
             distance_module: nn.Module | None = None, vgg_allow_random: bool = False) -> "Invariance":
        """Restore a run written by :meth:`save`, to inspect it or continue it exactly.

        Parameters
        ----------
        path : str or pathlib.Path
            The file :meth:`save` wrote.
        denoiser : torch.nn.Module
            The denoiser of the run; it must reproduce the stored f(x).
        device : str, optional
            Where to run; default the denoiser's device.
        distance_module : torch.nn.Module, optional
            A ready distance module (e.g. one shared VGG16).
        vgg_allow_random : bool
            For ``"vgg"`` without ImageNet weights: a seeded random VGG16.

        Returns
        -------
        Invariance

        Raises
        ------
        CheckpointError
            A missing, damaged or foreign file.
        CTInvError
            The file holds another kind of run, or ``denoiser`` does not reproduce its f(x).

        Examples
        --------
        >>> inv = Invariance.load("cnn10_mse.pt", load_denoiser("cnn10", "cnn10.pt"))
        >>> x_inv = inv.synthesize(500)        # continues where the saved run stopped
        """
        st = cls._read(path, cls.__name__)
        alpha = st["alpha_values"][0] if st["single_alpha"] else st["alpha_values"]
        inv = cls(st["image"], denoiser, st["distance"], alpha, st["init_noise_std"], st["seed"], st["lr"],
                  device, distance_module, vgg_allow_random, st["hu_range"], st["range_mode"], st["range_penalty"],
                  st.get("adam_betas", (0.9, 0.999)),  # saved before betas were a choice: the default
                  st.get("optimizer_name", "adam"))
        cls._check_same_output(st["target"], inv.target, path)
        inv._restore(st, st["lr"])
        return inv


def tradeoff_curve(inv: Invariance, in_hu: bool = False) -> tuple[list[float], list[float], list[float]]:
    """The alpha trade-off of a batched run: how much the input can change before the output notices.

    Parameters
    ----------
    inv : Invariance
        A run over an alpha grid.
    in_hu : bool
        Report the RMS changes in HU instead of the distances.

    Returns
    -------
    alphas : list of float
        The run's alphas.
    input_change : list of float
        Per alpha, d(x, x_inv), or with ``in_hu`` the RMS of x_inv - x in HU.
    output_change : list of float
        Per alpha, d(f(x), f(x_inv)), or with ``in_hu`` the RMS of f(x_inv) - f(x) in HU.

    Examples
    --------
    >>> from ctinv_utils import tradeoff_curve
    >>> alphas, d_in_hu, d_out_hu = tradeoff_curve(inv, in_hu=True)
    >>> alphas
    [0.01, 0.1]
    """
    rows = inv.summary()
    key_in, key_out = ("input_rms_hu", "output_rms_hu") if in_hu else ("input_distance", "output_distance")
    return [r["alpha"] for r in rows], [r[key_in] for r in rows], [r[key_out] for r in rows]


def stack_runs(runs: Sequence[Invariance]) -> Invariance:
    """Runs of one image, denoiser and distance at different alphas as one batched
    :class:`Invariance` (as if its alphas had run together), e.g. a continuation over an alpha grid.

    Each run keeps its own result and history; a history shorter than the longest is NaN after its
    run ended (:meth:`~ctinv_utils.synthesis.base.Synthesis.convergence` judges each alpha over its
    own iterations). The stacked object has no optimizer state: a further ``synthesize`` continues
    every alpha together with a fresh Adam.

    Parameters
    ----------
    runs : sequence of Invariance
        Single-alpha runs with the same image, denoiser, distance and settings.

    Returns
    -------
    Invariance
        ``result`` ``(A, 1, H, W)`` in the order of ``runs``; ``iteration`` the longest run's.
    """
    if not runs or any(len(r.alpha_values) != 1 for r in runs):
        raise BadArgumentError("stack_runs takes one or more single-alpha runs")
    first = runs[0]
    if any(r.distance_name != first.distance_name or not torch.equal(r.image, first.image) for r in runs):
        raise BadArgumentError("stack_runs: every run must be of the same image and distance")
    stacked = Invariance(first.image, first.denoiser, first.distance_name, [r.alpha_values[0] for r in runs],
                         first.init_noise_std, first.seed, first.lr, str(first.device), first.distance,
                         hu_range=first.hu_range, range_mode=first.range_mode, range_penalty=first.range_penalty,
                         adam_betas=first.adam_betas, optimizer=first.optimizer_name,
                         start=torch.cat([r.result for r in runs]))
    stacked.warm_start = any(r.warm_start for r in runs)
    stacked.iteration = max(r.iteration for r in runs)
    nan = float("nan")
    for key in stacked.history:
        if key == "lr":
            stacked.history[key] = [first.lr] * stacked.iteration
            continue
        columns = [[row[0] if isinstance(row, list) else row for row in r.history.get(key, [])] for r in runs]
        stacked.history[key] = [[col[t] if t < len(col) else nan for col in columns] for t in range(stacked.iteration)]
    stacked.run_iterations = [r.iteration for r in runs]
    return stacked
