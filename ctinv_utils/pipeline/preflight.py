"""Checks before the long work: a run that cannot finish says so before it spends an hour.

:func:`preflight` runs in the runner after the preset's parameters are validated and before the first
notebook starts. It checks

* ImageNet VGG weights that a notebook's parameters require (``vgg_weights: imagenet`` never falls
  back to a random VGG): the file must be where :mod:`ctinv_utils.models.vgg` looks;
* a data root (``--data``) that holds at least one patient with a pairable low- and full-dose series
  (from directory listings only: milliseconds, no header is read);
* a preset meant for a GPU (``meant_for: gpu``) on a machine without one: the run stops with an
  estimate of the time it would take here, measured by timing a few steps of CNN-10 at the preset's
  sizes, unless the user confirms (``--confirm-cpu``).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..data.dicom_io import DataRootError, DicomSeriesError, locate_patients
from ..errors import CTInvError
from ..models.vgg import URLS, _hub_file, weights_path


class PreflightError(CTInvError):
    """A run that cannot finish (or would take far longer than its preset is meant for)."""


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
            problems.append(msg + "; run it on a machine with a CUDA GPU, or pass --confirm-cpu "
                                  "(make reproduce ... CONFIRM_CPU=1) to run it here anyway")
    if problems:
        if len(problems) == 1:
            raise PreflightError(f"the run cannot start: {problems[0]}")
        raise PreflightError("the run cannot finish as set up (nothing was started):\n" +
                             "\n".join(f"  - {p}" for p in problems))
    return notes
