"""How close a preset's invariances get to the optimum: each (denoiser, distance) run with the
preset's notebook-03 settings against a long constant-rate run of the talk's Adam from the same start.

    python -m ctinv_utils convergence [--preset quick] [--reference-iters 2000]
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

    preset = load_preset(preset_name)
    nb = notebook_settings(preset, "03_image_domain_invariances", runtime_parameters(preset, device="cpu"))
    art = Artifacts(run_dir(preset_name) / "artifacts")  # the repository's, wherever it is run from
    x = torch.from_numpy(hu_to_norm(art.read_arrays("analysis_slice")["low"]))[None, None].float()
    names = list(denoisers or nb.denoiser_names)
    protocol = InvarianceProtocol.from_settings(nb)
    rows = compare_settings(x, art.load_denoisers(names, "cpu"), protocol, nb.seed, distances, reference_iters,
                            reference_lr, progress)
    return {"preset": preset_name, "settings": protocol.as_dict(),
            "reference": {"iterations": reference_iters, "lr": reference_lr, "schedule": "constant",
                          "adam_betas": list(TALK_BETAS)},
            "threads": torch.get_num_threads(), "versions": versions(), "rows": rows}


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
    args = ap.parse_args(argv)
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
