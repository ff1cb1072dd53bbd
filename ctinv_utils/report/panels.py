"""The notebooks' figures and tables, drawn from artifacts: one function per figure, shared by the
notebook that computes the result and by the figures notebook, so a panel has one drawing code.

Each figure function returns ``(fig, caption)``; the caption names what a reader needs to read the
panel (denoiser, distance, alpha, iterations, VGG weights); the notebook's context adds preset, data
source, seed and config hash when it saves the figure. Nothing here loads a network.
"""

from __future__ import annotations

import numpy as np

from ..pipeline.artifacts import Artifacts
from ..figures import curves, evaluation as evaluation_figures, talk
from ..figures import linearised as linearised_figures
from ..figures.ct import MASK, ct_grid, fitted_difference_window
from ..units import LUNG, PHYSICAL_HU_RANGE
from ..figures.tables import csv_text, markdown_table
from ..names import display_name
from ..settings import value_index

EVALUATION_COLUMNS = [("region", "region", ""), ("method", "method", ""), ("slices", "slices", ""),
                      ("psnr", "PSNR (dB)", ".2f"), ("ssim", "SSIM", ".3f"), ("rmse_hu", "RMSE (HU)", ".1f")]
INVARIANCE_COLUMNS = [("denoiser", "denoiser", ""), ("distance", "distance", ""), ("alpha", "α", "g"),
                      ("input_distance", "d(x, x_inv)", ".4f"), ("output_distance", "d(f(x), f(x_inv))", ".4f"),
                      ("input_rms_hu", "RMS x_inv − x (HU)", ".1f"), ("output_rms_hu", "RMS f(x_inv) − f(x) (HU)", ".1f"),
                      ("iterations", "iterations", ""),
                      ("loss_spread_pct", "loss spread, last 10 % at full rate (%)", ".2g"),
                      ("input_spread_pct", "d(x, x_inv) spread, last 10 % (%)", ".2g"), ("converged", "converged", "")]
METHOD_ORDER = ["low dose", "cnn10", "wganvgg", "gauss_ri"]


def alpha_index(alphas, alpha: float) -> int:
    """Index of ``alpha`` in a run's alpha grid (to 1e-9 relative, :func:`~ctinv_utils.settings.value_index`)."""
    k = value_index(alphas, alpha)
    if k is None:
        raise ValueError(f"alpha {alpha:g} was not optimised; the grid is {[float(a) for a in alphas]}")
    return k


# -- notebook 02 ---------------------------------------------------------------------------------
def loss_curves(art: Artifacts):
    cnn, wgan = art.read_arrays("training_history", name="cnn10"), art.read_arrays("training_history", name="wganvgg")
    vgg = art.read_json("denoisers").get("vgg", "")
    panels = [("CNN-10: L2 loss (normalized units²)", {"L2": cnn["loss"]}, True),
              ("WGAN-VGG generator: L2 to full dose", {"L2 to full dose": wgan["mse"]}, True)]
    caption = f"training losses; {vgg}"
    if "perceptual" in wgan.arrays:
        cfg = wgan.meta["config"]
        lam, warmup = cfg.get("lambda_perceptual", 1.0), int(cfg.get("critic_warmup", 0) or 0)
        panels.append(("WGAN-VGG GAN phase: what steers the generator",
                       {"critic: Wasserstein estimate (real − generated)": wgan["wasserstein"],
                        "λ · perceptual loss": wgan["perceptual"] * lam}, False))
        caption += (f"; GAN phase: the critic's curve starts {warmup} critic-only steps earlier than the generator's "
                    "(its warm-up); a Wasserstein estimate near 0 means the critic barely tells the generator's "
                    "outputs from full-dose patches (the L2 warm start already matches them), so the perceptual "
                    "term carries most of the GAN phase's signal")
    return curves.loss_curves(panels, title=vgg), caption


def evaluation_rows(art: Artifacts) -> list[dict]:
    """The evaluation rows with display names, sorted by region and method."""
    rows = art.read_json("evaluation")["rows"]
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    rows = sorted(rows, key=lambda r: (r["region"], rank.get(r["method"], len(rank)), r["method"]))
    return [{**r, "method": display_name(r["method"])} for r in rows]


def evaluation_table(art: Artifacts) -> tuple[str, str]:
    """(markdown, CSV) of PSNR/SSIM/RMSE per region and method."""
    rows = evaluation_rows(art)
    return markdown_table(rows, EVALUATION_COLUMNS, note=art.read_json("denoisers").get("vgg", "")), \
        csv_text(rows, EVALUATION_COLUMNS)


def evaluation_bars(art: Artifacts):
    vgg = art.read_json("denoisers").get("vgg", "")
    return evaluation_figures.metric_bars(evaluation_rows(art), title=vgg), f"test-set PSNR per region; {vgg}"


def evaluation_figure(art: Artifacts):
    """The evaluation table drawn as a figure (PSNR, SSIM and RMSE per region and method)."""
    import matplotlib.pyplot as plt

    rows = evaluation_rows(art)
    cells = [[r["region"], r["method"], str(r["slices"]), f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", f"{r['rmse_hu']:.1f}"]
             for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 0.9))
    ax.set_axis_off()
    table = ax.table(cellText=cells, colLabels=[h for _, h, _ in EVALUATION_COLUMNS], loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.25)
    flagged = {(r["method"], r["region"]) for r in art.read_json("evaluation").get("not_denoising", [])}
    for i, r in enumerate(rows, start=1):
        if any(display_name(m) == r["method"] and reg == r["region"] for m, reg in flagged):
            for j in range(len(EVALUATION_COLUMNS)):
                table[i, j].set_facecolor("#f8d0d0")
    vgg = art.read_json("denoisers").get("vgg", "")
    ax.set_title("Denoisers on the test patients, each region in its window (chest C=−600/W=1500, abdomen C=50/W=400, "
                 f"head C=40/W=80 HU):\nPSNR/SSIM of the window-mapped images, RMSE of the window-clipped HU\n{vgg}",
                 fontsize=8)
    fig.tight_layout()
    return fig, ("evaluation table (red: a trained denoiser below its low-dose input; Gauss+RI is not trained: the "
                 f"reference with known invariances, never flagged); {vgg}")


def examples(art: Artifacts, regions=("chest", "abdomen")):
    from ..units import get_window

    rows = []
    for region in regions:
        if not art.exists("examples", region=region):
            continue
        ex = art.read_arrays("examples", region=region)
        images = [(ex["low"], f"{region}: low dose"), (ex["full"], "full dose")]
        images += [(ex[k], display_name(k)) for k in ex.arrays if k not in ("low", "full")]
        rows.append((get_window(ex.meta["window"]), images))
    vgg = art.read_json("denoisers").get("vgg", "")
    return evaluation_figures.example_slices(rows, title=vgg), f"test slices denoised; {vgg}"


# -- notebook 03 ---------------------------------------------------------------------------------
def _inv(art: Artifacts, denoiser: str, distance: str):
    return art.read_arrays("invariance_arrays", denoiser=denoiser, distance=distance)


def analysed_denoisers(art: Artifacts, names) -> list[str]:
    """``names`` plus the published networks notebook 03 analysed besides them, in 03's order."""
    done = list(dict.fromkeys(r["denoiser"] for r in art.read_json("invariances_summary")["rows"]))
    return [*names, *(n for n in done if n.startswith("ldctbench:") and n not in names)]


def explorer_entries(art: Artifacts, denoisers, distances) -> dict:
    """{(denoiser, distance): x, f_x, x_inv, f_x_inv (HU), alphas and converged} of every invariance run
    of notebook 03: the HTML explorer's data."""
    out = {}
    for den in denoisers:
        for dist in distances:
            inv = _inv(art, den, dist)
            out[(den, dist)] = {**{k: inv[k] for k in ("x", "f_x", "x_inv", "f_x_inv", "alphas")},
                                **({"converged": list(inv.meta["converged"])} if "converged" in inv.meta else {})}
    return out


def invariance_rows(art: Artifacts) -> list[dict]:
    """The invariance summary with display names."""
    return [{**r, "denoiser": display_name(r["denoiser"]), "distance": display_name(r["distance"])}
            for r in art.read_json("invariances_summary")["rows"]]


def invariance_table(art: Artifacts) -> str:
    return markdown_table(invariance_rows(art), INVARIANCE_COLUMNS, note=art.read_json("invariances_summary").get("vgg", ""))


def synthesis_status(art: Artifacts, denoisers, distance: str = "mse"):
    rows, labels = [], None
    for d in denoisers:
        r = _inv(art, d, distance)
        labels = [f"α={a:g}" for a in r["alphas"]]
        rows.append((f"{display_name(d)}, {display_name(distance)}",
                     {k: r[f"history_{k}"] for k in ("loss", "output_distance", "input_distance")}))
    return curves.synthesis_status(rows, labels), f"optimisation histories, {display_name(distance)}"


def talk_results(art: Artifacts, denoiser: str, distances, alpha: float, differences: bool = True):
    """The talk's "Results <denoiser>" slide at ``alpha``: one row per distance."""
    runs = {d: _inv(art, denoiser, d) for d in distances}
    first = runs[distances[0]]
    rows = [(display_name(d), r["x_inv"][alpha_index(r["alphas"], alpha)], r["f_x_inv"][alpha_index(r["alphas"], alpha)])
            for d, r in runs.items()]
    iters = ", ".join(f"{display_name(d)} {r.meta['iterations']}" for d, r in runs.items())
    vgg = next((r.meta["vgg"] for r in runs.values() if r.meta.get("vgg")), "")
    sl = art.read_arrays("analysis_slice")
    tol_hu = art.read_json("tolerance_summary")["tol_hu"] if art.exists("tolerance_summary") else 5.0
    title = (f"{display_name(denoiser)}: invariances at α = {alpha:g} (the talk's protocol: fixed α; what the "
             f"denoiser ignores within {tol_hu:g} HU: the tolerance figures)\n{vgg}")
    fig = talk.talk_results(first["x"], first["f_x"], rows, differences, sl["full"] if differences else None, title=title,
                            tol_hu=tol_hu)
    where = sl.meta
    caption = (f"{display_name(denoiser)}, α={alpha:g}, distances {', '.join(display_name(d) for d in distances)}; "
               f"{first.meta.get('optimiser', 'Adam, every alpha from x + noise')}; iterations (longest run): {iters}; "
               f"slice {where.get('patient')}/{where.get('slice')} ({where.get('region')}, "
               + (f"{where['crop']} px crop" if where.get('crop') else "whole slice") + f"); {vgg}")
    return fig, caption


RANGE_COLUMNS = [("denoiser", "denoiser", ""), ("distance", "distance", ""), ("alpha", "α", "g"),
                 ("form", "HU range", ""), ("input_rms_hu", "RMS x_inv − x (HU)", ".1f"),
                 ("output_rms_hu", "RMS f(x_inv) − f(x) (HU)", ".1f"),
                 ("out_of_range_fraction", "x_inv outside −1024…3071 HU", ".1%"), ("min_hu", "min x_inv (HU)", ".0f")]
TOLERANCE_COLUMNS = [("denoiser", "denoiser", ""), ("distance", "distance", ""), ("tol_hu", "tolerance (HU RMS)", "g"),
                     ("alpha", "α at the tolerance", ".3g"), ("input_rms_hu", "RMS x_inv − x (HU)", ".1f"),
                     ("output_rms_hu", "RMS f(x_inv) − f(x) (HU)", ".2f"), ("within", "within", ""),
                     ("converged", "converged", ""),
                     ("tried", "α tried", "")]


def range_rows(art: Artifacts, distance: str = "mse") -> list[dict]:
    """Per denoiser and alpha: the HU-constrained run next to the talk's unconstrained form."""
    rows = []
    constrained = [r for r in art.read_json("invariances_summary")["rows"] if r["distance"] == distance]
    free = art.read_json("unconstrained_summary")["rows"]
    for r in constrained:
        twin = next((u for u in free if u["denoiser"] == r["denoiser"] and u["distance"] == distance
                     and np.isclose(u["alpha"], r["alpha"])), None)
        rows.append({**r, "denoiser": display_name(r["denoiser"]), "distance": display_name(distance),
                     "form": "projected (default)"})
        if twin:
            rows.append({**twin, "denoiser": "", "distance": "", "form": "none (the talk)"})
    return rows


def range_table(art: Artifacts, distance: str = "mse") -> str:
    return markdown_table(range_rows(art, distance), RANGE_COLUMNS,
                          note="projected: x_inv is clipped to −1024…3071 HU after every Adam step")


def range_comparison(art: Artifacts, denoisers, alpha: float, distance: str = "mse"):
    """Per denoiser at ``alpha``: x_inv with the HU range (default) and without (the talk), their
    differences to x, and where the unconstrained x_inv leaves the physical range."""
    panels = []
    lo, hi = PHYSICAL_HU_RANGE
    for d in denoisers:
        c, u = _inv(art, d, distance), art.read_arrays("unconstrained_arrays", denoiser=d, distance=distance)
        ic, iu = alpha_index(c["alphas"], alpha), alpha_index(u["alphas"], alpha)
        outside = ((u["x_inv"][iu] < lo) | (u["x_inv"][iu] > hi)).astype(np.float32)
        panels += [(c["x_inv"][ic], LUNG, f"{display_name(d)}: x_inv, HU range"),
                   (u["x_inv"][iu], LUNG, "x_inv, no range (talk)"),
                   (c["x_inv"][ic] - c["x"], fitted_difference_window(c["x_inv"][ic] - c["x"]), "x_inv − x, HU range"),
                   (u["x_inv"][iu] - u["x"], fitted_difference_window(u["x_inv"][iu] - u["x"]), "x_inv − x, no range"),
                   (outside, MASK, f"no range: outside {lo:.0f}…{hi:.0f} HU?\n{outside.mean():.1%} yes "
                                   f"(min {u['x_inv'][iu].min():.0f} HU)")]
    fig = ct_grid(panels, ncols=5, panel_size=2.8,
                  suptitle=f"{display_name(distance)}, α = {alpha:g}: the HU range constraint against the talk's unconstrained form")
    return fig, (f"{display_name(distance)} invariances at α={alpha:g} with x_inv projected onto {lo:.0f}…{hi:.0f} HU "
                 "(the default) and unconstrained (the talk); x_inv − x in a window fitted to the change (99th "
                 "percentile of |x_inv − x|); last column: the unphysical pixels of the unconstrained x_inv")


def tolerance_rows(art: Artifacts) -> list[dict]:
    return [{**r, "denoiser": display_name(r["denoiser"]), "distance": display_name(r["distance"]),
             "within": "yes" if r["within_tolerance"] else "NO", "tried": len(r["alphas_tried"])}
            for r in art.read_json("tolerance_summary")["rows"]]


def tolerance_table(art: Artifacts) -> str:
    return markdown_table(tolerance_rows(art), TOLERANCE_COLUMNS,
                          note="the largest RMS input change among all runs whose RMS output change is within the tolerance")


def tolerance_results(art: Artifacts, denoiser: str, distances, tol_hu: float, differences: bool = True):
    """The talk's results slide at the output tolerance instead of a fixed alpha: per distance the
    largest invariance whose output moves by at most ``tol_hu`` HU RMS."""
    runs = {d: art.read_arrays("tolerance_arrays", denoiser=denoiser, distance=d) for d in distances}
    first = runs[distances[0]]
    rows = [(f"{display_name(d)}, α={r.meta['alpha']:.3g}" + ("" if r.meta.get("converged", True) else ", not converged"),
             r["x_inv"], r["f_x_inv"]) for d, r in runs.items()]
    missed = [display_name(d) for d, r in runs.items() if not r.meta["within_tolerance"]]
    sl = art.read_arrays("analysis_slice")
    title = (f"{display_name(denoiser)}: the largest invariance with RMS f(x_inv) − f(x) ≤ {tol_hu:g} HU"
             + (f"\n(not reached for {', '.join(missed)}: smallest output change shown)" if missed else ""))
    fig = talk.talk_results(first["x"], first["f_x"], rows, differences, sl["full"] if differences else None, title=title,
                            tol_hu=tol_hu)
    caption = (f"{display_name(denoiser)} at output tolerance {tol_hu:g} HU RMS; " + "; ".join(
        f"{display_name(d)}: α={r.meta['alpha']:.3g}, RMS input change {r.meta['input_rms_hu']:.1f} HU, "
        f"output {r.meta['output_rms_hu']:.2f} HU" for d, r in runs.items()))
    return fig, caption


def linearised_table(art: Artifacts, denoisers, alphas) -> str:
    """Per denoiser: λ_min as certified or as an upper bound (below the solver's resolution, not
    converged), λ_max, the state of the k smallest pairs, the certified ignored directions, the floor
    and the alphas of the grid worth running."""
    rows = []
    for d in denoisers:
        a = art.read_arrays("linearised", denoiser=d)
        rows.append(linearised_figures.table_row(a, alphas, display_name(d), a.meta.get("crop")))
    return markdown_table(rows, linearised_figures.TABLE_COLUMNS, note=linearised_figures.TABLE_NOTE)


def linearised(art: Artifacts, denoiser: str, alphas):
    """The certified smallest- and largest-eigenvalue directions of one denoiser (pairs below the
    solver's resolution stated, not drawn) and its spectrum against the α grid."""
    stored = art.read_arrays("linearised", denoiser=denoiser)
    return linearised_figures.linearised_figure(stored, alphas)


def tradeoff(art: Artifacts, denoisers, distances):
    """Input change against output change over the alpha grid, per distance, all denoisers; and the
    bounded-MSE run in HU."""
    rows = art.read_json("invariances_summary")["rows"]

    def curve(d, dist, key_in, key_out):
        rs = sorted((r for r in rows if r["denoiser"] == d and r["distance"] == dist), key=lambda r: r["alpha"])
        return [r["alpha"] for r in rs], [r[key_in] for r in rs], [r[key_out] for r in rs]

    panels = [(display_name(dist), {display_name(d): curve(d, dist, "input_distance", "output_distance") for d in denoisers},
               "d(x, x_inv)", "d(f(x), f(x_inv))") for dist in distances]
    if "mse" in distances:
        panels.append(("bounded MSE, in HU", {display_name(d): curve(d, "mse", "input_rms_hu", "output_rms_hu")
                                             for d in denoisers}, "RMS x_inv − x (HU)", "RMS f(x_inv) − f(x) (HU)"))
    vgg = art.read_json("invariances_summary").get("vgg", "")
    grids = "; ".join(f"{display_name(dist)}: α = " + ", ".join(f"{a:g}" for a in sorted({r['alpha'] for r in rows if r['distance'] == dist}))
                      for dist in distances)
    title = "Trade-off: input change against output change per α" + (f"\n{vgg}" if vgg else "")
    return curves.tradeoff_figure(panels, title=title), f"trade-off curves ({grids}); {vgg}"


def attack_table(art: Artifacts, denoisers, alpha: float) -> str:
    inv = {r["denoiser"]: r for r in art.read_json("invariances_summary")["rows"]
           if r["distance"] == "mse" and np.isclose(r["alpha"], alpha)}
    tol = {r["denoiser"]: r for r in art.read_json("tolerance_summary")["rows"] if r["distance"] == "mse"}
    rows = []
    for d in denoisers:
        r = inv[d]
        rows.append({"denoiser": display_name(d), "perturbation": f"invariance (bounded MSE, α={alpha:g})",
                     "input_max_hu": r["input_max_hu"], "input_rms_hu": r["input_rms_hu"], "output_rms_hu": r["output_rms_hu"]})
        if d in tol:
            t = tol[d]
            rows.append({"denoiser": "", "perturbation": f"invariance (bounded MSE at the tolerance, α={t['alpha']:.3g})",
                         "input_rms_hu": t["input_rms_hu"], "output_rms_hu": t["output_rms_hu"]})
        for a in art.read_json("adversarial_summary")["rows"]:
            if a["denoiser"] == d:
                what = ("BIM at that invariance's input budget" if a["attack"] == "BIM-matched"
                        else f"{a['attack']} ({a['loss']} loss)")
                rows.append({**a, "denoiser": "", "perturbation": f"{what}, ε={a['eps_hu']:.3g} HU"})
    return markdown_table(rows, [("denoiser", "denoiser", ""), ("perturbation", "perturbation", ""),
                                 ("input_max_hu", "max |Δx| (HU)", ".1f"), ("input_rms_hu", "RMS Δx (HU)", ".1f"),
                                 ("output_rms_hu", "RMS Δf (HU)", ".1f")])


def attack_contrast(art: Artifacts, denoisers, alpha: float | None = None):
    """Adversarial perturbation against invariance at the same input budget: per denoiser, BIM at the
    RMS input change of the bounded-MSE invariance at the output tolerance, and that invariance; the
    two output changes side by side (``alpha`` is not used: the tolerance fixes the invariance)."""
    rows, budgets = [], []
    for d in denoisers:
        a = art.read_arrays("attack_arrays", denoiser=d, loss="output", attack="BIM-matched")
        t = art.read_arrays("tolerance_arrays", denoiser=d, distance="mse")
        rows.append((display_name(d), a["x_adv"] - a["x"], a["f_x_adv"] - a["f_x"], t["x_inv"] - t["x"],
                     t["f_x_inv"] - t["f_x"]))
        budgets.append(f"{display_name(d)}: ε={a.meta['eps_hu']:.0f} HU")
    caption = ("BIM (output loss, L∞ ε = the invariance's RMS input change) against the bounded-MSE invariance "
               f"at the output tolerance, at the same input budget; {'; '.join(budgets)}; differences in C=0/W=100 HU")
    return talk.attack_contrast(rows), caption


# -- notebook 04 ---------------------------------------------------------------------------------
NATURAL_COLUMNS = [("kind", "invariance", ""), ("d_out", "d(f(x), f(x_inv))", ".4f"), ("d_in", "d(x, x_inv)", ".4f"),
                   ("rms_change_hu", "RMS x_inv − x (HU)", ".1f"), ("output_rms_hu", "RMS f(x_inv) − f(x) (HU)", ".1f"),
                   ("pixel_std_hu", "pixel std over samples (HU)", ".1f"),
                   ("corr_change_with_noise", "corr(x_inv − x, noise)", ".2f"),
                   ("noise_amplitude_ratio", "noise std ratio", ".2f"), ("edge_ratio_change", "edge energy ratio", ".2f"),
                   ("nps_distance_to_noise", "NPS shape distance to noise", ".2f"), ("critic_score", "critic score", ".2f")]


def natural_samples(art: Artifacts, denoiser: str, k: int = 4):
    from ..figures import natural as natural_figures

    a = art.read_arrays("natural_arrays", denoiser=denoiser)
    m = a.meta
    title = (f"Natural invariances of {display_name(denoiser)}: g(z|x), {display_name(m['distance'])}, α={m['alpha']:g}, "
             f"β={m['beta']:g}\n{m['iterations']} training iterations; std over {len(a['samples'])} samples")
    fig = natural_figures.natural_samples(a["x"], a["samples"][:k], a["std"], title=title)
    caption = (f"{display_name(denoiser)}; generator trained {m['iterations']} iterations on {m['patch_size']} px patches; "
               f"distance {display_name(m['distance'])}, α={m['alpha']:g}, β={m['beta']:g}; {len(a['samples'])} samples"
               + (f"; {m['vgg']}" if m.get("vgg") else ""))
    return fig, caption


def natural_nps(art: Artifacts, denoiser: str):
    from ..figures import natural as natural_figures

    an = art.read_json("natural_analysis")["denoisers"][denoiser]
    f = an["natural"]["nps"]["frequency"]
    curves = {"real low-dose noise (x − full dose)": an["natural"]["nps"]["noise"],
              "natural invariances g(z|x) − x": an["natural"]["nps"]["change"]}
    if "image_domain" in an:
        curves[f"image-domain x_inv − x ({an['image_domain']['label']})"] = an["image_domain"]["nps"]["change"]
    return natural_figures.nps_plot(f, curves, title=f"{display_name(denoiser)}: is the change noise-like?"), \
        f"noise power spectra of the changes and of the real low-dose noise; {display_name(denoiser)}"


def natural_table(art: Artifacts, denoiser: str) -> str:
    an = art.read_json("natural_analysis")["denoisers"][denoiser]
    rows = [{"kind": "natural g(z|x)", **an["natural"]}]
    if "image_domain" in an:
        rows.append({"kind": f"image-domain ({an['image_domain']['label']})", **an["image_domain"]})
    return markdown_table(rows, NATURAL_COLUMNS)


def natural_verdicts(art: Artifacts, denoiser: str) -> str:
    an = art.read_json("natural_analysis")["denoisers"][denoiser]
    return "\n".join(f"- {line}" for line in an["verdicts"].values())
