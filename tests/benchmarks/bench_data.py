"""Benchmark: simulated-data generation and cached reload (quick preset), against baselines run in
the same process. Targets (issue 2): generation < 60 s on 2 cores, cached re-run < 2 s.

    .venv/bin/python tests/benchmarks/bench_data.py

Prints wall times and ratios; uses a private temporary cache.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ["CTINV_CACHE"] = tempfile.mkdtemp(prefix="ctinv-bench-")

from ctinv_utils.data.dataset import load_data  # noqa: E402
from ctinv_utils.pipeline.presets import load_preset  # noqa: E402
from ctinv_utils.data.simulated import SimulationConfig, generate  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    cfg = SimulationConfig.from_dict(load_preset("quick")["common"]["simulation"])
    n_cpu = os.cpu_count() or 1
    # baseline: one worker, same config, written to a throw-away folder
    t_serial, _ = timed(lambda: generate(cfg, tempfile.mkdtemp(prefix="serial-"), workers=1, progress=False))
    t_first, data = timed(lambda: load_data(None, cfg.to_dict(), progress=False))
    t_cached, _ = timed(lambda: load_data(None, cfg.to_dict(), progress=False))

    def read_all():
        for i, p in enumerate(data.patients):
            for s in range(p.n_slices):
                data.slice_hu(i, s)

    t_read, _ = timed(read_all)
    slices = int(data.n_slices.sum())
    print(f"quick preset: {len(data)} patients, {slices} slices at {cfg.image_size} px, {cfg.n_views} views, {n_cpu} cores")
    print(f"generation, 1 worker (baseline)   {t_serial:7.2f} s")
    print(f"generation + load, {n_cpu} workers      {t_first:7.2f} s   speed-up {t_serial / t_first:4.2f}x   target < 60 s: "
          f"{'ok' if t_first < 60 else 'MISSED'}")
    print(f"cached re-run (discover + pair)   {t_cached:7.2f} s   {t_first / t_cached:6.0f}x faster      target < 2 s: "
          f"{'ok' if t_cached < 2 else 'MISSED'}")
    print(f"read every slice pair from DICOM  {t_read:7.2f} s   ({1000 * t_read / slices:.1f} ms per pair)")


if __name__ == "__main__":
    main()
