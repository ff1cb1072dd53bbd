"""Write the documentation's Performance page from the benchmark records, never by hand.

Reads ``docs/bench_cpu_*.json`` (``python -m ctinv_utils bench``), ``docs/convergence_quick.json``
(``python -m ctinv_utils convergence``), ``docs/optimisers_quick.json`` (``python -m ctinv_utils
convergence --optimisers``) and the committed run's manifest
(``papermill_runs/quick/manifest.json``) and renders them as Markdown. The documentation build calls
:func:`render` (``docs/site_hooks.py``); run as a script it prints the page, or writes it with
``--out PATH``::

    python docs/gen_performance.py --out /tmp/performance.md

A record that does not name its CPU model (the benchmark writes ``platform.processor()`` or
``platform.machine()``, which is ``x86_64`` on Linux) is shown with the CPU that ``CPU_RECORDED_BESIDE``
gives for exactly that file content (its SHA-256), marked as recorded beside the file; a record that
is neither is shown as "CPU model not recorded".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

#: CPUs of records that do not name their CPU model, keyed by the first 16 hex digits of the
#: record's SHA-256, so that a record measured again elsewhere never inherits the old name. Only the
#: name of the machine is kept here; every number on the page comes from the record itself.
CPU_RECORDED_BESIDE = {
    "00e410b0e3017bc4": "Intel Xeon with AMX",  # bench_cpu_128px.json
    "ed32a0890304a67a": "Intel Xeon with AMX",  # bench_cpu_256px_cnn10_mse.json
    "0147049b3e224ce5": "AMD EPYC, AVX2 only (no AMX)",  # bench_cpu_256px_cnn10_mse_epyc.json
    "a020e75c5e26edf6": "Intel Xeon with AMX",  # convergence_quick.json
}

DENOISERS = {"cnn10": "CNN-10", "wganvgg": "WGAN-VGG", "gauss_ri": "Gauss+RI"}
DISTANCES = {"mse": "bounded MSE", "dssim": "(1−SSIM)/2", "vgg": "VGG16"}


def _name(table: dict, key: str) -> str:
    return table.get(key, key)


def _case(row: dict) -> str:
    return f"{_name(DENOISERS, row['denoiser'])}, {_name(DISTANCES, row['distance'])}"


def cpu_name(record: dict, path: Path) -> str | None:
    """The CPU model: the record's own ``cpu`` entry, else the one noted beside this exact file."""
    if record.get("cpu"):
        return str(record["cpu"])
    return CPU_RECORDED_BESIDE.get(hashlib.sha256(path.read_bytes()).hexdigest()[:16])


def cpu_of(record: dict, path: Path) -> str:
    """The CPU a record was measured on, with what the record itself says about the machine."""
    machine = record.get("machine") or record.get("device_name")
    cores = record.get("cores")
    threads = record.get("threads")
    where = ", ".join(
        x for x in (machine, f"{cores} cores" if cores else None, f"{threads} threads" if threads else None) if x
    )
    name = cpu_name(record, path)
    if name is None:
        return f"{where} (CPU model not recorded)"
    if record.get("cpu"):
        return f"{name} ({where})"
    return f"{name} ({where}; the CPU model noted beside the record)"


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _range(values: list[float], fmt: str = "{:.2f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}–{fmt.format(hi)}"


def bench_section(path: Path) -> list[str]:
    rec = json.loads(path.read_text(encoding="utf-8"))
    rows = rec["rows"]
    sizes = sorted({r["size"] for r in rows})
    n_alphas = sorted({r["n_alphas"] for r in rows})
    iters = sorted({r["iters"] for r in rows})
    checks = sorted({r["check_iters"] for r in rows})
    title = f"{' and '.join(f'{s}×{s}' for s in sizes)} px, {', '.join(map(str, n_alphas))} α per run"
    if len(rows) == 1:
        title += f", {_name(DENOISERS, rows[0]['denoiser'])} with {_name(DISTANCES, rows[0]['distance'])}"
    cpu = cpu_name(rec, path)
    title += f": {cpu.split(',')[0]}" if cpu else f": {rec.get('device', 'cpu')}"
    out = [
        f"### {title}",
        "",
        f"Record: `docs/{path.name}`. CPU: {cpu_of(rec, path)}; device `{rec.get('device', 'cpu')}`. "
        f"{', '.join(map(str, iters))} timed iterations after a warm-up; the objective compared after "
        f"{', '.join(map(str, checks))} iterations from the same start, within a relative "
        f"{rec.get('tolerance', 0.01):.0%}"
        + (
            f" ({rec['tolerance_bf16_vgg']:.0%} where VGG16 features run in bf16)"
            if rec.get("tolerance_bf16_vgg")
            else ""
        )
        + ".",
        "",
    ]
    runs = rec.get("runs")
    if runs:
        yard = ", ".join(f"{name.replace('_', ' ')}: {v:.0f} GFLOP/s" for name, v in runs.items())
        out += [
            f"The rows come from {len(runs)} runs, each with its own 3×3 convolution yardstick ({yard}); "
            "each row's ratios come from one run.",
            "",
        ]
    else:
        out += [f"3×3 convolution yardstick in the same run: {rec['conv_gflops']:.0f} GFLOP/s.", ""]
    precisions = sorted({r["ctinv_precision"] for r in rows if r.get("ctinv_precision")})
    if precisions:
        out += [f"ctinv's precision in this run: {', '.join(precisions)}.", ""]
    out += [
        "Throughput in α·it/s; *Δ objective*: the largest relative difference of the objective from the "
        "baseline's over the α.",
        "",
        "| denoiser, distance | baseline | plenoptic | ctinv | ÷ baseline | ÷ plenoptic | Δ objective |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {_case(r)} | {_fmt(r['baseline_throughput'])} | {_fmt(r['plenoptic_throughput'])} | "
            f"**{_fmt(r['ctinv_throughput'])}** | **{r['ratio_to_baseline']:.2f}×** | "
            f"{r['ratio_to_plenoptic']:.2f}× | {max(r['objective_rel_diff_after_check_iters']):.0e}"
            + ("" if r.get("within_tolerance", True) else " (outside tolerance)")
            + " |"
        )
    out += [
        "",
        "Peak memory in MB, and the rate of CNN-10's convolutions in ctinv's step:",
        "",
        "| denoiser, distance | baseline | plenoptic | ctinv | GFLOP/s | of the yardstick |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = f"{r['gflops']:.0f} | {r['fraction_of_conv_peak']:.0%}" if "gflops" in r else "— | —"
        out.append(
            f"| {_case(r)} | {r['baseline_peak_mb']:.0f} | {r['plenoptic_peak_mb']:.0f} | {r['ctinv_peak_mb']:.0f} | {rate} |"
        )
    if any("gflops" in r for r in rows):
        out += [
            "",
            "The GFLOP/s count CNN-10's own convolutions (forward and input gradient) per ctinv step; "
            "with the VGG16 distance most of the work lies in VGG16 and is not counted.",
        ]
    rb = [r["ratio_to_baseline"] for r in rows]
    rp = [r["ratio_to_plenoptic"] for r in rows]

    def med(v: list[float]) -> str:
        return f" (median {statistics.median(v):.2f}×)" if len(v) > 1 else ""

    out += ["", f"**ctinv ÷ baseline: {_range(rb)}×{med(rb)}; ctinv ÷ plenoptic: {_range(rp)}×{med(rp)}.**", ""]
    slower = [r for r in rows if r["ratio_to_baseline"] < 1]
    if slower and all(r["denoiser"] == "gauss_ri" for r in slower):
        names = ", ".join(f"{_name(DENOISERS, r['denoiser'])} with {_name(DISTANCES, r['distance'])}" for r in slower)
        out += [
            f"Slower than the plain loop: {names}. The filter costs almost nothing there, so ctinv's "
            "bookkeeping per iteration (a history entry per α, gradient norm, pixel change) dominates; such "
            "runs take seconds either way.",
            "",
        ]
    if any(r.get("run") for r in rows):
        runs_used = sorted({r["run"] for r in rows if r.get("run")})
        out += ["Runs, as the record names them: " + "; ".join(f"*{x}*" for x in runs_used) + ".", ""]
    png = path.with_suffix(".png")
    if png.exists():
        out += [f"![Throughput of baseline, plenoptic and ctinv ({path.stem})]({png.name})", ""]
    return out


def convergence_section(path: Path) -> list[str]:
    rec = json.loads(path.read_text(encoding="utf-8"))
    s, ref = rec["settings"], rec["reference"]
    lr = ", ".join(f"{_name(DISTANCES, k)} {v}" for k, v in s["lr"].items()) if isinstance(s["lr"], dict) else s["lr"]
    out = [
        "## How close the quick preset's invariances get to the optimum",
        "",
        f"Record: `docs/{path.name}` (`python -m ctinv_utils convergence --preset {rec['preset']}`). "
        f"CPU: {cpu_of(rec, path)}; torch {rec['versions'].get('torch', '?')}.",
        "",
        f"Each denoiser and distance runs twice from the same start on a {s['crop']} px crop: with the "
        f"{rec['preset']} preset's settings (Adam betas {tuple(s['adam_betas'])}, a constant rate per distance: {lr}; "
        f"stopped when every α converged, not before {s['min_iter']} and at most {s['max_iter']} iterations) and "
        f"with the talk's optimiser as the reference ({ref['iterations']} {ref['schedule']}-rate steps of Adam "
        f"{tuple(ref['adam_betas'])} at {ref['lr']}). A loss fraction of 1 means the quick run got as far as the "
        "reference.",
        "",
        "Pairs are quick / reference: the RMS input change x_inv − x in HU, the loss's spread over the last "
        "10 % of the run in %, and the seconds each took.",
        "",
        "| denoiser, distance | α | loss ÷ reference | input change (HU) | iterations (quick) | spread (%) | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rec["rows"]:
        out.append(
            f"| {_case(r)} | {r['alpha']:g} | "
            f"{r['loss_fraction']:.3f} | {r['preset_input_rms_hu']:.0f} / {r['reference_input_rms_hu']:.0f} | "
            f"{r['preset_iterations']} | {r['preset_spread_pct']:.2f} / {r['reference_spread_pct']:.2f} | "
            f"{r['preset_seconds']:.0f} / {r['reference_seconds']:.0f} |"
        )
    frac = [r["loss_fraction"] for r in rec["rows"]]
    ratio = [r["preset_input_rms_hu"] / r["reference_input_rms_hu"] for r in rec["rows"]]
    out += [
        "",
        f"Loss fractions {_range(frac)}; quick RMS input change {_range(ratio)} of the reference's. "
        "The objective is flat where an invariance lives, so a run whose loss has settled can still grow its "
        "input change slowly: read the quick preset's RMS input changes as lower bounds.",
        "",
    ]
    return out


METHOD_NAMES = {"adam": "Adam (every α from x + noise, one batch)",
                "continuation": "continuation (each α from its neighbour's result)",
                "lbfgs": "L-BFGS (batched, projected)"}


def optimisers_section(path: Path) -> list[str]:
    """``python -m ctinv_utils convergence --optimisers``: the way to a converged invariance per method."""
    rec = json.loads(path.read_text(encoding="utf-8"))
    s = rec["settings"]
    out = [
        "## Time to a converged invariance: Adam, continuation, L-BFGS",
        "",
        f"Record: `docs/{path.name}` (`python -m ctinv_utils convergence --optimisers --preset {rec['preset']}`). "
        f"CPU: {cpu_of(rec, path)}; torch {rec['versions'].get('torch', '?')}.",
        "",
        f"Each denoiser and distance on the {rec['preset']} preset's analysed slice "
        f"({rec.get('slice', {}).get('crop', '?')} px crop of test patient {rec.get('slice', {}).get('patient', '?')}), "
        f"three ways, one after the other in one process, each stopped by the project's convergence test (every α's "
        f"loss within 1 % over the last 10 % of its run; Adam from {s['min_iter']} iterations on, a warm start and "
        f"L-BFGS from {s['warm_min_iter']}; at most {s['max_iter']}, VGG16 {s['max_iter_vgg']}). "
        "*× Adam* is Adam's wall time over the method's (> 1: faster); *loss ÷ Adam* is the method's final objective "
        "over Adam's (the objective is negative: > 1 is better, 0.99 is 1 % worse).",
        "",
        "A method would replace Adam for a row where it is at least 2 times faster and no α's objective is more than "
        "1 % worse (loss ÷ Adam ≥ 0.99):",
        "",
        "| denoiser, distance | method | × Adam | worst loss ÷ Adam | every α converged | at least 2x faster, at most 1 % worse |",
        "|---|---|---|---|---|---|",
    ]
    cases = list(dict.fromkeys((r["denoiser"], r["distance"]) for r in rec["rows"]))
    for case in cases:
        for method in [m for m in METHOD_NAMES if m != "adam"]:
            rows = [r for r in rec["rows"] if (r["denoiser"], r["distance"]) == case and r["method"] == method]
            if not rows:
                continue
            worst = min(r["loss_vs_adam"] for r in rows)
            wins = rows[0]["speed_up"] >= 2 and worst >= 0.99
            out.append(f"| {_case(rows[0])} | {method} | {rows[0]['speed_up']:.2f} | {worst:.3f} | "
                       f"{'yes' if all(r['converged'] for r in rows) else 'no'} | {'**yes**' if wins else 'no'} |")
    out += [
        "",
        "Every run, per α:",
        "",
        "| denoiser, distance | method | seconds | × Adam | α | iterations | loss ÷ Adam | converged | input / output change (HU RMS) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rec["rows"]:
        out.append(
            f"| {_case(r)} | {METHOD_NAMES.get(r['method'], r['method'])} | {r['seconds']:.1f} | {r['speed_up']:.2f} | "
            f"{r['alpha']:g} | {r['iterations']} | {r['loss_vs_adam']:.3f} | {'yes' if r['converged'] else '**no**'} | "
            f"{r['input_rms_hu']:.0f} / {r['output_rms_hu']:.1f} |"
        )
    out.append("")
    explorer = rec.get("explorer")
    if explorer:
        out += [
            "### An α the explorer has not computed",
            "",
            "The explorer (notebook 03's widget) optimises an α off the grid when the slider reaches it. Started "
            "from the result of the nearest grid α (`InvarianceExplorer(warm_start=True)`, notebook 03's default), "
            "its early stop may act from 50 iterations on; from x + noise, from 300. Same slice, CNN-10, the grid "
            "from the preset's Adam runs; the objective of the result (lower is better):",
            "",
            "| distance | α | start | seconds | iterations | converged | objective |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in explorer:
            start = "x + noise" if r["started_from"] is None else f"α = {r['started_from']:g}'s result"
            out.append(f"| {_name(DISTANCES, r['distance'])} | {r['alpha']:g} | {start} | {r['seconds']:.1f} | "
                       f"{r['iterations']} | {'yes' if r['converged'] else 'no'} | {r['objective']:.5f} |")
        out.append("")
    return out


def manifest_section(path: Path) -> list[str]:
    rec = json.loads(path.read_text(encoding="utf-8"))
    total = sum(n["wall_s"] for n in rec["notebooks"])
    out = [
        "## The committed quick-preset run",
        "",
        f"Record: `{path.relative_to(ROOT)}`. Device `{rec['device']}` ({rec.get('device_name', '?')}; CPU model "
        "not recorded), "
        f"torch {rec['versions'].get('torch', '?')}, finished {rec['finished'][:10]}. Notebooks load the simulated "
        "data and the trained models from the cache when it holds them, so these are the times of this run, "
        "not of a fresh clone.",
        "",
        "| notebook | wall time (s) | status |",
        "|---|---|---|",
    ]
    for n in rec["notebooks"]:
        out.append(f"| `{n['notebook']}` | {n['wall_s']:.0f} | {n['status']} |")
    out += [f"| all | {total:.0f} ({total / 60:.1f} min) | |", ""]
    return out


def render(docs: Path = DOCS) -> str:
    """The Performance page as Markdown."""
    out = [
        "# Performance",
        "",
        "!!! note \"Generated page\"",
        "    Generated by `docs/gen_performance.py` from the benchmark records in `docs/*.json` at every "
        "documentation build. Numbers move by ±20 % between runs on shared cores; every ratio below comes "
        "from one run, in which all of its methods were timed side by side.",
        "",
        "## What is measured",
        "",
        "`python -m ctinv_utils bench` times three implementations of the talk's invariance synthesis in one run, "
        "each in a fresh child process:",
        "",
        "- **baseline**: the plain loop a user writes from the talk (one α at a time, a fresh Adam, nothing "
        "frozen, f(x) recomputed every step);",
        "- **plenoptic**: plenoptic's `Metamer` with the same objective (`pip install -e '.[bench]'`);",
        "- **ctinv**: `Invariance`, every α of the grid in one batch.",
        "",
        "Throughput is α·iterations per second. Each method's objective per α after the check iterations is "
        "compared with the baseline's; pixels are not, since in the directions a denoiser ignores the gradient "
        "is about zero and two exact implementations drift apart there by rounding. The 3×3 convolution "
        "yardstick (`bench.conv_throughput`) says how fast the machine convolves, so that the ctinv step's "
        "GFLOP/s can be read as a share of it. Peak memory is the child process's.",
        "",
        "```bash",
        ".venv/bin/python -m ctinv_utils bench --sizes 128 --alphas 4 --iters 10 --check-iters 20",
        ".venv/bin/python -m ctinv_utils bench --sizes 256 --denoisers cnn10 --distances mse --alphas 8 "
        "--iters 10 --check-iters 100",
        ".venv/bin/python -m ctinv_utils bench --gpu-check    # on a GPU: TF32 and bf16 against fp32",
        "```",
        "",
        "## Invariance synthesis: ctinv against the plain loop and plenoptic",
        "",
    ]
    for path in sorted(docs.glob("bench_cpu_*.json")):
        out += bench_section(path)
    out += [
        "GPU: not yet measured. `python -m ctinv_utils bench --gpu-check` is the prepared check: TF32, and "
        "VGG16's features in bf16, against an fp32 run of 100 steps, each α's objective within the benchmark's "
        "tolerance, or it exits with status 1.",
        "",
        "### Why ctinv is faster on a CPU",
        "",
        "All of these keep the result (the objective agrees with the plain loop's, above):",
        "",
        "- every α of a grid in one batch, each with its own objective;",
        "- the denoiser frozen: no gradients for its weights;",
        "- the distance's terms of x and f(x) computed once per run, not at every step;",
        "- frozen one-channel convolutions (CNN-10's first and last layer, WGAN-VGG's first) as a matrix "
        "product and shifted sums, where oneDNN's kernels use the CPU poorly (inside the invariance "
        "objective only; tested equal to `conv2d` and autograd);",
        "- VGG16's convolutions in bf16 where the CPU or GPU multiplies bf16 (the layers that read the image "
        "and the comparison stay fp32), fp32 elsewhere;",
        "- `channels_last` convolutions, and freed tensor memory kept by the allocator instead of returned "
        "to the operating system.",
        "",
        "`torch.compile` is not used: on the CPU the compiled step was slower than the eager one.",
        "",
    ]
    conv = docs / "convergence_quick.json"
    if conv.exists():
        out += convergence_section(conv)
    optimisers = docs / "optimisers_quick.json"
    if optimisers.exists():
        out += optimisers_section(optimisers)
    manifest = ROOT / "papermill_runs" / "quick" / "manifest.json"
    if manifest.exists():
        out += manifest_section(manifest)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the page here (default: print it)")
    args = parser.parse_args()
    text = render()
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
