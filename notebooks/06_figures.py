# %% [markdown]
# # 06 · Figures: every result panel of the talk
#
# This notebook only **reads** what notebooks 02–05 saved (their artifacts, in HU) and draws the
# talk's result panels from them: it never trains, never optimises and never loads a network, so it
# re-runs in seconds. Every panel carries its HU window; every caption names the preset, the data
# source, the denoiser, the distance, α, the iterations and the VGG weights. The figure map in the
# README links each talk slide to its file here.

# %% tags=["parameters"]
preset = "quick"
data_path = None
device = "auto"
seed = 0
figures_dir = "figures/quick"
artifacts_dir = "papermill_runs/quick/artifacts"
interactive = True
denoiser_names = ["cnn10", "wganvgg", "gauss_ri"]  # plus the published networks notebook 03 analysed
distances = ["mse", "dssim", "vgg"]
panel_alpha = 0.05            # the talk's fixed-α protocol (must be on notebook 03's grid)
natural_denoisers = ["cnn10"]
n_natural_panels = 4          # samples shown per slice (the std map uses all of notebook 04's samples)

# %%
from IPython.display import Markdown, display

from ctinv_utils.pipeline import context

from ctinv_utils.report import panels
from ctinv_utils.figures.contrast_detail import contrast_detail_from_artifacts

ctx = context.setup("06_figures", globals())
art = ctx.artifacts
ctx.data_source = art.read_json("data")["source"]
print(f"drawing from {art.root} (data: {ctx.data_source})")
denoiser_names = panels.analysed_denoisers(art, denoiser_names)

# %% [markdown]
# ## Results: CNN-10, WGAN-VGG, Gaussian + RI
# The talk shows each denoiser twice: x, x_inv, f(x), f(x_inv) in the lung (C=−600/W=1500 HU) and
# abdomen (C=50/W=400 HU) windows, one row per distance; then the same with the differences
# x_inv − x and f(x_inv) − f(x) in C=0/W=100 HU.

# %%
for name in denoiser_names:
    ctx.show(*panels.talk_results(art, name, distances, panel_alpha, differences=False), name=f"06_results_{name}",
             denoiser=name, alpha=panel_alpha)
    ctx.show(*panels.talk_results(art, name, distances, panel_alpha, differences=True),
             name=f"06_results_{name}_differences", denoiser=name, alpha=panel_alpha)

# %% [markdown]
# ## The same slides at an output tolerance
# A fixed α means a different output change for every denoiser and distance. Here each row is the
# largest invariance whose output moves by at most the tolerance of notebook 03 (RMS, HU).

# %%
tol_hu = art.read_json("tolerance_summary")["tol_hu"]
display(Markdown(panels.tolerance_table(art)))
for name in denoiser_names:
    ctx.show(*panels.tolerance_results(art, name, distances, tol_hu), name=f"06_tolerance_{name}",
             denoiser=name, tol_hu=tol_hu)

# %% [markdown]
# ## Natural invariances
# Samples g(z|x) of one slice, their differences and the pixel-wise standard deviation over all
# samples; then the noise power spectra of the changes against the real low-dose noise.

# %%
for name in natural_denoisers:
    ctx.show(*panels.natural_samples(art, name, n_natural_panels), name=f"06_natural_{name}", denoiser=name)
    ctx.show(*panels.natural_nps(art, name), name=f"06_natural_nps_{name}", denoiser=name)
    display(Markdown(panels.natural_verdicts(art, name)))

# %% [markdown]
# ## Beyond the talk: does denoising remove lesions?
# Contrast-detail curves of notebook 05: the smallest lesion contrast a model observer detects at
# d' = 2 against the lesion diameter, for low dose, full dose and each denoiser.

# %%
ctx.show(*contrast_detail_from_artifacts(art), name="06_contrast_detail")

# %% [markdown]
# ## Trade-off curves, adversarial contrast, denoiser evaluation

# %%
ctx.show(*panels.tradeoff(art, denoiser_names, distances), name="06_tradeoff")
ctx.show(*panels.attack_contrast(art, denoiser_names), name="06_adversarial_vs_invariance")
ctx.show(*panels.range_comparison(art, denoiser_names, panel_alpha), name="06_hu_range")
ctx.show(*panels.evaluation_figure(art), name="06_evaluation_table")
markdown, csv = panels.evaluation_table(art)
ctx.save_table("06_evaluation", csv, "PSNR/SSIM/RMSE per region and method on the test patients")
display(Markdown(markdown))

# %% [markdown]
# ## The explorer, without Python
# `explorer.html` beside the figures opens from the file in any browser (no kernel, no server): the
# alpha grid of every denoiser and distance, with the HU window of choice and both differences.

# %%
explorer = ctx.save_explorer(panels.explorer_entries(art, denoiser_names, distances),
                             title=f"Invariances, {preset} preset: x, x_inv, f(x), f(x_inv) over the alpha grid",
                             caption="alpha grid of notebook 03")
print(f"open {explorer} in a browser ({explorer.stat().st_size / 1e6:.1f} MB)")

