# %% [markdown]
# # 05 · May denoising remove lesions? Contrast-detail curves
#
# The talk asks whether denoising may remove structures and answers with pictures. Medical physicists
# answer with task-based numbers: does a lesion of a given size and contrast survive the denoiser, and
# how detectable is it afterwards? Here:
#
# * Round low-contrast lesions of several diameters and contrasts (±) are painted into simulated
#   abdomen phantoms (the liver) **before** the simulated acquisition, so their noise is physical.
#   Every lesion scan has a **lesion-free twin with the same noise realisation**: the two differ only
#   by the lesion's noise-free reconstruction (see `ctinv_utils/data/lesions.py`).
# * Per image kind (low dose, full dose, each denoiser on the low-dose scan): the lesion's
#   **contrast retained** relative to full dose, the **structure transfer**
#   $\|f(x_\mathrm{les}) - f(x_\mathrm{free})\| / \|x_\mathrm{les} - x_\mathrm{free}\|$, and the
#   detectability $d'$ of two model observers (non-prewhitening matched filter, NPW; channelized
#   Hotelling with Laguerre-Gauss channels, CHO) on lesion-present vs lesion-absent ROIs.
# * **Contrast-detail curves**: the smallest contrast detected at $d' = 2$ against the diameter.
# * The link to invariances: on a lesion slice, how much of the lesion $x_\mathrm{inv}$ removes.

# %% tags=["parameters"]
preset = "quick"
data_path = None
device = "auto"
seed = 0
figures_dir = "figures/quick"
artifacts_dir = "papermill_runs/quick/artifacts"
interactive = True
simulation = {"scanner": "clinical", "image_size": 512, "n_views": 1152, "photons_full_dose": 200000.0, "patients_per_region": 4,
              "min_slices": 3, "max_slices": 8}  # the acquisition of the lesion scans (the denoisers' training data)
denoiser_names = ["cnn10", "wganvgg", "gauss_ri"]
diameters_mm = [3.0, 5.0, 7.0, 10.0]
contrasts_hu = [-320.0, -160.0, -80.0, -40.0, -20.0, 20.0, 40.0, 80.0, 160.0, 320.0]
realisations = 4               # phantom slices (one lesion position each) per (diameter, contrast)
absent_per_realisation = 4     # extra lesion-free scans per realisation (the observers' noise)
roi_mm = 32.0                  # observer ROI side, centred on the lesion
dprime_threshold = 2.0         # "detected" (AUC 0.92) for the contrast-detail curves
estimation = "holdout"         # d' estimate: "holdout" (2-fold, honest at small N) or "resubstitution"
example_lesions = [[10.0, 40.0], [5.0, -20.0]]  # (diameter mm, contrast HU) shown as images
invariance_denoisers = ["cnn10", "wganvgg"]     # Gauss+RI left out: a crop centred on the lesion puts it in its square
invariance_lesion = [10.0, 40.0]                # (diameter mm, contrast HU) of the invariance slice
invariance_crop = 48           # px around the lesion
invariance_distance = "mse"
invariance_alphas = [0.003, 0.01, 0.03, 0.1]  # bounded MSE: the smallest alphas that converge (below: the notes)
invariance_iterations = 1200   # at most: a run stops once every alpha converged (as notebook 03)
invariance_lr = 0.1            # constant rate (bounded MSE: notebook 03's quick rate)
invariance_adam_betas = [0.9, 0.9]  # as notebook 03's quick preset (the talk: 0.9, 0.999)
invariance_stop_early = True   # stop when every alpha's loss stayed within 1% over the last 10% of the run
invariance_min_iter = 300      # ... not before this many iterations (a short window misses a slow trend)

# %%
import torch
from IPython.display import Markdown, display

from ctinv_utils import hu_to_norm, recipes

from ctinv_utils.pipeline import context
from ctinv_utils.analysis import lesion_removal as lr
from ctinv_utils.data.lesions import LesionSetConfig, crop, lesion_set
from ctinv_utils.figures import lesions as lesion_panels
from ctinv_utils.figures.contrast_detail import contrast_detail_from_artifacts

ctx = context.setup("05_lesions", globals())
art = ctx.artifacts
cfg = LesionSetConfig.from_simulation(simulation, diameters_mm=diameters_mm, contrasts_hu=contrasts_hu,
                                      realisations=realisations, absent_per_realisation=absent_per_realisation,
                                      roi_mm=roi_mm, seed=seed)
ctx.data_source = f"simulated {cfg.region} phantoms with inserted lesions ({cfg.image_size} px, {cfg.n_views} views)"
if data_path is not None:
    display(Markdown(f"**Note:** the denoisers were trained on `{data_path}`; the lesion study always uses the "
                     "phantom simulator with this preset's acquisition (`simulation`), which may differ from "
                     "those data in noise level and texture."))
denoisers = art.load_denoisers(denoiser_names, ctx.device)
ls = lesion_set(cfg, progress=False)
meta = dict(preset=preset, region=cfg.region, image_size=cfg.image_size, n_views=cfg.n_views,
            realisations=realisations, lesion_set_hash=cfg.hash, denoisers=list(denoisers))
print(ls)

# %% [markdown]
# ## Denoise and measure
# Every lesion scan, its twin and the lesion-free scans go through each denoiser (ROIs only, with a
# margin wider than the networks' receptive field; Gauss+RI sees the whole slice). Then, per image kind
# and (diameter, contrast) cell: contrast retained, structure transfer, $d'$ of both observers.

# %%
rois = lr.lesion_rois(ls, denoisers, device=ctx.device)
metrics = lr.lesion_metrics(ls, rois, method=estimation, threshold=dprime_threshold)
art.write_json("lesion_metrics", lr.metrics_json(ls, metrics))
method = {f"{obs}_method": metrics[lr.LOW]["tables"][obs].method for obs in lr.OBSERVERS}
art.write_arrays("contrast_detail", lr.contrast_detail_arrays(metrics, dprime_threshold), {**meta, **method})
examples = [ls.cell(d, c)[0] for d, c in example_lesions]
art.write_arrays("lesion_examples", lr.example_arrays(ls, denoisers, examples, device=ctx.device), meta)

# %% [markdown]
# ## Contrast-detail curves
# For each diameter the smallest |contrast| the observer detects at $d' = 2$ (lower is better). A
# denoiser that removes low-contrast lesions moves its curve **up**, above the low-dose one. NPW and
# CHO differ in kind: the NPW ignores noise correlations, so a denoiser that smooths noise can raise
# its $d'$; the CHO prewhitens, and no post-processing can add information the low-dose scan lacks
# (up to estimation error), so a CHO curve below low dose is noise in the estimate.

# %%
ctx.view(*contrast_detail_from_artifacts(art))  # file: 06_contrast_detail
table_md, table_csv = lesion_panels.contrast_detail_table(art)
ctx.save_table("05_contrast_detail_table", table_csv, "threshold contrasts per image kind and diameter")
display(Markdown(table_md))

# %% [markdown]
# $d'$ against contrast behind the curves, and what survives of the lesion itself.

# %%
ctx.show(*lesion_panels.dprime_from_artifacts(art), name="05_dprime")
ctx.show(*lesion_panels.transfer_figure(art), name="05_lesion_transfer")
full_md, full_csv = lesion_panels.metrics_table(art)
ctx.save_table("05_lesion_metrics_table", full_csv, "lesion metrics per image kind and (diameter, contrast) cell")
ctx.show(*lesion_panels.lesion_examples(art), name="05_lesion_examples")

# %% [markdown]
# ## What an invariance does to a lesion
# On a low-dose slice with a lesion (a crop centred on it) we run `Invariance` (physical HU range,
# constant-rate Adam until every α converged, as notebook 03) and ask how much of the lesion
# $x_\mathrm{inv} - x$ removes: removed $= -\langle x_\mathrm{inv} - x, s_0\rangle / \langle s, s_0\rangle$,
# $s$ the lesion's noise-free profile and $s_0 = s - \bar s$ (1: the whole lesion is gone from the
# input, yet the output barely changed; a constant offset of $x_\mathrm{inv}$ counts as nothing).
#
# A converged bounded-MSE invariance moves $x$ by 650-960 HU RMS in a pattern at the highest
# frequencies, so the question is whether the 40 HU lesion stands out of that change, not whether
# some of the change happens to fall on it. The figure therefore shows the **removal map**: the same
# projection with the lesion's profile placed at every pixel of the crop (red: a lesion there would
# be removed, blue: enhanced; the circle is the lesion's own place). The chance distribution is the
# map at the ~1200 places whose copy of the profile lies inside the crop (at its border $x_\mathrm{inv}$
# also carries the denoiser's padding effects) and misses the lesion, and the table gives the
# lesion's **percentile** among them. About 50 is chance; a denoiser whose invariances aim at the
# lesion puts it near 100 at every α. Neighbouring places are correlated over the lesion's size, so
# the crop holds a few dozen independent places, not 2000, and the four α of one denoiser start from
# the same seed: read the row of percentiles together, not one value.
#
# Every α here converges (loss spread below 1 % over the last 10 % of the run). Smaller α do not, and
# their answer would be set by when one stops them, not by the denoiser (measured on this crop, 3000
# steps, `tests/benchmarks/bench_lesion_convergence.py`: at α = 1e-4 CNN-10's $x_\mathrm{inv} - x$
# still grew from 17 to 251 HU RMS, its loss spread 30-100 %; at 3e-4 it jumped from 170 to 454 HU
# between steps 500 and 1000; at 1e-3 WGAN-VGG's spread stayed at 1.3-2.1 %).

# %%
d_inv, c_inv = invariance_lesion
i_inv = ls.cell(d_inv, c_inv)[0]
x_crop = crop(ls.low_lesion[i_inv], ls.center_px[i_inv], invariance_crop)
s_crop = crop(ls.signal[i_inv], ls.center_px[i_inv], invariance_crop)
inv_dens = art.load_denoisers(invariance_denoisers, ctx.device)
x = torch.from_numpy(hu_to_norm(x_crop))[None, None].float().to(ctx.device)
protocol = recipes.InvarianceProtocol(alphas=list(invariance_alphas), max_iter=invariance_iterations, lr=invariance_lr,
                                      adam_betas=invariance_adam_betas, stop_early=invariance_stop_early,
                                      min_iter=invariance_min_iter)
for name, f in inv_dens.items():
    inv = recipes.optimise_invariance(x, f, invariance_distance, protocol, seed)
    arrays, inv_meta = lr.invariance_lesion_removal(inv, s_crop)
    art.write_arrays("lesion_invariance", arrays, {**meta, **inv_meta, "lr_schedule": "constant", "adam_betas": invariance_adam_betas,
                                                   "denoiser": name,
                                                   "diameter_mm": d_inv,
                                                   "contrast_hu": c_inv, "sample": int(i_inv)}, {"denoiser": name})
ctx.show(*lesion_panels.lesion_invariance_figure(art, inv_dens), name="05_lesion_invariance")
inv_md, inv_csv = lesion_panels.invariance_table(art, inv_dens)
ctx.save_table("05_lesion_invariance_table", inv_csv, "lesion removed by x_inv per denoiser and alpha")
display(Markdown(inv_md))

# %% [markdown]
# ## Verdict
# Per denoiser: where its contrast-detail threshold lies relative to the low-dose input (ratio > 1:
# it needs more contrast to detect the same lesion, i.e. it loses low-contrast lesions), and its d'
# relative to low dose where the low-dose d' is at least 1. "Cannot tell" when the contrast grid
# holds no lesion the low-dose observer detects. Contrast retained < 1 with an unchanged d' means the
# denoiser shrinks the lesion together with the noise: fainter, but not harder to detect.

# %%
verdict = lr.verdicts(metrics)
ctx.add_note("lesion_verdicts", verdict)
display(Markdown(lr.verdict_markdown(verdict)))
