"""Checks before the long work: a run that cannot finish says so before it spends an hour.

:func:`preflight` runs in the runner after the preset's parameters are validated and before the first
notebook starts. It checks

* ImageNet VGG weights that a notebook's parameters require (``vgg_weights: imagenet`` never falls
  back to a random VGG): the file must be where :mod:`ctinv_utils.models.vgg` looks;
* a data root (``--data``) that holds at least one patient with a pairable low- and full-dose series
  (from directory listings only: milliseconds, no header is read);
* a preset meant for a GPU (``meant_for: gpu``) on a machine without one: the run stops with an
  estimate of the time it would take here, measured by timing a few steps of CNN-10 at the preset's
  sizes, unless the user confirms (``--confirm-cpu``);
* on a GPU, the same preset's **estimate** per notebook, time and peak GPU memory on one H100-class GPU
  (:func:`gpu_estimate`: every repeated step counted on the meta device, FLOPs and memory; checked
  against the FLOPs the paper rehearsal measures), printed before the first notebook starts.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

from ..data.dicom_io import DataRootError, DicomSeriesError, locate_patients
from ..errors import CTInvError
from ..models.vgg import URLS, _hub_file, weights_path


class PreflightError(CTInvError):
    """A run that cannot finish (or would take far longer than its preset is meant for)."""


@functools.lru_cache(maxsize=1)
def _op_counter_class():
    """:class:`OpCounter`, defined on first use (torch is imported only when something is counted)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class _OpCounter(TorchDispatchMode):
        __doc__ = OpCounter.__doc__

        def __init__(self):
            super().__init__()
            self.flops, self.ops, self.bytes_out = 0, 0, 0
            self.by_op: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            import torch

            kwargs = kwargs or {}
            if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta":
                return False if args[0].dtype == torch.bool else 0  # .item() of a shape-only tensor
            out = func(*args, **kwargs)
            self.ops += 1
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    self.bytes_out += t.numel() * t.element_size()
            count = flop_registry.get(func._overloadpacket)
            if count is not None:
                n = int(count(*args, **kwargs, out_val=out))
                self.flops += n
                name = func._overloadpacket.__name__
                self.by_op[name] = self.by_op.get(name, 0) + n
            return out

    return _OpCounter


class OpCounter:
    """Counts torch's operations while active (``with OpCounter() as c: ...``): ``flops`` (floating-point
    operations of convolutions and matrix products, forward and backward, by torch's own formulas),
    ``by_op`` (the same per operation), ``ops`` (every operation: each is a kernel launch on a GPU) and
    ``bytes_out`` (bytes of every result: the memory traffic of the elementwise work). On the ``meta``
    device nothing is computed, so a step at any size is counted in milliseconds; ``.item()`` of a meta
    tensor reads 0 there."""

    def __new__(cls):
        return _op_counter_class()()


def required_vgg(notebook: str, params: dict) -> list[str]:
    """The VGG architectures whose ImageNet weights ``notebook`` needs with these parameters."""
    if notebook.startswith("02_"):
        wgan = params.get("wganvgg") or {}
        return ["vgg19"] if wgan.get("vgg_weights") == "imagenet" else []
    if notebook.startswith("03_"):
        return ["vgg16"] if params.get("vgg_weights") == "imagenet" else []
    if notebook.startswith("04_"):
        return ["vgg16"] if params.get("vgg_weights") == "imagenet" and params.get("distance") == "vgg" else []
    return []


def missing_vgg_weights(params_by_notebook: dict[str, dict]) -> list[str]:
    """One line per VGG weights file a notebook requires but this machine lacks."""

    out = []
    for nb, params in params_by_notebook.items():
        for arch in required_vgg(nb, params):
            if weights_path(arch) is None:
                out.append(f"{nb} needs ImageNet {arch.upper()} weights (vgg_weights: imagenet), not found at "
                           f"$CTINV_{arch.upper()}_WEIGHTS or {_hub_file(arch)}: download them once with "
                           f"`python -m ctinv_utils vgg download {arch}` (or copy {URLS[arch]} there)")
    return out


def _seconds_per_step(batch: int, size: int, train: bool, repeats: int = 2) -> float:
    """Wall time of one CNN-10 step on this machine's CPU: a training step (forward, backward, Adam
    on a batch of ``batch`` patches of ``size`` px) or an invariance step (forward and input gradient
    of ``batch`` images)."""
    import torch

    from ..models import CNN10

    torch.manual_seed(0)
    net = CNN10()
    x = torch.rand(batch, 1, size, size, requires_grad=not train)
    opt = torch.optim.Adam(net.parameters() if train else [x], lr=1e-4)
    net.requires_grad_(train)
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def cpu_estimate_hours(params_by_notebook: dict[str, dict], probe_px: int = 128) -> tuple[float, str]:
    """(hours, how) a GPU preset would take on this CPU, a lower bound: training steps of both denoisers
    and the invariance steps of every denoiser x distance are each costed as one CNN-10 step at the
    preset's sizes (WGAN-VGG, its critic and the VGG distance cost more). The step time is measured at
    ``probe_px`` and scaled by the pixel count (a conv's cost grows linearly with it)."""
    total, parts = 0.0, []
    p02 = params_by_notebook.get("02_denoiser_training")
    if p02:
        for name in ("cnn10", "wganvgg"):
            cfg = p02.get(name) or {}
            if not cfg:
                continue
            iters = int(cfg.get("iterations", 0)) + int(cfg.get("pretrain_iterations", 0))
            pixels = int(cfg.get("batch_size", 1)) * int(cfg.get("patch_size", 64)) ** 2
            step = _seconds_per_step(4, probe_px, train=True) * pixels / (4 * probe_px**2)
            total += iters * step
            parts.append(f"{name} training {iters} steps x {step:.2f} s")
    p03 = params_by_notebook.get("03_image_domain_invariances")
    if p03:
        size = int(p03.get("crop") or (p03.get("simulation") or {}).get("image_size", 512))
        n_alpha = len(p03.get("alphas") or [1])
        n_runs = len(p03.get("denoiser_names") or [1]) * 3  # three distances
        step = _seconds_per_step(1, probe_px, train=False) * n_alpha * size**2 / probe_px**2
        iters = int(p03.get("max_iter", 0))
        total += n_runs * iters * step
        parts.append(f"{n_runs} invariance runs x {iters} steps x {step:.1f} s ({n_alpha} alphas at {size} px)")
    return total / 3600, "; ".join(parts)


def preflight(preset: dict, params_by_notebook: dict[str, dict], device: str, data: str | None = None,
              confirm_cpu: bool = False, estimate: bool = True) -> list[str]:
    """Check that the run can finish; raise :class:`PreflightError` (one message listing every problem
    and its fix) if not. Returns notes to print (e.g. the CPU estimate of a confirmed GPU preset)."""
    problems = missing_vgg_weights(params_by_notebook)
    notes: list[str] = []
    if data:

        try:
            locate_patients(Path(data).expanduser())
        except (DataRootError, DicomSeriesError) as exc:
            problems.append(str(exc))
    if preset.get("meant_for") == "gpu" and not str(device).startswith("cuda"):
        how = ""
        if estimate:
            hours, how = cpu_estimate_hours(params_by_notebook)
            when = f"at least {hours:.0f} hours on this CPU" if hours >= 1 else f"at least {hours * 60:.0f} min"
            how = f" ({how})"
        else:
            when = "many hours on this CPU"
        msg = (f"preset {preset.get('name', '?')!r} is meant for a GPU and this run would use the CPU: {when}{how}")
        if confirm_cpu:
            notes.append(msg + "; running anyway (--confirm-cpu)")
        else:
            problems.append(msg + "; run it on a machine with a CUDA GPU (docs/gpu.md: the first GPU run and its "
                                  "estimated time), or pass --confirm-cpu (make reproduce ... CONFIRM_CPU=1) to run it "
                                  "here anyway")
    elif preset.get("meant_for") == "gpu" and estimate and params_by_notebook and not problems:
        # on the GPU: each notebook's estimated time and memory before the long work starts
        notes += estimate_lines(gpu_estimate(params_by_notebook, data))
    if problems:
        if len(problems) == 1:
            raise PreflightError(f"the run cannot start: {problems[0]}")
        raise PreflightError("the run cannot finish as set up (nothing was started):\n" +
                             "\n".join(f"  - {p}" for p in problems))
    return notes


# -- the GPU estimate ---------------------------------------------------------------------------------
#: What one H100-class GPU is assumed to sustain on ctinv's work until it is measured there
#: (``python -m ctinv_utils.tools.gpu_first`` replaces these by the GPU check's measurements):
#: convolution FLOP/s (fp32 with TF32 convolutions, PyTorch's default), memory bandwidth (B/s) for the
#: elementwise work, and the time of one kernel launch (eager PyTorch, s).
GPU_ASSUMED = {"flop_rate": 40e12, "bandwidth": 2.0e12, "launch_s": 12e-6, "memory_gib": 80.0,
               "source": "assumed for an H100-class GPU (not measured)"}
#: CPU costs of the work that stays on the CPU on any machine, measured by the paper rehearsal on 2
#: shared CPU cores (tests/test_paper_rehearsal.py prints its measurements): reading one 512x512
#: low/full DICOM pair from the page cache (s), one radon and one iradon at 512 px and 720 views on one
#: core (s), one polychromatic detector reading of 1152 views x 736 channels at both doses (s), and
#: what each notebook spends besides the work :func:`work_units` counts (kernel start,
#: imports, drawing and saving its figures at 512 px, artifacts; s).
CPU_COSTS = {"read_pair_s": 0.006, "radon_s": 2.4, "iradon_s": 1.0, "reference": (512, 720), "detector_s": 0.8,
             "fixed_s": {"01_data": 15.0, "02_denoiser_training": 45.0, "03_image_domain_invariances": 200.0,
                         "04_natural_invariances": 40.0, "05_lesions": 30.0, "06_figures": 125.0}}
#: Bytes of one cached float32 low/full pair per pixel, and PairedCTData's cache (2 GiB).
_PAIR_CACHE_BYTES = 2 * 1024**3


def _meta_denoiser(name: str):
    """The untrained denoiser ``name`` on the meta device (built on the CPU: some constructors probe)."""
    from ..models import build_denoiser, freeze

    return freeze(build_denoiser(name)).eval().to("meta")


class _Saved:
    """Bytes of the tensors autograd saves for backward while active (distinct tensors)."""

    def __init__(self):
        self.bytes, self._seen = 0, set()

    def __enter__(self):
        import torch

        def pack(t):
            if id(t) not in self._seen:
                self._seen.add(id(t))
                self.bytes += t.numel() * t.element_size()
            return t

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def _state_bytes(*modules, trained: bool = False) -> int:
    """Parameters (and, when trained with Adam, their gradients and two moments) and buffers."""
    n = 0
    for m in modules:
        p = sum(t.numel() * t.element_size() for t in m.parameters())
        n += p * (4 if trained else 1) + sum(t.numel() * t.element_size() for t in m.buffers())
    return n


@functools.lru_cache(maxsize=None)
def _meta_distance(name: str):
    """The distance ``name`` on the meta device (VGG16's weights: shapes only)."""
    from ..synthesis.distances import get_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the VGG distance's random init
        return get_distance(name, vgg_allow_random=True, vgg_precision="fp32").to("meta")


def _count(fn, state_bytes: int = 0) -> dict:
    """Run ``fn`` (on the meta device) twice, the second time counted by :class:`OpCounter` (the
    first builds what a run builds once: Adam's moments, the SSIM filter's band matrices): flops,
    ops, bytes written, and the bytes it holds at its peak (``state_bytes`` + what autograd saved +
    twice the largest transient ``fn`` returns)."""
    with OpCounter():
        fn()
    with OpCounter() as c, _Saved() as s:
        largest = fn() or 0
    return {"flops": c.flops, "ops": c.ops, "bytes": c.bytes_out,
            "peak_bytes": state_bytes + s.bytes + 2 * int(largest)}


def _plus(*units: dict) -> dict:
    """Units that run one after the other in one step: counts add, and so do their peaks (the first
    one's saved tensors are still held while the next runs)."""
    return {k: sum(u[k] for u in units) for k in units[0]}


def _times(unit: dict, n: float) -> dict:
    """``n`` repetitions of ``unit`` one after the other (its peak once)."""
    return {k: v * n if k != "peak_bytes" else v for k, v in unit.items()}


@functools.lru_cache(maxsize=None)
def _unit_input_gradient(name: str, n: int, size: int) -> dict:
    """The frozen denoiser ``name`` forward and backward to its input, on ``n`` images of ``size`` px."""
    import torch

    f = _meta_denoiser(name)
    x = torch.zeros(n, 1, size, size, device="meta", requires_grad=True)

    def step():
        torch.autograd.grad(f(x).sum(), [x])
        return x.numel() * 4 * 4

    return _count(step, _state_bytes(f))


@functools.lru_cache(maxsize=None)
def _unit_distances(distance: str, n: int, size: int) -> dict:
    """Both distance terms of an invariance step (against f(x) and x, computed once before) forward
    and backward, and Adam's update of the ``n`` images."""
    import torch

    from ..synthesis.distances import against

    dist = _meta_distance(distance)
    x = torch.zeros(1, 1, size, size, device="meta")
    with torch.no_grad():
        d_target, d_image = against(dist, x), against(dist, x)
    out = torch.zeros(n, 1, size, size, device="meta", requires_grad=True)
    param = torch.zeros(n, 1, size, size, device="meta", requires_grad=True)
    opt = torch.optim.Adam([param], lr=1e-2)
    alphas = torch.ones(n, device="meta")

    def step():
        loss = d_target(out) - alphas * d_image(param)
        _, grad = torch.autograd.grad(loss.sum(), [out, param])
        param.grad = grad
        opt.step()
        return param.numel() * 4 * 8

    return _count(step, _state_bytes(dist) + 3 * param.numel() * 4)


def _unit_invariance(name: str, distance: str, n_alpha: int, size: int) -> dict:
    """One Adam step of :class:`~ctinv_utils.synthesis.invariances.Invariance` (its objective and
    step): ``n_alpha`` images of ``size`` px through the frozen denoiser ``name`` (input gradient only)
    and both distances."""
    return _plus(_unit_input_gradient(name, n_alpha, size), _unit_distances(distance, n_alpha, size))


@functools.lru_cache(maxsize=None)
def _unit_distance_setup(distance: str, n: int, size: int) -> dict:
    """What an invariance run computes besides its steps for its distance: the terms against f(x) and
    x once, and both distances of its ``n`` images for its summaries, about twice."""
    import torch

    from ..synthesis.distances import against

    dist = _meta_distance(distance)
    x = torch.zeros(1, 1, size, size, device="meta")
    images = torch.zeros(n, 1, size, size, device="meta")

    def step():
        with torch.no_grad():
            d_target, d_image = against(dist, x), against(dist, x)
            for _ in range(2):
                d_target(images), d_image(images)
        return 0

    return _count(step, _state_bytes(dist))


def _invariance_run(what: str, name: str, distance: str, n_alpha: int, size: int, iters: int, key) -> list[tuple]:
    """An invariance run's work units: its steps, and what it computes once (f(x), the distance's
    fixed terms, its summaries' distances, and f(x_inv) for its summaries and figure arrays, about
    four times)."""
    setup = _plus(_unit_forward(name, 1, size), _unit_distance_setup(distance, n_alpha, size),
                  _times(_unit_forward(name, n_alpha, size), 4))
    return [(what, _unit_invariance(name, distance, n_alpha, size), iters, key), (f"{what}: setup", setup, 1, None)]


@functools.lru_cache(maxsize=None)
def _unit_forward(name: str, batch: int, size: int) -> dict:
    """The denoiser ``name`` on ``batch`` images of ``size`` px, without gradients."""
    import torch

    f = _meta_denoiser(name)
    x = torch.zeros(batch, 1, size, size, device="meta")

    def step():
        with torch.no_grad():
            y = f(x)
        return y.numel() * y.element_size() * 8

    return _count(step, _state_bytes(f))


@functools.lru_cache(maxsize=None)
def _unit_training(method: str, cfg_items: tuple) -> dict:
    """One training step of CNN-10 or WGAN-VGG (its GAN phase: the paper's WGAN-VGG has no L2 warm
    start) with the settings ``cfg_items`` (a TrainConfig mapping's items)."""
    import torch

    from ..training.methods import TrainConfig, build_method

    cfg = {**dict(cfg_items), "method": method, "checkpoint_every": 1}
    if method == "wganvgg":
        cfg["vgg_weights"] = "imagenet_or_random"  # shapes are what counts here
    tc = TrainConfig.from_dict(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = build_method(tc, "cpu")
    frozen = []
    for mod in m.modules().values():
        mod.to("meta")
    if method == "wganvgg":
        frozen = [m.vgg.to("meta")]
        m.opt_g = torch.optim.Adam(m.model.parameters(), lr=tc.lr)
        m.opt_d = torch.optim.Adam(m.critic.parameters(), lr=tc.lr)
    else:
        m.opt = torch.optim.Adam(m.model.parameters(), lr=tc.lr)
    shape = (tc.batch_size, 1, tc.patch_size, tc.patch_size)

    def step():
        m.step(lambda: (torch.zeros(shape, device="meta"), torch.zeros(shape, device="meta")),
               getattr(tc, "pretrain_iterations", 0) + getattr(tc, "critic_warmup", 0))
        return tc.batch_size * 64 * tc.patch_size**2 * 4

    return _count(step, _state_bytes(*m.modules().values(), trained=True) + _state_bytes(*frozen))


@functools.lru_cache(maxsize=None)
def _unit_natural_generator(distance: str, patch_size: int, batch_size: int, critic_steps: int) -> dict:
    """One update of a natural-invariance generator (:class:`~ctinv_utils.synthesis.natural.NaturalInvariance`'s
    own step) for a denoiser that costs nothing (the identity), ``critic_steps`` critic updates
    included (the step with one is counted; each further one adds a counted critic update)."""
    import torch
    from torch import nn

    from ..models import WGANCritic
    from ..models.natural_generator import ConditionalGenerator
    from ..synthesis import natural
    from ..training.gan import critic_step

    cfg = natural.NaturalConfig(distance=distance, patch_size=patch_size, critic_steps=1)
    nat = SimpleNamespace(config=cfg, denoiser=nn.Identity(), rng=torch.Generator(), distance=_meta_distance(distance),
                          net=ConditionalGenerator(cfg.channels, cfg.z_channels).to("meta"),
                          critic=WGANCritic(cfg.patch_size, cfg.critic_width, hidden=256).to("meta"))
    nat.generate = lambda x, z: natural.NaturalInvariance.generate(nat, x, z)
    method = natural._NaturalMethod(nat)
    x = torch.zeros(batch_size, 1, patch_size, patch_size, device="meta")
    largest = batch_size * 64 * patch_size**2 * 4
    state = _state_bytes(nat.net, nat.critic, trained=True) + _state_bytes(nat.distance)
    one = _count(lambda: (method.step(lambda: (x,), 0), largest)[1], state)
    if critic_steps > 1:
        more = _count(lambda: (critic_step(nat.critic, method.opt_c, x, x, cfg.lambda_gp, nat.rng), largest)[1], state)
        one = _plus(one, {**_times(more, critic_steps - 1), "peak_bytes": 0})
    return one


def _unit_natural(name: str, distance: str, patch_size: int, batch_size: int, critic_steps: int) -> dict:
    """One generator update of the natural invariances of denoiser ``name``: the generator's step and
    the denoiser on the batch twice (f(x) without, f(g) with the input gradient)."""
    return _plus(_unit_natural_generator(distance, patch_size, batch_size, critic_steps),
                 _unit_forward(name, batch_size, patch_size), _unit_input_gradient(name, batch_size, patch_size))


@functools.lru_cache(maxsize=None)
def _unit_generator_samples(n: int, size: int) -> dict:
    """``n`` samples of a natural-invariance generator on one slice of ``size`` px, in batches of 8
    (:meth:`~ctinv_utils.synthesis.natural.NaturalInvariance.sample`)."""
    import torch

    from ..models.natural_generator import ConditionalGenerator
    from ..synthesis.natural import NaturalConfig

    cfg = NaturalConfig()
    net = ConditionalGenerator(cfg.channels, cfg.z_channels).eval().to("meta")
    b = min(n, 8)
    x = torch.zeros(b, 1, size, size, device="meta")
    z = [t.to("meta") for t in net.noise(b, size, size, torch.Generator().manual_seed(0))]

    def step():
        with torch.no_grad():
            net(x, z)
        return b * 64 * size * size * 4

    return _times(_count(step, _state_bytes(net)), n / b)


@functools.lru_cache(maxsize=None)
def _unit_critic_scores(n: int, size: int, patch: int) -> dict:
    """A natural-invariance critic scoring ``n`` images of ``size`` px, tile by tile (``critic_scores``)."""
    import torch

    from ..models import WGANCritic

    critic = WGANCritic(patch, 0.25, hidden=256).eval().to("meta")
    tiles = ((size - patch) // (patch // 2) + 1) ** 2

    def step():
        with torch.no_grad():
            critic(torch.zeros(n * tiles, 1, patch, patch, device="meta"))
        return n * tiles * patch * patch * 4

    return _count(step, _state_bytes(critic))


def _unit_sampling(name: str, n: int, size: int, patch: int = 80) -> dict:
    """Notebook 04's analysis of one slice: ``n`` samples, the denoiser on x, on the samples and in
    both distances of each (``3 n + 3`` slices, the image-domain comparison's included), and the
    critic's scores of the samples, x and the image-domain invariance."""
    b = min(n, 8)
    return _plus(_unit_generator_samples(n, size), _times(_unit_forward(name, b, size), (3 * n + 3) / b),
                 _unit_critic_scores(n + 2, size, patch))


def _data_patients(params_by_notebook: dict, data: str | None) -> tuple[list[tuple[str, str, int]], int]:
    """([(patient ID, region, slices)], image size) of the data a run reads: from the folder listings of
    ``data`` when given (TCIA slices are 512 px), else the preset's simulated patients."""
    from ..data.regions import REGION_OF_PREFIX
    from ..data.simulated import SimulationConfig, patient_plan

    sim = next((p["simulation"] for p in params_by_notebook.values() if p.get("simulation")), {})
    if data:
        with contextlib.suppress(CTInvError, OSError):
            located, _ = locate_patients(Path(data).expanduser())
            return [(loc[0].name, REGION_OF_PREFIX[loc[0].name[0]], len(loc[4])) for loc in located], 512
    cfg = SimulationConfig.from_dict(sim)
    return [(q["patient_id"], q["region"], q["n_slices"]) for q in patient_plan(cfg)], cfg.image_size


def _test_patients(patients: list[tuple[str, str, int]], seed: int, names, data: str | None) -> list[tuple]:
    """The patients notebook 02 evaluates on: ctinv's test split, narrowed to ldct-benchmark's test
    patients on real data when a published network is among ``names``."""
    from ..data.ldctbench_split import ldctbench_split
    from ..data.sampling import split_patients

    fake = SimpleNamespace(patients=[SimpleNamespace(patient_id=i, region=r) for i, r, _ in patients])
    test = set(split_patients(fake, seed=seed)["test"])
    if data and any(str(n).startswith("ldctbench:") for n in names):
        test &= set(ldctbench_split()["test"])
    return [q for q in patients if q[0] in test]


def _seconds(unit: dict, gpu: dict) -> float:
    """One counted unit on ``gpu``: its FLOPs at the FLOP rate plus its written bytes (each read about
    twice more) at the bandwidth, but never less than its kernel launches."""
    return max(unit["flops"] / gpu["flop_rate"] + 3 * unit["bytes"] / gpu["bandwidth"], unit["ops"] * gpu["launch_s"])


def work_units(nb: str, p: dict, params_by_notebook: dict, size: int, test: list[tuple]) -> list[tuple]:
    """What notebook ``nb`` repeats with parameters ``p``: ``(what, unit, repetitions, rate key)``, the
    unit counted by :class:`OpCounter` on the meta device, the rate key naming the measured rate that
    applies (:func:`calibration_from_gpu_check`) or None. ``test``: notebook 02's test patients
    ``(ID, region, slices)``. The work on the CPU is :func:`cpu_work`'s."""
    from ..synthesis.grid import alphas_for

    names = list(p.get("denoiser_names") or ["cnn10", "wganvgg", "gauss_ri"])
    out = []
    if nb.startswith("02_"):
        for method in ("cnn10", "wganvgg"):
            cfg = p.get(method) or {}
            out.append((f"{method} training", _unit_training(method, tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                                                  for k, v in cfg.items()))),
                        int(cfg.get("iterations", 0)), f"train_{method}_s"))
        # every test slice, and the example slice of each of chest and abdomen, through every denoiser
        examples = len({r for _, r, _ in test} & {"chest", "abdomen"})
        for name in [*names, *(p.get("published") or [])]:
            out.append((f"evaluate {name}", _unit_forward(name, 1, size), sum(n for *_, n in test) + examples, None))
    elif nb.startswith("03_"):
        s = int(p.get("crop") or size)
        published = (params_by_notebook.get("02_denoiser_training") or {}).get("published") or []
        names += [n for n in published if p.get("include_published", True) and n not in names]
        for name in names:
            for dist in ("mse", "dssim", "vgg"):
                grid = alphas_for(dist, p["alphas"], p.get("alphas_dssim"), p.get("alphas_vgg"))
                iters = int(p["max_iter_vgg"] if dist == "vgg" and p.get("max_iter_vgg") else p["max_iter"])
                key = "vgg_flop_rate" if dist == "vgg" else "conv_flop_rate"
                out += _invariance_run(f"{name} {dist}, {len(grid)} alphas", name, dist, len(grid), s, iters, key)
                for k in range(int(p.get("tolerance_refine_steps_vgg" if dist == "vgg" else "tolerance_refine_steps") or 0)):
                    # at most: a refinement stops once the grid brackets the tolerance closely
                    out += _invariance_run(f"{name} {dist} refinement {k + 1}", name, dist,
                                           int(p.get("tolerance_candidates", 1)), s, iters, key)
            if p.get("compare_unconstrained", True) and p.get("hu_range") is not None:
                n_free = len(p.get("unconstrained_alphas") or p["alphas"])
                out += _invariance_run(f"{name} mse without range", name, "mse", n_free, s, int(p["max_iter"]),
                                       "conv_flop_rate")
            lin = min(int(p.get("linearised_crop") or s), s)  # a product J^T J v: about two input gradients
            out.append((f"{name} linearised", _unit_input_gradient(name, 1, lin), 2 * int(p.get("linearised_max_products", 300)),
                        "conv_flop_rate"))
            steps = int(p.get("attack_steps", 10))  # FGSM and BIM on two losses, BIM at the matched budget
            out.append((f"{name} attacks", _unit_input_gradient(name, 1, s), 2 * (1 + steps) + steps, "conv_flop_rate"))
    elif nb.startswith("04_"):
        for name in p.get("natural_denoisers") or []:
            out.append((f"{name} generator", _unit_natural(name, p.get("distance", "dssim"), int(p.get("patch_size", 80)),
                                                           int(p.get("batch_size", 8)), int(p.get("critic_steps", 1))),
                        int(p.get("iterations", 0)), None))
            out.append((f"{name} {p.get('n_samples', 16)} samples", _unit_sampling(name, int(p.get("n_samples", 16)), size,
                                                                                 int(p.get("patch_size", 80))), 1, None))
    elif nb.startswith("05_"):
        from ..analysis.lesion_removal import position_dependent
        from ..data.lesions import LesionSetConfig

        cfg = LesionSetConfig.from_simulation(p.get("simulation") or {}, roi_mm=p.get("roi_mm", 32.0))
        n = len(p.get("diameters_mm") or [1]) * len(p.get("contrasts_hu") or [1]) * int(p.get("realisations", 1))
        rois = 2 * n + int(p.get("realisations", 1)) * int(p.get("absent_per_realisation", 0))
        examples = 2 * len(p.get("example_lesions") or [])
        for name in p.get("denoiser_names") or []:  # every scan's ROI (with a 24 px margin) through each denoiser
            whole = position_dependent(_meta_denoiser(name))
            side = cfg.image_size if whole else cfg.roi_px + 48
            out.append((f"{name} lesion ROIs", _unit_forward(name, 1, side), rois, None))
            out.append((f"{name} lesion examples", _unit_forward(name, 1, cfg.image_size if whole else 2 * cfg.roi_px + 49),
                        examples, None))
        for name in p.get("invariance_denoisers") or []:
            out += _invariance_run(f"{name} lesion invariance", name, p.get("invariance_distance", "mse"),
                                   len(p.get("invariance_alphas") or [1]), int(p.get("invariance_crop", 48)),
                                   int(p.get("invariance_iterations", 0)), "conv_flop_rate")
    return out


def cpu_work(nb: str, p: dict, patients: list[tuple], test: list[tuple], size: int, cores: int) -> list[tuple[str, float]]:
    """What notebook ``nb`` computes on the CPU whatever the GPU: ``(what, seconds)``, from
    :data:`CPU_COSTS` (DICOM pairs read where PairedCTData's 2 GiB slice cache misses, the lesion scans
    simulated on ``cores`` cores) and the notebook's fixed cost."""
    read = CPU_COSTS["read_pair_s"] * (size / 512) ** 2
    slices = sum(n for *_, n in patients)
    out = [("kernel, imports, figures, artifacts", CPU_COSTS["fixed_s"].get(nb, 30.0))]
    if nb.startswith("01_"):
        per = p.get("noise_slices_per_patient")
        out.append(("slices read", read * sum(min(n, per or n) for *_, n in patients)))
    elif nb.startswith("02_"):
        miss = max(0.0, 1 - _PAIR_CACHE_BYTES / (8 * size * size) / max(0.6 * slices, 1))
        for method in ("cnn10", "wganvgg"):
            cfg = p.get(method) or {}
            draws = int(cfg.get("iterations", 0)) * int(cfg.get("batch_size", 1)) * (
                int(cfg.get("critic_steps", 1)) if method == "wganvgg" else 1)
            out.append((f"{method} patches: {draws:,} drawn, {miss:.0%} read from disk", draws * miss * read))
        out.append(("test slices read", sum(n for *_, n in test) * read))
    elif nb.startswith("05_"):
        sim = p.get("simulation") or {}
        n, views = int(sim.get("image_size", 512)), int(sim.get("n_views", 720))
        ref_n, ref_views = CPU_COSTS["reference"]
        nd, nc = len(p.get("diameters_mm") or [1]), len(p.get("contrasts_hu") or [1])
        absent = int(p.get("absent_per_realisation", 0))
        per = (CPU_COSTS["radon_s"] * (1 + nd)
               + CPU_COSTS["iradon_s"] * (nd + 2 * nd * nc + 2 * absent))
        if sim.get("scanner", "clinical") == "clinical":
            # two material maps per slice, the polychromatic detector per scan; the projector's angles are
            # set by the image, not by the views
            per += CPU_COSTS["radon_s"] + CPU_COSTS["detector_s"] * (nd * nc + absent) * views / 1152
            views = ref_views
        r = int(p.get("realisations", 1))
        out.append((f"lesion scans on {cores} cores (first run; cached)",
                    r * per * (n / ref_n) ** 2 * views / ref_views / min(cores, r)))
    return out


def gpu_estimate(params_by_notebook: dict[str, dict], data: str | None = None, calibration: dict | None = None,
                 cores: int | None = None) -> list[dict]:
    """An **estimate** of each notebook's time and peak GPU memory on one H100-class GPU for these
    parameters (a preset's resolved plan, ``{notebook: parameters}``), until it is measured there.

    Every step a notebook repeats (:func:`work_units`: a training step, an invariance step of each
    denoiser and distance, a natural-invariance update, the samples) is run once on the ``meta``
    device, where nothing is computed, and counted by :class:`OpCounter`: FLOPs, kernel launches,
    bytes written, bytes held at its peak (weights, optimizer state, what autograd saves). Its time is
    max(FLOPs at :data:`GPU_ASSUMED`'s rate + bytes at its bandwidth, launches x launch time); the
    work that stays on the CPU (:func:`cpu_work`: DICOM reads, the lesion scans on ``cores`` cores, the
    notebook's fixed cost) is added. ``calibration`` (:func:`calibration_from_gpu_check`) replaces the
    assumed rates by measured ones. The paper rehearsal checks the counting: the FLOPs it measures in
    each notebook's kernel equal this count for the rehearsal's own parameters.

    Returns one dict per notebook: ``notebook, seconds, gpu_seconds, cpu_seconds, flops, peak_gib``
    (the largest unit's peak, plus 20 % and the CUDA context's 0.5 GiB), ``parts`` (the three largest
    terms, in words) and ``label``."""
    gpu = {**GPU_ASSUMED, **(calibration or {})}
    cores = cores or os.cpu_count() or 1
    patients, size = _data_patients(params_by_notebook, data)
    p02 = params_by_notebook.get("02_denoiser_training") or {}
    test = _test_patients(patients, int(p02.get("seed", 0)), p02.get("published") or [], data)
    rows = []
    for nb, p in params_by_notebook.items():
        parts, flops, gpu_s, peak = [], 0.0, 0.0, 0
        for what, unit, count, key in work_units(nb, p, params_by_notebook, size, test):
            measured = gpu.get(key) if key else None
            if key and key.endswith("_s") and measured:
                t = count * measured
            else:
                t = count * _seconds(unit, {**gpu, "flop_rate": measured} if measured else gpu)
            flops += unit["flops"] * count
            gpu_s += t
            peak = max(peak, unit["peak_bytes"])
            parts.append((t, f"{what}: {count:,} x {t / max(count, 1):.2g} s"))
        cpu = cpu_work(nb, p, patients, test, size, cores)
        parts += [(t, f"{what}: {t:.0f} s") for what, t in cpu[1:]]
        parts.sort(key=lambda t: -t[0])
        cpu_s = sum(t for _, t in cpu)
        rows.append({"notebook": nb, "seconds": gpu_s + cpu_s, "gpu_seconds": gpu_s, "cpu_seconds": cpu_s,
                     "flops": flops, "peak_gib": peak / 2**30 * 1.2 + (0.5 if peak else 0.0),
                     "parts": [w for t, w in parts[:3] if t > 0],
                     "label": ("calibrated" if calibration else "estimate") + f": {gpu['source']}"})
    return rows


def calibration_from_gpu_check(check: dict) -> dict:
    """Measured rates from ``bench --gpu-check``'s record (``gpu_check.json``) for :func:`gpu_estimate`:
    the FLOP rate of an invariance step (CNN-10 + bounded MSE, and + VGG16, at the check's size and 8
    alphas, FLOPs counted as :func:`gpu_estimate` counts them) and the seconds of one training step of
    each denoiser at the paper's batch and patch sizes. Empty for a record without them (a failed check)."""
    out: dict = {}
    size = check.get("size")
    for dist, key in (("mse", "conv_flop_rate"), ("vgg", "vgg_flop_rate")):
        row = check.get(f"cnn10_{dist}") or {}
        if size and row.get("alpha_iterations_per_s"):
            unit = _unit_invariance("cnn10", dist, 8, int(size))
            out[key] = unit["flops"] * row["alpha_iterations_per_s"] / 8
    for method in ("cnn10", "wganvgg"):
        row = check.get(f"train_{method}") or {}
        if row.get("iterations_per_s"):
            out[f"train_{method}_s"] = 1.0 / row["iterations_per_s"]
    if out:
        out["source"] = f"measured on {check.get('device', 'the GPU')} by the GPU check"
    return out


def paper_parameters(preset: str = "paper") -> dict[str, dict]:
    """``{notebook: parameters}`` of a preset as the runner resolves them (its plan)."""
    from .presets import load_preset, plan, runtime_parameters

    p = load_preset(preset)
    return {stem: s.parameters() for stem, s in plan(p, runtime=runtime_parameters(p)).items()}


def estimate_lines(rows: list[dict]) -> list[str]:
    """:func:`gpu_estimate`'s rows as the runner prints them: one line per notebook and a total."""
    def hours(s: float) -> str:
        return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"

    out = [f"{r['notebook']}: {hours(r['seconds'])}, peak GPU memory {r['peak_gib']:.1f} GiB ({'; '.join(r['parts'])})"
           for r in rows]
    total = sum(r["seconds"] for r in rows)
    label = rows[0]["label"] if rows else "estimate"
    return [f"GPU time and memory, {label}; one GPU, until measured: {hours(total)} in all", *out]
