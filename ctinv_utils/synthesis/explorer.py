"""Interactive explorer of invariances: alpha (log slider), distance, denoiser and HU window.

The callbacks are plain methods (``result``, ``panels``, ``figure``) that tests and headless runs
call without a browser; ``widget()`` only wires ipywidgets to them. Results precomputed for a grid
of alphas show instantly; any other value is computed once (tqdm bar) and cached in memory and,
with ``cache_dir``, on disk: each file with its SHA-256 beside it (``<file>.sha256``), checked at every
load; a damaged, changed or unrecorded file is reported, deleted and computed again.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from .distances import get_distance
from ..errors import BadArgumentError
from .invariances import Invariance, check_alpha_values, check_betas
from .grid import rate_for
from ..provenance import config_hash
from ..names import display_name
from ..units import PHYSICAL_HU_RANGE, WINDOWS, hu_to_norm, norm_to_hu


def _tensor_sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def module_sha(module: torch.nn.Module) -> str:
    """Checksum of a module's class and state (weights and buffers): what determines its outputs."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(_tensor_sha(v).encode())
    return h.hexdigest()


class InvarianceExplorer:
    """``image``: ``(1, 1, H, W)`` normalized; ``denoisers``: {name: module}; ``results``:
    {(denoiser, distance, alpha): x_inv (H, W) normalized numpy}."""

    def __init__(self, image: torch.Tensor, denoisers: dict, distances=("mse", "dssim", "vgg"),
                 alphas=(0.1, 0.5, 2.0), results: dict | None = None, max_iter: int = 200, lr: float | dict = 1e-2,
                 seed: int = 0, cache_dir: str | Path | None = None, distance_modules: dict | None = None,
                 progress: bool = True, lr_schedule: str = "constant", hu_range=PHYSICAL_HU_RANGE,
                 adam_betas=(0.9, 0.999), synthesize_kw: dict | None = None):
        """``lr``: one rate, or {distance: rate} (:func:`~ctinv_utils.synthesis.grid.rate_for`);
        ``synthesize_kw``: more arguments of each on-demand run's ``synthesize`` (e.g. the notebook's
        early stop), so that a slider value is optimised as the grid was."""
        self.image = image
        # bad settings fail here, not at the first slider move
        self.adam_betas = list(check_betas(adam_betas))
        for d in distances:
            rate_for(lr, d)
        self.synthesize_kw = dict(synthesize_kw or {})
        self.lr_schedule, self.hu_range = lr_schedule, (list(hu_range) if hu_range is not None else None)
        self.denoisers = denoisers
        self.distances = list(distances)
        self.alphas = sorted(check_alpha_values(list(alphas))[0])
        self.results = {(d, m, self._key(a)): np.asarray(v) for (d, m, a), v in (results or {}).items()}
        self.max_iter, self.lr, self.seed, self.progress = max_iter, lr, seed, progress
        # on disk, results are keyed by everything that determines them besides the three choices: the
        # image, the settings and each denoiser's weights (not its name) here; each distance's identity
        # (weights and the precision it computes in) in a subfolder, from the module a run actually uses
        key = config_hash({"image": _tensor_sha(image), "max_iter": max_iter, "lr": lr, "seed": seed,
                           "lr_schedule": lr_schedule, "synthesize_kw": self.synthesize_kw, "hu_range": self.hu_range, "adam_betas": self.adam_betas,
                           "denoisers": {n: module_sha(m) for n, m in denoisers.items()}})
        self.cache_dir = Path(cache_dir) / key if cache_dir else None
        self.distance_modules = dict(distance_modules or {})
        self._distance_keys: dict[str, str] = {}
        self._outputs: dict = {}

    def distance_module(self, distance: str) -> torch.nn.Module:
        """The module every run of ``distance`` uses: the one passed in ``distance_modules``, else
        built once on first use (VGG16: its weights are loaded once, not at every slider move)."""
        if distance not in self.distance_modules:
            self.distance_modules[distance] = get_distance(distance, seed=self.seed)
        return self.distance_modules[distance]

    def _distance_key(self, distance: str) -> str:
        """The distance's part of the disk key: its class and weights, its plain settings (DSSIM's
        window and padding are attributes, not tensors) and the precision it computes in on this
        device (VGG16's weights do not say that it runs in bf16 on AMX, fp32 elsewhere). A disk hit
        needs the module, so a VGG16 the explorer builds itself needs its weights file."""
        if distance not in self._distance_keys:
            m = self.distance_module(distance)
            precision = m.precision_on(self.image.device) if hasattr(m, "precision_on") else "module's own"
            settings = {k: v for k, v in vars(m).items()
                        if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple, list))}
            self._distance_keys[distance] = f"{distance}-" + config_hash(
                {"module": module_sha(m), "settings": settings, "precision": precision})
        return self._distance_keys[distance]

    @staticmethod
    def _key(alpha: float) -> float:
        return float(f"{float(alpha):.4g}")  # slider values snap to 4 significant digits

    def add(self, invariance: Invariance, denoiser: str) -> None:
        """Register every alpha of a finished batched run."""
        for i, a in enumerate(invariance.alpha_values):
            self.results[(denoiser, invariance.distance_name, self._key(a))] = invariance.result[i, 0].cpu().numpy()

    def add_arrays(self, denoiser: str, distance: str, arrays) -> None:
        """Register every alpha of a saved run from its figure arrays (``x_inv`` in HU, ``alphas``)."""
        for a, x_inv_hu in zip(arrays["alphas"], arrays["x_inv"]):
            self.results[(denoiser, distance, self._key(float(a)))] = hu_to_norm(np.asarray(x_inv_hu, dtype=np.float32))

    def _disk(self, denoiser, distance, alpha) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / self._distance_key(distance) / f"{denoiser}_{distance}_{alpha:.4g}.npy"

    def result(self, denoiser: str, distance: str, alpha: float) -> np.ndarray:
        """x_inv ``(H, W)`` normalized: cached, else computed now."""
        if denoiser not in self.denoisers:
            raise ValueError(f"unknown denoiser {denoiser!r}; choose one of {sorted(self.denoisers)}")
        if distance not in self.distances:
            raise ValueError(f"unknown distance {distance!r}; choose one of {self.distances}")
        alpha = check_alpha_values(alpha)[0][0] if np.ndim(alpha) == 0 else alpha
        if not (isinstance(alpha, float) and math.isfinite(alpha) and alpha >= 0):
            raise BadArgumentError(f"alpha must be one finite number >= 0, got {alpha!r}")
        key = (denoiser, distance, self._key(alpha))
        if key in self.results:
            return self.results[key]
        disk = self._disk(*key)
        if disk is not None and disk.is_file():
            cached = self._read_disk(disk)
            if cached is not None:
                self.results[key] = cached
                return cached
        inv = Invariance(self.image, self.denoisers[denoiser], distance, key[2], seed=self.seed,
                         lr=rate_for(self.lr, distance),
                         distance_module=self.distance_module(distance), hu_range=self.hu_range,
                         adam_betas=self.adam_betas)
        inv.synthesize(self.max_iter, progress=self.progress, lr_schedule=self.lr_schedule, **self.synthesize_kw)
        self.results[key] = inv.result[0, 0].cpu().numpy()
        if disk is not None:
            atomic.write_npy(disk, self.results[key])
            atomic.write_checksum(disk)  # a SHA-256 beside it, checked at every load
        return self.results[key]

    def _read_disk(self, disk: Path) -> np.ndarray | None:
        """A disk-cached x_inv whose SHA-256 matches the one recorded beside it; else (damaged, changed,
        unreadable or without a checksum) None after a warning naming the file, which is removed so
        that the result is computed and cached again."""
        problem = atomic.checksum_problem(disk)
        if problem is None:
            try:
                value = np.load(disk, allow_pickle=False)
                if value.shape == tuple(self.image.shape[-2:]):
                    return value
                problem = f"it holds an array of shape {value.shape}, not the image's {tuple(self.image.shape[-2:])}"
            except (OSError, ValueError, EOFError) as exc:
                problem = f"it cannot be read ({type(exc).__name__})"
        warnings.warn(f"cached invariance {disk}: {problem}; it is deleted and computed again", stacklevel=3)
        atomic.remove_checksummed(disk)
        return None

    @torch.no_grad()
    def _f(self, denoiser: str, x: np.ndarray) -> np.ndarray:
        dev = self.image.device
        return self.denoisers[denoiser](torch.from_numpy(x)[None, None].to(dev).float())[0, 0].cpu().numpy()

    def panels(self, denoiser: str, distance: str, alpha: float) -> dict[str, np.ndarray]:
        """HU images: x, x_inv, f_x, f_x_inv, and the differences dx = x_inv - x, dy = f(x_inv) - f(x)."""
        x = self.image[0, 0].cpu().numpy()
        x_inv = self.result(denoiser, distance, alpha)
        if denoiser not in self._outputs:
            self._outputs[denoiser] = self._f(denoiser, x)
        f_x, f_inv = self._outputs[denoiser], self._f(denoiser, x_inv)
        hu = {k: norm_to_hu(v.astype(np.float64)) for k, v in
              {"x": x, "x_inv": x_inv, "f_x": f_x, "f_x_inv": f_inv}.items()}
        hu["dx"], hu["dy"] = hu["x_inv"] - hu["x"], hu["f_x_inv"] - hu["f_x"]
        return hu

    def figure(self, denoiser: str, distance: str, alpha: float, window: str = "lung", title: str = ""):
        from ..figures.talk import invariance_grid

        p = self.panels(denoiser, distance, alpha)
        return invariance_grid(p["x"], p["x_inv"], p["f_x"], p["f_x_inv"], WINDOWS[window],
                               title or f"{display_name(denoiser)}, {display_name(distance)}, α = {alpha:.3g}")

    def widget(self):
        """ipywidgets UI: log-scale alpha slider, distance, denoiser and window dropdowns."""
        import ipywidgets as W
        import matplotlib.pyplot as plt
        from IPython.display import display

        lo, hi = math.log10(self.alphas[0]), math.log10(self.alphas[-1])
        alpha = W.FloatLogSlider(value=self.alphas[len(self.alphas) // 2], base=10, min=lo - 0.5, max=hi + 0.5,
                                 step=0.05, description="α", continuous_update=False, readout_format=".3g")
        distance = W.Dropdown(options=[(display_name(d), d) for d in self.distances], description="distance")
        denoiser = W.Dropdown(options=[(display_name(d), d) for d in self.denoisers], description="denoiser")
        window = W.Dropdown(options=["lung", "abdomen", "head"], value="lung", description="window")
        grid = W.Dropdown(options=[(f"{a:.3g}", a) for a in self.alphas], description="precomputed α")
        out = W.Output()

        def redraw(*_):
            with out:
                out.clear_output(wait=True)
                fig = self.figure(denoiser.value, distance.value, alpha.value, window.value)
                display(fig)
                plt.close(fig)

        def snap(change):
            alpha.value = change["new"]

        grid.observe(snap, names="value")
        for w in (alpha, distance, denoiser, window):
            w.observe(redraw, names="value")
        redraw()
        return W.VBox([W.HBox([denoiser, distance, window]), W.HBox([alpha, grid]), out])
