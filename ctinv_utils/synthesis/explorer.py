"""Interactive explorer of invariances: alpha (log slider), distance, denoiser and HU window.

The callbacks are plain methods (``result``, ``panels``, ``figure``) that tests and headless runs
call without a browser; ``widget()`` wires ipywidgets to them. Results precomputed for a grid
of alphas show instantly; any other value is computed once and cached in memory and,
with ``cache_dir``, on disk: each file with its SHA-256 beside it (``<file>.sha256``), checked at every
load; a damaged, changed or unrecorded file is reported, deleted and computed again.

In a notebook the widget optimises such a value in a background thread, so the kernel stays
responsive: its progress bar, a Cancel button and a status line say what runs; the figure keeps
showing the last result (its title names it) until the run ends, and controls moved meanwhile are
queued (the status line says so) rather than lost or replayed.
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from .distances import get_distance
from ..errors import BadArgumentError
from .invariances import Invariance, check_alpha_values, check_betas
from .grid import nearest_alpha, rate_for
from ..provenance import config_hash
from ..names import display_name
from ..progress import report_to
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
    """Explore invariances of one image interactively: any alpha, distance, denoiser and HU window.

    Precomputed results show at once; any other alpha is optimised on demand, as the grid was, and
    cached in memory and, with ``cache_dir``, on disk (checksummed). The plain methods
    (:meth:`result`, :meth:`panels`, :meth:`figure`) run without a browser; :meth:`widget` is the
    notebook interface.

    Parameters
    ----------
    image : torch.Tensor, shape (1, 1, H, W)
        The image x, normalized.
    denoisers : dict
        ``{name: denoiser}``, each mapping ``(B, 1, H, W)`` to the same shape.
    distances : sequence of str
        The distances offered (``"mse"``, ``"dssim"``, ``"vgg"``).
    alphas : sequence of float
        The grid the slider spans (log scale, half a decade beyond each end).
    results : dict, optional
        Precomputed ``{(denoiser, distance, alpha): x_inv (H, W) normalized}`` (see :meth:`add`).
    max_iter : int
        Iterations of each on-demand :class:`~ctinv_utils.synthesis.invariances.Invariance` run.
    lr : float or dict
        Its learning rate: one, or ``{distance: rate}`` (:func:`~ctinv_utils.synthesis.grid.rate_for`).
    """

    def __init__(self, image: torch.Tensor, denoisers: dict, distances=("mse", "dssim", "vgg"),
                 alphas=(0.1, 0.5, 2.0), results: dict | None = None, max_iter: int = 200, lr: float | dict = 1e-2,
                 seed: int = 0, cache_dir: str | Path | None = None, distance_modules: dict | None = None,
                 progress: bool = True, lr_schedule: str = "constant", hu_range=PHYSICAL_HU_RANGE,
                 adam_betas=(0.9, 0.999), synthesize_kw: dict | None = None, warm_start: bool = False,
                 warm_min_iter: int = 50):
        """
        Other Parameters
        ----------------
        seed : int
            Seed of each run's start noise.
        cache_dir : str or pathlib.Path, optional
            Disk cache (checksummed), keyed by the image, the settings and the denoisers' weights.
        distance_modules : dict, optional
            Ready distance modules ``{distance: module}`` to share (e.g. one VGG16).
        progress : bool
            Show a progress bar for each on-demand run.
        lr_schedule : {"constant", "cosine"}
            Each run's learning-rate schedule.
        hu_range : tuple of float or None
            Each run's HU range (default ``(-1024, 3071)``; None: unconstrained).
        adam_betas : tuple of float
            Each run's Adam betas.
        synthesize_kw : dict, optional
            More ``synthesize`` arguments of each run (e.g. the notebook's early stop), so that a
            slider value is optimised as the grid was.
        warm_start : bool
            Start an alpha not computed yet from the result of the nearest alpha of the grid (the
            precomputed ones, in log alpha) instead of x + noise, and let its early stop act from
            ``warm_min_iter`` iterations on: seconds instead of a whole run (the performance notes
            measure it). The grid's results stay as they were computed.
        warm_min_iter : int
            The early stop's minimum for a warm-started run.

        Raises
        ------
        ValueError
            Bad ``adam_betas`` or ``lr``.
        BadArgumentError
            A bad alpha in ``alphas``.

        Examples
        --------
        >>> import torch
        >>> from ctinv_utils import InvarianceExplorer, hu_to_norm, load_denoiser
        >>> x = hu_to_norm(torch.full((1, 1, 48, 48), 40.0))
        >>> ex = InvarianceExplorer(x, {"gauss_ri": load_denoiser("gauss_ri")}, ("mse",), (0.01, 0.1), max_iter=100)
        >>> ex.panels("gauss_ri", "mse", 0.05)["dy"].shape     # optimised now; (H, W) in HU
        (48, 48)
        >>> ex.widget()                                        # doctest: +SKIP
        """
        self.image = image
        # bad settings fail here, not at the first slider move
        self.adam_betas = list(check_betas(adam_betas))
        for d in distances:
            rate_for(lr, d)
        self.synthesize_kw = dict(synthesize_kw or {})
        self.warm_start, self.warm_min_iter = bool(warm_start), int(warm_min_iter)
        #: per on-demand run: seconds, iterations and the grid alpha it started from (None: x + noise)
        self.runs: dict = {}
        self.lr_schedule, self.hu_range = lr_schedule, (list(hu_range) if hu_range is not None else None)
        self.denoisers = denoisers
        self.distances = list(distances)
        self.alphas = sorted(check_alpha_values(list(alphas))[0])
        self.results = {(d, m, self._key(a)): np.asarray(v) for (d, m, a), v in (results or {}).items()}
        self._grid = set(self.results)  # the precomputed results: the only starts of a warm start
        self.max_iter, self.lr, self.seed, self.progress = max_iter, lr, seed, progress
        # on disk, results are keyed by everything that determines them besides the three choices: the
        # image, the settings and each denoiser's weights (not its name) here; each distance's identity
        # (weights and the precision it computes in) in a subfolder, from the module a run actually uses
        key = config_hash({"image": _tensor_sha(image), "max_iter": max_iter, "lr": lr, "seed": seed,
                           "lr_schedule": lr_schedule, "synthesize_kw": self.synthesize_kw, "hu_range": self.hu_range, "adam_betas": self.adam_betas,
                           **({"warm_start": self.warm_min_iter} if self.warm_start else {}),
                           "denoisers": {n: module_sha(m) for n, m in denoisers.items()}})
        self.cache_dir = Path(cache_dir) / key if cache_dir else None
        self.distance_modules = dict(distance_modules or {})
        self._distance_keys: dict[str, str] = {}
        self._outputs: dict = {}
        # a denoiser's weights are converted (frozen, channels_last) when a run starts; never while
        # another thread runs it to draw a figure
        self._modules_lock = threading.RLock()

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
        """Register every alpha of a finished batched :class:`~ctinv_utils.synthesis.invariances.Invariance`
        run of ``denoiser`` (a key of ``denoisers``), so that those alphas show at once."""
        for i, a in enumerate(invariance.alpha_values):
            key = (denoiser, invariance.distance_name, self._key(a))
            self.results[key] = invariance.result[i, 0].cpu().numpy()
            self._grid.add(key)

    def add_arrays(self, denoiser: str, distance: str, arrays) -> None:
        """Register every alpha of a saved run from its figure arrays (``x_inv`` ``(A, H, W)`` in HU and
        ``alphas`` ``(A,)``, e.g. ``Artifacts.read_arrays("invariance_arrays", ...)``)."""
        for a, x_inv_hu in zip(arrays["alphas"], arrays["x_inv"]):
            key = (denoiser, distance, self._key(float(a)))
            self.results[key] = hu_to_norm(np.asarray(x_inv_hu, dtype=np.float32))
            self._grid.add(key)

    def _warm_start(self, denoiser: str, distance: str, alpha: float):
        """The grid alpha nearest to ``alpha`` (log scale) and its x_inv ``(1, 1, H, W)``, or (None, None)."""
        grid = [k[2] for k in self._grid if k[:2] == (denoiser, distance) and k[2] > 0]
        if not self.warm_start or not grid or alpha <= 0:
            return None, None
        near = nearest_alpha(alpha, grid)
        return near, torch.from_numpy(np.asarray(self.results[(denoiser, distance, near)], dtype=np.float32))[None, None]

    def _disk(self, denoiser, distance, alpha) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / self._distance_key(distance) / f"{denoiser}_{distance}_{alpha:.4g}.npy"

    def result(self, denoiser: str, distance: str, alpha: float) -> np.ndarray:
        """The invariance x_inv for one choice: from memory or the disk cache, else optimised now.

        Parameters
        ----------
        denoiser, distance : str
            Keys of ``denoisers`` and ``distances``.
        alpha : float
            Any alpha >= 0 (snapped to 4 significant digits).

        Returns
        -------
        numpy.ndarray
            x_inv ``(H, W)`` float32 in normalized units.

        Raises
        ------
        ValueError, BadArgumentError
            An unknown denoiser or distance, or a bad alpha.
        """
        return self._result(denoiser, distance, alpha, self.progress)

    def _result(self, denoiser: str, distance: str, alpha: float, progress: bool) -> np.ndarray:
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
        near, start = self._warm_start(denoiser, distance, key[2])
        started = time.perf_counter()
        with self._modules_lock:
            inv = Invariance(self.image, self.denoisers[denoiser], distance, key[2], seed=self.seed,
                             lr=rate_for(self.lr, distance),
                             distance_module=self.distance_module(distance), hu_range=self.hu_range,
                             adam_betas=self.adam_betas, start=None if start is None else start.to(self.image.device))
        stop = dict(self.synthesize_kw)
        if start is not None and stop.get("stop_criterion") is not None:
            stop["min_iter"] = self.warm_min_iter
        inv.synthesize(self.max_iter, progress=progress, lr_schedule=self.lr_schedule, **stop)
        self.runs[key] = {"seconds": time.perf_counter() - started, "iterations": inv.iteration,
                          "converged": inv.convergence()[0], "started_from": near}
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
        with self._modules_lock:
            return self.denoisers[denoiser](torch.from_numpy(x)[None, None].to(dev).float())[0, 0].cpu().numpy()

    def panels(self, denoiser: str, distance: str, alpha: float) -> dict[str, np.ndarray]:
        """The images of one choice in HU (x_inv computed by :meth:`result` when needed).

        Returns
        -------
        dict of numpy.ndarray
            ``x``, ``x_inv``, ``f_x``, ``f_x_inv`` and the differences ``dx = x_inv - x`` and
            ``dy = f(x_inv) - f(x)``, each ``(H, W)`` float64 in HU.
        """
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
        """The talk's invariance figure of one choice: x, x_inv, f(x) and f(x_inv) in a HU window.

        Parameters
        ----------
        denoiser, distance : str
            Keys of ``denoisers`` and ``distances``.
        alpha : float
            Any alpha >= 0; x_inv is computed by :meth:`result` when needed.
        window : str
            A key of :data:`~ctinv_utils.units.WINDOWS` (``"lung"``, ``"abdomen"``, ``"head"``).
        title : str
            The figure's title; default names the denoiser, the distance and alpha.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = ex.figure("gauss_ri", "mse", 0.05, window="abdomen")
        >>> fig.savefig("gauss_ri_mse.png")
        """
        from ..figures.talk import invariance_grid

        p = self.panels(denoiser, distance, alpha)
        return invariance_grid(p["x"], p["x_inv"], p["f_x"], p["f_x_inv"], WINDOWS[window],
                               title or f"{display_name(denoiser)}, {display_name(distance)}, α = {alpha:.3g}")

    def widget(self, background: bool | None = None) -> ExplorerWidget:
        """The explorer in a notebook: log-scale alpha slider, denoiser, distance and window menus, a
        menu of the alphas computed so far (it follows the slider), the figure, and for an alpha not
        computed yet a progress bar, a Cancel button and a status line.

        Parameters
        ----------
        background : bool or None
            Optimise a new alpha in a background thread while the kernel stays responsive (needs a
            running event loop, as in every Jupyter kernel); ``False``: in the call that moved the
            control, blocking; ``None``: in the background where a loop runs, else blocking.

        Returns
        -------
        ExplorerWidget
            Display it (the last expression of a cell, or ``display(...)``); ``.box`` is its ipywidgets
            box, to place in a layout of your own.
        """
        return ExplorerWidget(self, background)


class _Cancelled(Exception):
    """The user pressed Cancel: raised inside the optimisation loop by its progress report."""


def _running_loop():
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _label(key) -> str:
    denoiser, distance, alpha = key[:3]
    return f"α = {alpha:.3g} ({display_name(denoiser)}, {display_name(distance)})"


class ExplorerWidget:
    """The notebook interface of an :class:`InvarianceExplorer` (made by its ``widget()``).

    The figure always shows a result that exists: the selected one where it is computed (or read from
    the cache), else the last one shown, whose title names its alpha. Selecting an alpha not computed
    yet starts its optimisation (in the background where the kernel runs an event loop): the status
    line says "optimising α = ...", the progress bar counts its iterations and ends green when the
    run finished (with "converged at N" when it stopped early because it converged), orange when it
    was cancelled and red when it failed. Controls stay usable during a run: a computed selection
    shows at once, another new alpha is queued and starts when the run ends (the status line says
    so); Cancel stops the run, drops the queued one and sets the controls back to the figure shown.
    """

    #: seconds between two progress updates sent to the browser
    REPORT_INTERVAL = 0.2

    def __init__(self, explorer: InvarianceExplorer, background: bool | None = None):
        import ipywidgets as W

        ex = self.explorer = explorer
        self._loop = _running_loop() if background is not False else None
        if background and self._loop is None:
            raise BadArgumentError("widget(background=True) needs a running event loop (a Jupyter kernel); "
                                   "use background=None or False outside one")
        self.background = self._loop is not None
        lo, hi = math.log10(ex.alphas[0]), math.log10(ex.alphas[-1])
        start = ex.alphas[len(ex.alphas) // 2]
        self.alpha = W.FloatLogSlider(value=start, base=10, min=lo - 0.5, max=hi + 0.5, step=0.05, description="α",
                                      continuous_update=False, readout_format=".3g")
        self.denoiser = W.Dropdown(options=[(display_name(d), d) for d in ex.denoisers], description="denoiser")
        self.distance = W.Dropdown(options=[(display_name(d), d) for d in ex.distances], description="distance")
        self.window = W.Dropdown(options=["lung", "abdomen", "head"], value="lung", description="window")
        self.computed = W.Dropdown(description="computed α", tooltip="alphas shown at once: the precomputed "
                                   "grid and those optimised so far; follows the slider")
        self.progress = W.IntProgress(value=0, min=0, max=max(1, ex.max_iter), description="",
                                      layout=W.Layout(width="240px"))
        self.cancel = W.Button(description="Cancel", icon="stop", disabled=True, tooltip="stop the optimisation")
        self.status = W.HTML(value="")
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto"))
        for w in (self.denoiser, self.distance, self.window, self.computed):
            w.layout = W.Layout(width="auto", min_width="200px")
        self.alpha.layout = W.Layout(width="420px")
        flow = W.Layout(flex_flow="row wrap", align_items="center")
        self.box = W.VBox([W.HBox([self.denoiser, self.distance, self.window], layout=flow),
                           W.HBox([self.alpha, self.computed], layout=flow),
                           W.HBox([self.progress, self.cancel, self.status], layout=flow), self.image])
        self.box.add_class("ctinv-explorer")
        self.shown: tuple | None = None  # (denoiser, distance, alpha, window) the figure shows
        self.running: tuple | None = None  # (denoiser, distance, alpha) being optimised
        self.last_run: dict = {}  # how the last run ended: key, outcome, iterations, note
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._halted: tuple | None = None  # cancelled or failed: not started again until the user asks
        self._quiet = False  # True while the widget sets its own controls
        self._refresh_computed()
        self.alpha.observe(self._on_alpha, names="value")
        self.computed.observe(self._on_computed, names="value")
        for w in (self.denoiser, self.distance):
            w.observe(self._on_pair, names="value")
        self.window.observe(self._sync, names="value")
        self.cancel.on_click(self._on_cancel)
        self._sync()

    # -- display -------------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)

    def selection(self) -> tuple:
        """(denoiser, distance, alpha) the controls select (alpha as the results are keyed)."""
        return self.denoiser.value, self.distance.value, self.explorer._key(self.alpha.value)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running optimisation ends (a script or test; in a notebook cell this would
        stop the figure from updating until the cell ends). True if none runs any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    # -- controls --------------------------------------------------------------------------------
    def _computed_alphas(self) -> list[float]:
        d, m = self.denoiser.value, self.distance.value
        return sorted(a for (dd, mm, a) in list(self.explorer.results) if dd == d and mm == m)

    def _refresh_computed(self) -> None:
        """The menu of computed alphas of the selected pair, pointing at the slider's value (or at
        "off the grid" when the slider is between them)."""
        alphas = self._computed_alphas()
        options = [("— not computed —", "off"), *((f"{a:.3g}", a) for a in alphas)]
        key = self.explorer._key(self.alpha.value)
        self._quiet, before = True, self._quiet
        try:
            if list(self.computed.options) != options:
                self.computed.options = options
            self.computed.value = key if key in alphas else "off"
        finally:
            self._quiet = before

    def _set_controls(self, denoiser, distance, alpha) -> None:
        self._quiet, before = True, self._quiet
        try:
            self.denoiser.value, self.distance.value, self.alpha.value = denoiser, distance, alpha
        finally:
            self._quiet = before
        self._refresh_computed()

    def _user_moved(self) -> None:
        """A new selection by the user: a cancelled or failed one may start again, its message goes."""
        self._halted = None
        if self.last_run.get("outcome") in ("cancelled", "failed"):
            self.last_run = {}

    def _on_alpha(self, _change) -> None:
        if self._quiet:
            return
        self._user_moved()
        self._refresh_computed()
        self._sync()

    def _on_pair(self, _change) -> None:
        if self._quiet:
            return
        self._user_moved()
        self._refresh_computed()
        self._sync()

    def _on_computed(self, change) -> None:
        if self._quiet or change["new"] == "off":
            return
        self._user_moved()
        self._quiet, before = True, self._quiet
        try:
            self.alpha.value = change["new"]
        finally:
            self._quiet = before
        self._sync()

    def _on_cancel(self, _button=None) -> None:
        if self.running is not None:
            self._cancel.set()
            self.cancel.disabled = True
            self._status(f"cancelling {_label(self.running)} ...")

    # -- what the figure shows -------------------------------------------------------------------
    def _sync(self, *_):
        """Show the selection if it is computed, else start (or queue) its optimisation."""
        key = self.selection()
        if key in self.explorer.results:
            self._draw(key)
        elif key != self._halted and not self.background:  # no event loop to hand a result back
            self._status(f"optimising {_label(key)} (blocking: no event loop) ...")
            try:
                self.explorer._result(*key, progress=self.explorer.progress)
            except Exception as exc:
                self._halted = key
                self._failed(key, exc)
                return
            self._refresh_computed()
            self._draw(key)
        else:
            if key != self._halted and self.running is None:
                self._start(key)
            if self.shown is not None:
                self._draw(self.shown[:3])  # the last result, in the window selected now
        self._describe()

    def _draw(self, key) -> None:
        import matplotlib.pyplot as plt

        view = (*key, self.window.value)
        if view == self.shown:
            return
        fig = self.explorer.figure(key[0], key[1], key[2], self.window.value)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        self.image.value = buf.getvalue()
        self.shown = view

    def _describe(self) -> None:
        """The status line: what runs, what is queued, what the figure shows."""
        key = self.selection()
        parts = []
        if self.running is not None:
            where = "" if key == self.running else " in the background"
            parts.append(f"<b>optimising {_label(self.running)}</b>{where}")
            if key != self.running and key not in self.explorer.results:
                parts.append(f"queued next: {_label(key)}")
        elif self.last_run.get("outcome") in ("cancelled", "failed"):
            parts.append(self.last_run["message"])
        elif self.last_run.get("key") == key:
            parts.append(self.last_run["message"])
        elif key in self.explorer.results:
            parts.append(f"{_label(key)}: computed")
        if self.shown is not None and self.shown[:3] != key:
            parts.append(f"the figure shows {_label(self.shown)} until it ends")
        self._status(" · ".join(parts))

    def _status(self, text: str) -> None:
        self.status.value = f'<span class="ctinv-explorer-status">{text}</span>'

    # -- the background run ----------------------------------------------------------------------
    def _start(self, key) -> None:
        self.running, self.last_run = key, {}
        self._cancel.clear()
        self.progress.bar_style, self.progress.max, self.progress.value = "info", max(1, self.explorer.max_iter), 0
        self.cancel.disabled = False
        self._thread = threading.Thread(target=self._work, args=(key,), name="ctinv-explorer", daemon=True)
        self._thread.start()

    def _post(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the kernel's thread (widgets and figures are touched only there)."""
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is left to show it
            pass

    def _work(self, key) -> None:
        last = [0.0]

        def report(bar):
            if self._cancel.is_set() and bar.state == "running":
                raise _Cancelled
            now = time.monotonic()
            if bar.state != "running" or now - last[0] >= self.REPORT_INTERVAL:
                last[0] = now
                self._post(self._on_progress, key, bar.n, bar.total, bar.state, bar.postfix)

        try:
            with report_to(report):
                self.explorer._result(*key, progress=True)
        except _Cancelled:
            self._post(self._on_done, key, "cancelled", None)
        except Exception as exc:  # shown in the status line and the bar turns red
            self._post(self._on_done, key, "failed", exc)
        else:
            self._post(self._on_done, key, "done", None)

    def _on_progress(self, key, n, total, state, postfix) -> None:
        if key != self.running:
            return
        if total:
            self.progress.max = max(1, int(total))
        self.progress.value = int(n)
        if state == "success":
            self.progress.bar_style = "success"
            note = postfix.rsplit(", ", 1)[-1] if "converged at" in postfix else f"ran all {n} iterations"
            self.last_run = {"key": key, "outcome": "done", "iterations": int(n), "note": note,
                             "message": f"{_label(key)}: {note}"}

    def _on_done(self, key, outcome, error) -> None:
        self.running, self._thread = None, None
        self.cancel.disabled = True
        if outcome == "done":
            self.progress.bar_style = "success"
            if "iterations" not in self.last_run:  # read from the disk cache: nothing to count
                self.progress.value = self.progress.max
            self.last_run.setdefault("key", key)
            self.last_run.setdefault("outcome", "done")
            self.last_run.setdefault("message", f"{_label(key)}: read from the cache")
            run = self.explorer.runs.get(key[:3])
            if run is not None and "iterations" in self.last_run:  # what the wait bought: seconds, and the start
                start = "x + noise" if run["started_from"] is None else f"α = {run['started_from']:.3g}'s result"
                self.last_run["message"] += f" in {run['seconds']:.1f} s, from {start}"
            self._refresh_computed()
            self._sync()
            return
        if outcome == "cancelled":
            self.progress.bar_style = "warning"
            self.last_run = {"key": key, "outcome": "cancelled",
                             "message": f"cancelled {_label(key)} after {self.progress.value} iterations"}
        else:
            self._failed(key, error)
        self._halted = key
        if self.shown is not None:  # the controls show the state they drive: the figure shown
            self._set_controls(*self.shown[:3])
        self._sync()

    def _failed(self, key, exc) -> None:
        self.progress.bar_style = "danger"
        first = str(exc).splitlines()[0] if str(exc) else ""
        self.last_run = {"key": key, "outcome": "failed",
                         "message": html.escape(f"{_label(key)} failed: {type(exc).__name__}: {first}")}
        self._describe()
