"""How close a preset's invariances get to the optimum: each (denoiser, distance) run with the
preset's notebook-03 settings against a long constant-rate run of the talk's Adam from the same start.

    python -m ctinv_utils convergence [--preset quick] [--reference-iters 2000]
        [--denoisers cnn10 wganvgg gauss_ri] [--distances mse dssim] [--out docs/convergence_quick.json]
    python -m ctinv_utils convergence --optimisers --distances mse dssim vgg [--out docs/optimisers_quick.json]

Needs the preset's notebook 03 to have run (its analysis slice and notebook 02's denoisers). Prints,
per alpha, the preset's final loss as a fraction of the reference's (the objective is negative at
both ends of a useful run: 1.0 = as far as the reference got), both runs' RMS input and output
changes (HU) and both rate-scaled loss changes (the reference converged where it is < 1 %). The
reference is the talk's Adam (betas 0.9/0.999) at a constant ``--reference-lr``: the optimiser a
reader trusts, run long, so that a faster preset setting has to reach its answer. With VGG16 the
reference costs ~10x per step.

With ``--optimisers`` it measures instead the way to a converged invariance, per (denoiser, distance):
the preset's Adam (every alpha from x + noise in one batch), continuation (each alpha from its
neighbour's result) and the batched projected L-BFGS, each stopped by the project's convergence test:
wall time, speed-up over Adam, and per alpha the objective as a fraction of Adam's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from ..pipeline.artifacts import ArtifactError, Artifacts
from ..atomic import write_json
from ..errors import PresetError
from ..paths import run_dir
from ..pipeline.presets import load_preset, notebook_settings, runtime_parameters
from ..progress import progress_bar
from ..provenance import versions
from ..recipes.invariances import TALK_BETAS, InvarianceProtocol, optimise_invariance
from ..synthesis.distances import get_distance
from ..units import hu_to_norm


def compare(preset_name: str = "quick", denoisers=None, distances=("mse", "dssim"), reference_iters: int = 2000,
            reference_lr: float = 0.03, progress: bool = True) -> dict:
    """Run the comparison on the preset's analysed slice and denoisers; returns ``{"settings",
    "reference", "rows"}`` (one row per run and alpha)."""

    x, models, protocol, seed = preset_inputs(preset_name, denoisers)
    rows = compare_settings(x, models, protocol, seed, distances, reference_iters, reference_lr, progress)
    return {"preset": preset_name, "settings": protocol.as_dict(),
            "reference": {"iterations": reference_iters, "lr": reference_lr, "schedule": "constant",
                          "adam_betas": list(TALK_BETAS)},
            "threads": torch.get_num_threads(), "versions": versions(), "rows": rows}


def preset_inputs(preset_name: str, denoisers=None):
    """Notebook 03's analysed slice ``(1, 1, H, W)`` (normalized), its denoisers, protocol and seed, read
    from the preset's artifacts (the notebook must have run)."""
    preset = load_preset(preset_name)
    nb = notebook_settings(preset, "03_image_domain_invariances", runtime_parameters(preset, device="cpu"))
    art = Artifacts(run_dir(preset_name) / "artifacts")  # the repository's, wherever it is run from
    x = torch.from_numpy(hu_to_norm(art.read_arrays("analysis_slice")["low"]))[None, None].float()
    names = list(denoisers or nb.denoiser_names)
    return x, art.load_denoisers(names, "cpu"), InvarianceProtocol.from_settings(nb), nb.seed


def compare_settings(x, denoisers: dict, protocol: InvarianceProtocol, seed: int = 0, distances=("mse", "dssim"),
                     reference_iters: int = 2000, reference_lr: float = 0.03, progress: bool = False) -> list[dict]:
    """``x`` ``(1, 1, H, W)`` normalized; ``denoisers`` {name: module}; ``protocol`` the preset's
    (:meth:`InvarianceProtocol.from_settings`). Each run goes through the notebooks' own
    :func:`~ctinv_utils.recipes.invariances.optimise_invariance`; the reference is the same protocol
    with the talk's Adam at a constant ``reference_lr`` for ``reference_iters`` steps, no early stop.
    Per (denoiser, distance, alpha): both runs' final loss, their ratio, RMS changes (HU),
    rate-scaled loss changes (%) and seconds."""

    reference = protocol.replace(lr=reference_lr, lr_schedule="constant", adam_betas=TALK_BETAS,
                                 max_iter=reference_iters, max_iter_vgg=reference_iters, stop_early=False)
    rows = []
    jobs = [(n, d) for n in denoisers for d in distances]
    for name, dist in progress_bar(jobs, desc="preset vs reference", disable=not progress):
        module = get_distance("vgg", vgg_allow_random=True, seed=seed) if dist == "vgg" else None
        runs = {}
        for which, prot in (("preset", protocol), ("reference", reference)):
            t0 = time.perf_counter()
            inv = optimise_invariance(x, denoisers[name], dist, prot, seed, distance_module=module)
            runs[which] = (inv, time.perf_counter() - t0)
        (p, tp), (r, tr) = runs["preset"], runs["reference"]
        alphas = protocol.grid(dist)
        for i, (ps, rs) in enumerate(zip(p.summary(), r.summary())):
            lp, lref = p.history["loss"][-1][i], r.history["loss"][-1][i]
            rows.append({"denoiser": name, "distance": dist, "alpha": alphas[i],
                         "loss_fraction": lp / lref if lref < 0 else float("nan"),
                         "preset_loss": lp, "reference_loss": lref,
                         "preset_input_rms_hu": ps["input_rms_hu"], "reference_input_rms_hu": rs["input_rms_hu"],
                         "preset_output_rms_hu": ps["output_rms_hu"], "reference_output_rms_hu": rs["output_rms_hu"],
                         "preset_spread_pct": 100 * float(p.relative_spread()[i]),
                         "reference_spread_pct": 100 * float(r.relative_spread()[i]),
                         "preset_iterations": p.iteration, "preset_seconds": tp, "reference_seconds": tr})
    return rows


#: The ways to a converged invariance that ``--optimisers`` measures against the preset's Adam.
METHODS = ("adam", "continuation", "lbfgs")


def protocol_of(method: str, protocol: InvarianceProtocol) -> InvarianceProtocol:
    """The preset's protocol run one way: ``adam`` (every alpha from x + noise, one batch),
    ``continuation`` (each alpha from its neighbour's result) or ``lbfgs`` (the batched projected
    L-BFGS, stopping from ``warm_min_iter`` iterations on: each of its steps is a line search)."""
    if method == "adam":
        return protocol.replace(continuation=False, optimizer="adam")
    if method == "continuation":
        return protocol.replace(continuation=True, optimizer="adam")
    if method == "lbfgs":
        return protocol.replace(continuation=False, optimizer="lbfgs", min_iter=protocol.warm_min_iter)
    raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")


def compare_optimisers(x, denoisers: dict, protocol: InvarianceProtocol, seed: int = 0,
                       distances=("mse", "dssim", "vgg"), methods=METHODS, progress: bool = False) -> list[dict]:
    """Per (denoiser, distance, method): the wall time to a converged invariance over the preset's alpha
    grid (the early stop is the project's convergence test), and per alpha the converged objective as
    a fraction of Adam's (> 1: lower, i.e. better, since the objective is negative), converged or not,
    iterations and the RMS input and output changes (HU). One run per row, in this process."""
    rows = []
    jobs = [(n, d) for n in denoisers for d in distances]
    for name, dist in progress_bar(jobs, desc="optimisers", disable=not progress):
        module = get_distance("vgg", vgg_allow_random=True, seed=seed) if dist == "vgg" else None
        base = None
        for method in methods:
            t0 = time.perf_counter()
            inv = optimise_invariance(x, denoisers[name], dist, protocol_of(method, protocol), seed, distance_module=module)
            seconds = time.perf_counter() - t0
            iterations, final = inv.iterations_per_alpha, inv.final_loss()
            summary, conv = inv.summary(), inv.convergence()
            if base is None:
                base = (final, seconds)
            for i, a in enumerate(inv.alpha_values):
                rows.append({"denoiser": name, "distance": dist, "method": method, "alpha": a, "seconds": seconds,
                             "speed_up": base[1] / seconds, "iterations": iterations[i], "loss": final[i],
                             "loss_vs_adam": final[i] / base[0][i] if base[0][i] < 0 else float("nan"),
                             "converged": conv[i], "input_rms_hu": summary[i]["input_rms_hu"],
                             "output_rms_hu": summary[i]["output_rms_hu"]})
    return rows


#: The off-grid alphas the explorer timing asks for: between two grid alphas of each distance.
EXPLORER_CASES = (("mse", 0.03), ("dssim", 0.03), ("vgg", 0.02))


def explorer_timings(x, name: str, denoiser, protocol: InvarianceProtocol, seed: int = 0,
                     cases=EXPLORER_CASES) -> list[dict]:
    """Seconds the explorer takes for an alpha off the grid, started from the nearest grid alpha's result
    and from x + noise, after the preset's Adam grid run; with the objective each result reaches."""
    from ..synthesis.explorer import InvarianceExplorer
    from ..synthesis.invariances import Invariance

    vgg = get_distance("vgg", vgg_allow_random=True, seed=seed)
    rows = []
    for dist, alpha in cases:
        module = vgg if dist == "vgg" else None
        grid = optimise_invariance(x, denoiser, dist, protocol.replace(continuation=False), seed, distance_module=module)
        for warm in (True, False):
            ex = InvarianceExplorer(x, {name: denoiser}, (dist,), grid.alpha_values, max_iter=protocol.iterations(dist),
                                    lr=protocol.lr, seed=seed, adam_betas=protocol.adam_betas,
                                    synthesize_kw=protocol.stop(), distance_modules={"vgg": vgg}, warm_start=warm,
                                    warm_min_iter=protocol.warm_min_iter, progress=False)
            ex.add(grid, name)
            result = torch.from_numpy(ex.result(name, dist, alpha))[None, None]
            run = ex.runs[(name, dist, alpha)]
            probe = Invariance(x, denoiser, dist, alpha, distance_module=module, start=result)
            rows.append({"denoiser": name, "distance": dist, "alpha": alpha, "start": "warm" if warm else "cold",
                         **run, "objective": float(probe.objective()[0].detach())})
    return rows


def optimiser_table(rows: list[dict]) -> str:
    """The rows of :func:`compare_optimisers` as aligned text."""
    lines = ["denoiser  distance  method        alpha    s      x Adam  iters  loss/Adam  conv  in RMS HU  out RMS HU"]
    for r in rows:
        lines.append(f"{r['denoiser']:<9} {r['distance']:<9} {r['method']:<13} {r['alpha']:<8g} {r['seconds']:>6.1f} "
                     f"{r['speed_up']:>6.2f}  {r['iterations']:>5}  {r['loss_vs_adam']:>9.4f}  {'yes' if r['converged'] else 'NO':<4}  "
                     f"{r['input_rms_hu']:>9.0f}  {r['output_rms_hu']:>10.1f}")
    return "\n".join(lines)


def table(result: dict) -> str:
    head = ("denoiser  distance  alpha    loss/ref  input RMS HU (preset/ref)  output RMS HU (preset/ref)  "
            "loss spread % over the last 10 % (preset/ref)")
    lines = [head]
    for r in result["rows"]:
        lines.append(f"{r['denoiser']:<9} {r['distance']:<9} {r['alpha']:<8g} {r['loss_fraction']:>7.2f}  "
                     f"{r['preset_input_rms_hu']:>8.0f} / {r['reference_input_rms_hu']:<8.0f}          "
                     f"{r['preset_output_rms_hu']:>7.1f} / {r['reference_output_rms_hu']:<7.1f}          "
                     f"{r['preset_spread_pct']:>6.2f} / {r['reference_spread_pct']:<6.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctinv_utils convergence", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--denoisers", nargs="+", default=None)
    ap.add_argument("--distances", nargs="+", default=["mse", "dssim"], choices=["mse", "dssim", "vgg"])
    ap.add_argument("--reference-iters", type=int, default=2000)
    ap.add_argument("--reference-lr", type=float, default=0.03)
    ap.add_argument("--out", default=None, help="JSON file (default: print only)")
    ap.add_argument("--optimisers", action="store_true",
                    help="instead: time to a converged invariance per method (Adam, continuation, L-BFGS)")
    args = ap.parse_args(argv)
    if args.optimisers:
        try:
            x, denoisers, protocol, seed = preset_inputs(args.preset, args.denoisers)
        except (ArtifactError, PresetError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        rows = compare_optimisers(x, denoisers, protocol, seed, args.distances, progress=True)
        print(optimiser_table(rows))
        first = next(iter(denoisers))
        explorer = explorer_timings(x, first, denoisers[first], protocol, seed)
        for r in explorer:
            print(f"explorer {r['distance']} alpha {r['alpha']:g} from {r['start']}: {r['seconds']:.1f} s, "
                  f"{r['iterations']} iterations, objective {r['objective']:.5g}")
        if args.out:
            result = {"preset": args.preset, "settings": protocol.as_dict(), "threads": torch.get_num_threads(),
                      "cores": os.cpu_count(), "versions": versions(), "rows": rows, "explorer": explorer}
            print(f"written: {write_json(args.out, json.loads(json.dumps(result, default=float)))}")
        return 0
    try:
        result = compare(args.preset, args.denoisers, args.distances, args.reference_iters, args.reference_lr)
    except (ArtifactError, PresetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    if args.out:
        print(f"written: {write_json(args.out, json.loads(json.dumps(result, default=float)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
