"""Side-by-side benchmark of invariance synthesis: the plain loop a user writes from the talk, plenoptic
(when installed) and ctinv, measured in one run.

    python -m ctinv_utils bench [--sizes 128 256] [--alphas 8] [--iters 30] [--out bench_results]
    python -m ctinv_utils bench --check        # small sizes: correctness only (CI)
    python -m ctinv_utils bench --gpu-check    # one GPU, under 5 minutes

Each measurement runs in a fresh child process. The **baseline** is the talk's objective written
plainly (one alpha at a time, a fresh Adam each, weights not frozen, f(x) recomputed every
iteration); **plenoptic** 2.x ``Metamer`` runs the same objective when installed; **ctinv** is
``Invariance`` with every alpha in one batch. Reported in ``<out>/bench.json`` and ``bench.png``:
throughput in (alpha x iteration)/s and its ratios, the GFLOP/s of the CNN-10 step against this
machine's own large-convolution throughput, peak memory, and per alpha how far ctinv's objective is
from the baseline's after the same iterations (see ``TOLERANCE``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

DENOISERS = ("cnn10", "wganvgg", "gauss_ri")
DISTANCES = ("mse", "dssim", "vgg")
LR = 1e-2
INIT_STD = 0.1
# The fast path must reach the baseline's objective: per alpha, |L_ctinv - L_baseline| at most this
# fraction of the objective's scale (max(|L|, d(x, x_inv0)), after the same iterations from the same
# start). Pixels are not compared: in the directions the denoiser ignores the gradient is ~0 and Adam's
# normalised step there is ~lr times the sign of rounding noise, so two exact implementations with
# different float summation orders (channels_last, batching) drift apart by ~lr per step exactly
# where the invariance lives, while reaching the same objective.
TOLERANCE = 1e-2
# ... except where ctinv's VGG16 features run in bf16 ("auto" on hardware with bf16 matrix units, the
# fast path there): its objective, judged in fp32, within this fraction instead.
TOLERANCE_BF16_VGG = 5e-2


def tolerance_for(distance: str, precision: str) -> float:
    """The objective tolerance of ctinv against the baseline for ``distance``, given the precision
    ctinv's run computed it in (recorded by the run, not derived again)."""
    return TOLERANCE_BF16_VGG if distance == "vgg" and precision == "bf16" else TOLERANCE


def _setup(denoiser: str, size: int, seed: int = 0):
    import torch

    from ..models import build_denoiser

    warnings.simplefilter("ignore")
    g = torch.Generator().manual_seed(seed)
    x = 1.0 + 0.3 * torch.randn(1, 1, size, size, generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        f = build_denoiser(denoiser)
    return x, f.eval()


def alpha_grid(n: int) -> list[float]:
    """``n`` alphas log-spaced over [0.01, 1]."""
    import numpy as np

    return [float(a) for a in np.geomspace(0.01, 1.0, n)]


def _noise(x, seed: int = 0):
    import torch

    return torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * INIT_STD


def _on_gpu(device) -> bool:
    return str(device).startswith("cuda")


def _sync(device) -> None:
    """Wait for ``device``'s queued work (a GPU runs asynchronously; nothing to wait for on a CPU)."""
    import torch

    if _on_gpu(device):
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch

    if _on_gpu(device):
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device) -> float:
    """Peak memory (MB): the GPU allocator's since :func:`_reset_peak`; on a CPU the process's peak
    resident set."""
    import torch

    return (torch.cuda.max_memory_allocated(device) / 2**20 if _on_gpu(device)
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_baseline(denoiser, distance, size, alphas, iters, device="cpu"):
    """The talk's objective as a user writes it: per alpha, fresh Adam, nothing frozen or cached."""
    import torch

    from ..synthesis.distances import get_distance

    x, f = _setup(denoiser, size)
    x, f = x.to(device), f.to(device)
    d = get_distance(distance, vgg_allow_random=True, vgg_precision="fp32").to(device)  # PyTorch's default
    noise = _noise(x).to(device)
    results = []
    for a in alphas:
        x_inv = (x + noise).clone().requires_grad_(True)
        opt = torch.optim.Adam([x_inv], lr=LR)
        for _ in range(iters):
            opt.zero_grad()
            loss = (d(f(x), f(x_inv)) - a * d(x, x_inv)).sum()
            loss.backward()
            opt.step()
        results.append(x_inv.detach().cpu())
    return torch.cat(results), d.precision_on(device)


def run_ctinv(denoiser, distance, size, alphas, iters, device="cpu"):
    from ..synthesis.invariances import Invariance

    x, f = _setup(denoiser, size)
    inv = Invariance(x.to(device), f.to(device), distance, alpha=list(alphas), seed=0, lr=LR,
                     init_noise_std=INIT_STD, vgg_allow_random=True, hu_range=None)  # the talk's objective
    inv.synthesize(iters, progress=False)
    return inv.result.cpu(), inv.distance.precision_on(device)


def run_plenoptic(denoiser, distance, size, alphas, iters, device="cpu"):
    import plenoptic as po
    import torch

    from ..synthesis.distances import get_distance

    x, f = _setup(denoiser, size)
    x, f = x.to(device), f.to(device)
    d = get_distance(distance, vgg_allow_random=True, vgg_precision="fp32").to(device)
    noise = _noise(x).to(device)
    f.requires_grad_(False)  # plenoptic requires it (po.remove_grad)
    results = []
    for a in alphas:
        met = po.Metamer(x, f, loss_function=lambda fa, fb: d(fa, fb).sum(),
                         penalty_function=lambda img, _x=x, _a=a: -_a * d(_x, img).sum(), penalty_lambda=1.0)
        met.setup(initial_image=(x + noise).clone(), optimizer=torch.optim.Adam, optimizer_kwargs={"lr": LR})
        met.synthesize(max_iter=iters, store_progress=False, stop_criterion=0.0)
        results.append(met.metamer.detach().cpu())
    return torch.cat(results), d.precision_on(device)


# each runner returns (x_inv (A, 1, H, W), the precision its distance computed in)
RUNNERS = {"baseline": run_baseline, "ctinv": run_ctinv, "plenoptic": run_plenoptic}


def _child(method, denoiser, distance, size, n_alphas, iters, device, out_file) -> None:
    """Runs one measurement (in a child process) and writes its timing, memory and x_inv."""
    import torch

    alphas = alpha_grid(n_alphas)
    RUNNERS[method](denoiser, distance, size, alphas, 2, device)  # warm-up (kernels, allocator, caches)
    _sync(device)
    _reset_peak(device)
    t0 = time.perf_counter()
    x_inv, precision = RUNNERS[method](denoiser, distance, size, alphas, iters, device)
    _sync(device)
    seconds = time.perf_counter() - t0
    torch.save({"seconds": seconds, "peak_mb": _peak_mb(device), "x_inv": x_inv, "precision": precision}, out_file)


def measure(method, denoiser, distance, size, n_alphas, iters, device="cpu", workdir: Path | None = None) -> dict:
    """One measurement in a fresh process (no GLIBC_TUNABLES inherited: each side sets up its own)."""
    import tempfile

    import torch

    workdir = Path(workdir or tempfile.mkdtemp(prefix="ctinv-bench-"))
    out = workdir / f"{method}-{denoiser}-{distance}-{size}.pt"
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    cmd = [sys.executable, "-m", "ctinv_utils", "bench", "--child", method, denoiser, distance, str(size), str(n_alphas),
           str(iters), device, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} {denoiser}/{distance} at {size} px failed:\n{proc.stderr[-2000:]}")
    rec = torch.load(out, weights_only=True)
    rec["throughput"] = n_alphas * iters / rec["seconds"]
    return rec


def objective_difference(denoiser, distance, size, alphas, x_inv_a, x_inv_b, device: str = "cpu") -> list[float]:
    """Per alpha: |L(x_inv_a) - L(x_inv_b)| / max(|L(x_inv_a)|, d(x, x_inv0)), L the talk's objective,
    computed on ``device``."""
    import torch

    from ..synthesis.distances import get_distance

    x, f = _setup(denoiser, size)
    x, f = x.to(device), f.to(device)
    x_inv_a, x_inv_b = x_inv_a.to(device), x_inv_b.to(device)
    d = get_distance(distance, vgg_allow_random=True, vgg_precision="fp32").to(device)  # both judged in fp32
    with torch.no_grad():
        fx, start = f(x), x + _noise(x).to(device)  # the noise is drawn on the CPU
        scale0 = float(d(x, start).reshape(-1)[0])
        out = []
        for i, a in enumerate(alphas):
            la, lb = ((d(fx, f(v[i:i + 1])) - a * d(x, v[i:i + 1])).sum().item() for v in (x_inv_a, x_inv_b))
            out.append(abs(la - lb) / max(abs(la), scale0, 1e-12))
    return out


def conv_throughput(device: str = "cpu") -> float:
    """GFLOP/s of this machine on a large 3x3 convolution (forward), best of 5."""
    import torch

    from ..speed import tune_allocator

    tune_allocator()
    x = torch.randn(8, 64, 128, 128, device=device).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device).to(memory_format=torch.channels_last).requires_grad_(False)
    flop = 2 * 8 * 128 * 128 * 64 * 64 * 9
    best = float("inf")
    for _ in range(6):
        _sync(device)
        t0 = time.perf_counter()
        conv(x)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return flop / best / 1e9


def cnn10_flop_per_step(size: int) -> float:
    """FLOP of one (alpha x iteration) of ctinv's CNN-10 step: forward of f(x_inv) and the gradient
    with respect to x_inv only (frozen weights; f(x) computed once): about twice the forward."""
    per_px = 2 * (1 * 64 * 81 + 64 * 32 * 9 + 32 * 1 * 25)
    return 2 * per_px * size * size


def plenoptic_available() -> bool:
    try:
        import plenoptic  # noqa: F401
    except ImportError:
        return False
    return True


def benchmark(sizes=(128, 256), denoisers=DENOISERS, distances=DISTANCES, n_alphas: int = 8, iters: int = 30,
              check_iters: int = 100, device: str = "cpu", out_dir: str | Path = "bench_results",
              with_plenoptic: bool | None = None, verbose: bool = True) -> dict:
    """Measure every (denoiser, distance, size) with each method; write JSON and a plot."""
    with_plenoptic = plenoptic_available() if with_plenoptic is None else with_plenoptic
    methods = ["baseline", "ctinv"] + (["plenoptic"] if with_plenoptic else [])
    peak = conv_throughput(device)
    rows = []
    if verbose:
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {device}; "
              f"large 3x3 conv: {peak:.0f} GFLOP/s; {n_alphas} alphas, {iters} timed iterations each")
        print(f"{'denoiser':9s} {'distance':8s} {'px':>4s} " + " ".join(f"{m + ' (a*it/s)':>20s}" for m in methods)
              + f" {'x baseline':>10s} {'x plenoptic':>11s} {'dL/L':>9s} {'GFLOP/s':>8s} {'peak MB':>8s}")
    for size in sizes:
        for den in denoisers:
            for dist in distances:
                rec = {m: measure(m, den, dist, size, n_alphas, iters, device) for m in methods}
                # correctness: the same number of iterations from the same start
                base = measure("baseline", den, dist, size, n_alphas, check_iters, device)["x_inv"]
                fast_run = measure("ctinv", den, dist, size, n_alphas, check_iters, device)
                fast, tolerance = fast_run["x_inv"], tolerance_for(dist, fast_run["precision"])
                pixel = (base - fast).abs().flatten(1).max(1).values.tolist()
                err = objective_difference(den, dist, size, alpha_grid(n_alphas), base, fast)
                row = {"denoiser": den, "distance": dist, "size": size, "n_alphas": n_alphas, "iters": iters,
                       **{f"{m}_throughput": rec[m]["throughput"] for m in methods},
                       **{f"{m}_peak_mb": rec[m]["peak_mb"] for m in methods},
                       "ratio_to_baseline": rec["ctinv"]["throughput"] / rec["baseline"]["throughput"],
                       "ratio_to_plenoptic": (rec["ctinv"]["throughput"] / rec["plenoptic"]["throughput"]
                                              if with_plenoptic else None),
                       "objective_rel_diff_after_check_iters": err, "max_abs_pixel_diff": pixel,
                       "check_iters": check_iters,
                       "ctinv_precision": fast_run["precision"], "tolerance": tolerance,
                       "within_tolerance": max(err) <= tolerance}
                if den == "cnn10":
                    row["gflops"] = rec["ctinv"]["throughput"] * cnn10_flop_per_step(size) / 1e9
                    row["fraction_of_conv_peak"] = row["gflops"] / peak
                rows.append(row)
                if verbose:
                    ratio_p = f"{row['ratio_to_plenoptic']:10.2f}x" if with_plenoptic else f"{'-':>11s}"
                    print(f"{den:9s} {dist:8s} {size:4d} " + " ".join(f"{rec[m]['throughput']:20.2f}" for m in methods)
                          + f" {row['ratio_to_baseline']:9.2f}x {ratio_p} {max(err):9.1e} "
                          + (f"{row['gflops']:8.1f}" if "gflops" in row else f"{'-':>8s}")
                          + f" {rec['ctinv']['peak_mb']:8.0f}", flush=True)
    result = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "device": device,
              "conv_gflops": peak, "methods": methods, "rows": rows, "tolerance": TOLERANCE}
    out = Path(out_dir)
    from .. import atomic

    atomic.write_json(out / "bench.json", result)
    plot(result, out / "bench")
    return result


def plot(result: dict, path_without_suffix: Path) -> None:
    """Throughput per (denoiser, distance, size) and method, with ctinv's ratio to the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .. import atomic

    rows = result["rows"]
    labels = [f"{r['denoiser']}\n{r['distance']}\n{r['size']} px" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    width = 0.8 / len(result["methods"])
    for k, m in enumerate(result["methods"]):
        ax.bar(np.arange(len(rows)) + (k - (len(result["methods"]) - 1) / 2) * width,
               [r[f"{m}_throughput"] for r in rows], width, label=m)
    for i, r in enumerate(rows):
        ax.annotate(f"{r['ratio_to_baseline']:.1f}x", (i, r["ctinv_throughput"]), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("(α × iteration) per second")
    ax.set_xticks(np.arange(len(rows)), labels, fontsize=7)
    ax.set_title(f"invariance synthesis on {result['machine']} ({result['cores']} cores, {result['device']}); "
                 "label: ctinv / baseline", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic.savefig(fig, path_without_suffix)
    plt.close(fig)


#: the GPU check's training bursts: the paper preset's batch and patch sizes
PAPER_BURSTS = {"cnn10": {"batch_size": 68, "patch_size": 92},
                "wganvgg": {"batch_size": 77, "patch_size": 77, "vgg_weights": "imagenet_or_random"}}


class _RandomPatches:
    """Random training patches (the check times the step, not the data): ``next_batch(b)`` -> (low,
    full) (b, 1, p, p)."""

    def __init__(self, patch_size: int):
        import torch

        self.p, self.g = patch_size, torch.Generator().manual_seed(0)

    def next_batch(self, b: int):
        import torch

        x = torch.randn(b, 1, self.p, self.p, generator=self.g)
        return x, x * 0.9


def gpu_check(out_dir: str | Path = "bench_results", device: str = "cuda", size: int = 512, iterations: int = 3000,
              reference_iterations: int = 100, bursts: dict | None = None, burst_iterations: int = 50) -> dict:
    """The GPU check of the README (one GPU, well under 5 minutes): ``iterations`` (3000) of CNN-10 +
    bounded MSE at ``size`` (512) px for 8 alphas, the same with the VGG distance (its features in
    bf16: the default on a GPU with bf16), each first checked against an fp32 run without TF32 of
    ``reference_iterations`` (100): the objective, judged in fp32, within the benchmark's tolerance
    (:func:`tolerance_for`); then a short training burst of each denoiser at the paper preset's batch
    sizes (``bursts``, default :data:`PAPER_BURSTS`; the method's own step, timed after as many warm-up
    steps). Prints throughput, memory and the check, and writes ``gpu_check.json`` to ``out_dir``.
    ``device="cpu"`` with small sizes runs the same code path without a GPU (the tests do, so that the
    first GPU run does not meet a broken check)."""
    import torch

    from .. import atomic
    from ..settings import check_device
    from ..synthesis.distances import get_distance
    from ..synthesis.invariances import Invariance
    from ..training.methods import TrainConfig, build_method

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--gpu-check needs a CUDA GPU; torch sees none")
    dev = torch.device(check_device(device, "GPU check device"))
    cuda = dev.type == "cuda"
    if iterations <= reference_iterations:
        raise ValueError(f"iterations ({iterations}) must exceed reference_iterations ({reference_iterations})")
    if cuda:
        torch.cuda.set_device(dev)  # "cuda:1": its name, its memory, its synchronisation

    name = torch.cuda.get_device_name(dev) if cuda else f"{platform.processor() or platform.machine()} (CPU)"
    out = {"device": name, "torch": torch.__version__, "size": size, "iterations": iterations}
    alphas = alpha_grid(8)
    rest = iterations - reference_iterations
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for dist in ("mse", "vgg"):
            x, f = _setup("cnn10", size)
            x, f = x.to(dev), f.to(dev)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            fp32_vgg = get_distance("vgg", vgg_allow_random=True, vgg_precision="fp32").to(dev) if dist == "vgg" else None
            ref = Invariance(x, f, dist, alpha=alphas, lr=LR, vgg_allow_random=True, distance_module=fp32_vgg)
            ref.synthesize(reference_iterations, progress=False)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            inv = Invariance(x, f, dist, alpha=alphas, lr=LR, vgg_allow_random=True)
            inv.synthesize(reference_iterations, progress=False)
            # the fast path's result judged as the benchmark judges it: the objective, in fp32
            err = objective_difference("cnn10", dist, size, alphas, ref.result, inv.result, str(dev))
            tolerance = tolerance_for(dist, inv.distance.precision_on(str(dev)))
            _sync(dev)
            _reset_peak(dev)
            t0 = time.perf_counter()
            inv.synthesize(rest, progress=False)
            _sync(dev)
            sec = time.perf_counter() - t0
            row = {f"seconds_{iterations}_iterations_8_alphas": sec * iterations / rest,
                   "alpha_iterations_per_s": 8 * rest / sec, "peak_mb": _peak_mb(dev),
                   "precision": inv.distance.precision_on(str(dev)),
                   f"objective_rel_diff_to_fp32_after_{reference_iterations}": err, "tolerance": tolerance,
                   "within_tolerance": max(err) <= tolerance}
            out[f"cnn10_{dist}"] = row
            print(f"{name}: CNN-10 + {dist} {size} px, 8 alphas, {iterations} iterations: "
                  f"{row[f'seconds_{iterations}_iterations_8_alphas']:.1f} s (target < 10 s for mse at 512 px, 3000 "
                  f"iterations), peak {row['peak_mb']:.0f} MB; {row['precision']}{' + TF32' if cuda else ''} against "
                  f"fp32 after {reference_iterations} it: objective within {max(err):.1e} (tolerance {tolerance:g}): "
                  f"{'ok' if row['within_tolerance'] else 'FAILED'}", flush=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    for method, settings in (bursts or PAPER_BURSTS).items():
        cfg = TrainConfig.from_dict({"method": method, "iterations": burst_iterations, **settings})
        m = build_method(cfg, str(dev))
        source = _RandomPatches(cfg.patch_size)

        def batch(source=source, b=cfg.batch_size):
            return tuple(t.to(dev) for t in source.next_batch(b))

        # the method's own step (no checkpoint write in the timing); warm-up: cuDNN's search, the allocator
        for it in range(burst_iterations):
            m.step(batch, it)
        _sync(dev)
        _reset_peak(dev)
        t0 = time.perf_counter()
        for it in range(burst_iterations, 2 * burst_iterations):
            m.step(batch, it)
        _sync(dev)
        sec = time.perf_counter() - t0
        out[f"train_{method}"] = {"iterations_per_s": burst_iterations / sec, "peak_mb": _peak_mb(dev),
                                  "batch_size": cfg.batch_size, "patch_size": cfg.patch_size}
        print(f"{name}: training {method} at batch {cfg.batch_size}, patch {cfg.patch_size}: "
              f"{burst_iterations / sec:.1f} it/s, peak {out[f'train_{method}']['peak_mb']:.0f} MB", flush=True)
    atomic.write_json(Path(out_dir) / "gpu_check.json", out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctinv_utils bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--denoisers", nargs="+", default=list(DENOISERS), choices=DENOISERS)
    ap.add_argument("--distances", nargs="+", default=list(DISTANCES), choices=DISTANCES)
    ap.add_argument("--alphas", type=int, default=8)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--check-iters", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="bench_results")
    ap.add_argument("--no-plenoptic", action="store_true")
    ap.add_argument("--check", action="store_true", help="small and fast: correctness only (CI)")
    ap.add_argument("--gpu-check", action="store_true")
    ap.add_argument("--child", nargs=8, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        method, den, dist, size, n, iters, device, out = a.child
        _child(method, den, dist, int(size), int(n), int(iters), device, out)
        return 0
    if a.gpu_check:
        res = gpu_check(a.out)
        bad = [k for k, v in res.items() if isinstance(v, dict) and v.get("within_tolerance") is False]
        if bad:
            print(f"FAILED: {bad}: the fast path's objective is further from fp32 than its tolerance")
        return 1 if bad else 0
    if a.check:
        res = benchmark((32,), ("cnn10",), ("mse", "dssim"), 2, 3, 10, a.device, a.out, False)
    else:
        res = benchmark(tuple(a.sizes), tuple(a.denoisers), tuple(a.distances), a.alphas, a.iters, a.check_iters,
                        a.device, a.out, None if not a.no_plenoptic else False)
    bad = [r for r in res["rows"] if not r["within_tolerance"]]
    if bad:
        print(f"FAILED: {len(bad)} cases miss the baseline's objective by more than their tolerance "
              f"({TOLERANCE:.0%}; VGG16 in bf16: {TOLERANCE_BF16_VGG:.0%})")
        return 1
    print(f"all {len(res['rows'])} cases reach the baseline's objective within their tolerance ({TOLERANCE:.0%}; "
          f"VGG16 in bf16: {TOLERANCE_BF16_VGG:.0%}); {Path(a.out) / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
