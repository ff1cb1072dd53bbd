"""How close a preset's invariances get to the optimum: each (denoiser, distance) run with the
preset's notebook-03 settings against a long constant-rate run of the talk's Adam from the same start.

    python -m ctinv_utils.bench_convergence [--preset quick] [--reference-iters 2000]
        [--denoisers cnn10 wganvgg gauss_ri] [--distances mse dssim] [--out docs/convergence_quick.json]

Needs the preset's notebook 03 to have run (its analysis slice and notebook 02's denoisers). Prints,
per alpha, the preset's final loss as a fraction of the reference's (the objective is negative at
both ends of a useful run: 1.0 = as far as the reference got), both runs' RMS input and output
changes (HU) and both rate-scaled loss changes (the reference converged where it is < 1 %). The
reference is the talk's Adam (betas 0.9/0.999) at a constant ``--reference-lr``: the optimiser a
reader trusts, run long, so that a faster preset setting has to reach its answer. With VGG16 the
reference costs ~10x per step.
"""

from __future__ import annotations

import argparse
import json
import sys

from .progress import progress_bar

TALK_BETAS = (0.9, 0.999)


def compare(preset_name: str = "quick", denoisers=None, distances=("mse", "dssim"), reference_iters: int = 2000,
            reference_lr: float = 0.03, progress: bool = True) -> dict:
    """Run the comparison on the preset's analysed slice and denoisers; returns ``{"settings",
    "reference", "rows"}`` (one row per run and alpha)."""
    import torch

    from .artifacts import Artifacts
    from .paths import run_dir
    from .presets import load_preset
    from .provenance import versions
    from .units import hu_to_norm

    preset = load_preset(preset_name)
    nb = preset["notebooks"]["03_image_domain_invariances"]
    art = Artifacts(run_dir(preset_name) / "artifacts")  # the repository's, wherever it is run from
    x = torch.from_numpy(hu_to_norm(art.read_arrays("analysis_slice")["low"]))[None, None].float()
    names = list(denoisers or nb.get("denoiser_names", ["cnn10", "wganvgg", "gauss_ri"]))
    rows = compare_settings(x, art.load_denoisers(names, "cpu"), nb, preset["seed"], distances, reference_iters,
                            reference_lr, progress)
    settings = {k: nb.get(k) for k in ("alphas", "alphas_dssim", "alphas_vgg", "max_iter", "max_iter_vgg", "lr", "lr_schedule",
                                       "adam_betas", "hu_range", "crop", "stop_early", "min_iter")}
    return {"preset": preset_name, "settings": settings,
            "reference": {"iterations": reference_iters, "lr": reference_lr, "schedule": "constant",
                          "adam_betas": list(TALK_BETAS)},
            "threads": torch.get_num_threads(), "versions": versions(), "rows": rows}


def compare_settings(x, denoisers: dict, settings: dict, seed: int = 0, distances=("mse", "dssim"),
                     reference_iters: int = 2000, reference_lr: float = 0.03, progress: bool = False) -> list[dict]:
    """``x`` ``(1, 1, H, W)`` normalized; ``denoisers`` {name: module}; ``settings`` notebook 03's
    parameters (alphas, alphas_dssim, alphas_vgg, max_iter, max_iter_vgg, lr (one rate or {distance: rate}),
    lr_schedule, adam_betas, hu_range, and optionally stop_early and min_iter, as the notebook stops).
    Per (denoiser, distance, alpha): both runs' final loss, their ratio, RMS changes (HU), rate-scaled
    loss changes (%) and seconds."""
    import time

    from .synthesis.distances import get_distance
    from .synthesis.grid import alphas_for, early_stop, rate_for
    from .synthesis.invariances import Invariance

    betas = tuple(settings.get("adam_betas") or TALK_BETAS)
    rows = []
    jobs = [(n, d) for n in denoisers for d in distances]
    for name, dist in progress_bar(jobs, desc="preset vs reference", disable=not progress):
        vgg = dist == "vgg"
        alphas = alphas_for(dist, settings["alphas"], settings.get("alphas_dssim"), settings.get("alphas_vgg"))
        module = get_distance("vgg", vgg_allow_random=True, seed=seed) if vgg else None
        runs = {}
        stop = early_stop(bool(settings.get("stop_early")), settings.get("min_iter") or 0)
        for which, iters, lr, sched, b, kw in (
                ("preset", settings["max_iter_vgg"] if vgg else settings["max_iter"], rate_for(settings["lr"], dist),
                 settings.get("lr_schedule", "constant"), betas, stop),
                ("reference", reference_iters, reference_lr, "constant", TALK_BETAS, {})):
            inv = Invariance(x, denoisers[name], dist, alpha=alphas, seed=seed, lr=lr, hu_range=settings.get("hu_range"),
                             adam_betas=b, distance_module=module)
            t0 = time.perf_counter()
            inv.synthesize(iters, progress=False, lr_schedule=sched, **kw)
            runs[which] = (inv, time.perf_counter() - t0)
        (p, tp), (r, tr) = runs["preset"], runs["reference"]
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
    ap = argparse.ArgumentParser(prog="python -m ctinv_utils.bench_convergence", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--denoisers", nargs="+", default=None)
    ap.add_argument("--distances", nargs="+", default=["mse", "dssim"], choices=["mse", "dssim", "vgg"])
    ap.add_argument("--reference-iters", type=int, default=2000)
    ap.add_argument("--reference-lr", type=float, default=0.03)
    ap.add_argument("--out", default=None, help="JSON file (default: print only)")
    args = ap.parse_args(argv)
    from .artifacts import ArtifactError
    from .errors import PresetError
    try:
        result = compare(args.preset, args.denoisers, args.distances, args.reference_iters, args.reference_lr)
    except (ArtifactError, PresetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    if args.out:
        from .atomic import write_json
        print(f"written: {write_json(args.out, json.loads(json.dumps(result, default=float)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
