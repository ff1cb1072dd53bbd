"""Benchmark: seconds per Invariance iteration for each denoiser and distance (what the presets'
iteration counts cost), and the glibc allocator setting the runner applies, against the default
allocator as baseline.

    .venv/bin/python tests/benchmarks/bench_synthesis.py [--size 128] [--iters 20]

The allocator comparison runs the same loop in two child processes (glibc reads GLIBC_TUNABLES at
process start), one with and one without the setting.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings

TUNABLES = "glibc.malloc.mmap_threshold=4294967295:glibc.malloc.trim_threshold=4294967295"


def per_iteration(denoiser: str, distance: str, size: int, iters: int) -> float:
    import torch

    from ctinv_utils.models import build_denoiser, freeze
    from ctinv_utils.synthesis.invariances import Invariance

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    x = torch.randn(1, 1, size, size) * 0.3
    inv = Invariance(x, freeze(build_denoiser(denoiser)), distance, alpha=[0.05, 0.5], vgg_allow_random=True)
    inv.synthesize(2, progress=False)  # warm-up
    t0 = time.perf_counter()
    inv.synthesize(iters, progress=False)
    return (time.perf_counter() - t0) / iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(per_iteration(a.child[0], a.child[1], a.size, a.iters))
        return
    print(f"seconds per iteration, 2 alphas batched, {a.size}x{a.size} px, {os.cpu_count()} cores")
    print(f"{'denoiser':10s} {'distance':8s} {'s/it':>8s}")
    for den in ("cnn10", "wganvgg", "gauss_ri"):
        for dist in ("mse", "dssim", "vgg"):
            print(f"{den:10s} {dist:8s} {per_iteration(den, dist, a.size, a.iters):8.4f}")

    def child(env_extra: dict) -> float:
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env_extra
        out = subprocess.run([sys.executable, __file__, "--child", "cnn10", "mse", "--size", "256", "--iters",
                              str(a.iters)], env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    base = child({})
    tuned = child({"GLIBC_TUNABLES": TUNABLES})
    print(f"CNN-10 + MSE at 256 px: default allocator (baseline) {base:.4f} s/it, with GLIBC_TUNABLES "
          f"{tuned:.4f} s/it: {base / tuned:.2f}x")


if __name__ == "__main__":
    main()
