# %% [markdown]
# # 03 · Image-domain invariances
#
# An **invariance** of a denoiser $f$ is an input $x_\mathrm{inv}$ far from $x$ whose output barely
# moves. Following the talk we find it by
#
# $$x_\mathrm{inv} = \arg\min\; d\big(f(x), f(x_\mathrm{inv})\big) - \alpha\, d\big(x, x_\mathrm{inv}\big),
# \qquad x_\mathrm{inv}^0 = x + n,\; n \sim \mathcal N(0, 10^{-2}),$$
#
# with Adam, for three distances $d$: MSE bounded by +1, the structural dissimilarity
# $(1-\mathrm{SSIM})/2$, and a VGG16 perceptual distance. Whatever $x_\mathrm{inv} - x$ shows is
# something the denoiser does not see. **Adversarial perturbations** are the contrast: a small input
# change that moves the output a lot.
#
# Every alpha of a (denoiser, distance) pair is optimised in one batch from the same $x_\mathrm{inv}^0$;
# each alpha keeps its own objective, so the batch equals separate runs.
#
# One departure from the talk, switchable: **x_inv stays physical** (projected onto −1024…3071 HU
# after every step; `hu_range = None` is the talk's unconstrained form, shown side by side below).
# The optimiser is the talk's Adam at a constant rate, with a rate per distance and a shorter memory
# of the squared gradients (β2 = 0.9; README: Converged, and said so). A run **converged** when its
# loss stayed within 1 % over the last 10 % of its iterations (its spread, not just its two ends);
# a run stops as soon as every α
# has (`stop_early`), and each run reports whether it did. (With `lr_schedule = "cosine"` the change
# is scaled to the full rate: a decayed rate stops the iterate, not the problem.) Since a fixed α
# means different things for different denoisers and distances, the panels are also drawn **at an
# output tolerance**: the largest input change whose output moves by at most `tol_hu` HU RMS.

# %% tags=["parameters"]
preset = "quick"
data_path = None
device = "auto"
seed = 0
figures_dir = "figures/quick"
artifacts_dir = "papermill_runs/quick/artifacts"
interactive = True
simulation = {"scanner": "clinical", "image_size": 512, "n_views": 1152, "photons_full_dose": 200000.0, "patients_per_region": 4,
              "min_slices": 3, "max_slices": 8}  # the embedded data (SimulationConfig settings)
region = "chest"              # a test slice of this region; shown in the lung and abdomen windows
crop = 96                     # centre crop in px (None: the whole slice)
alphas = [0.002, 0.01, 0.05, 0.2]  # optimised as one batch per (denoiser, distance): panels + trade-off
alphas_dssim = [0.005, 0.01, 0.05, 0.2]  # (1-SSIM)/2's grid (None: alphas): at 0.002 it does not converge
alphas_vgg = [0.01, 0.05]     # the VGG distance's grid (None: alphas); it costs ~5x the others per alpha
panel_alpha = 0.05            # the alpha shown in the talk-style panels (must be in every distance's grid)
max_iter = 1200               # Adam iterations at most (the talk: 3k at a constant rate; the paper preset)
max_iter_vgg = 800            # iterations at most with the VGG distance (the most expensive)
lr = {"mse": 0.1, "dssim": 0.01, "vgg": 0.1}  # Adam's learning rate (normalized units per step): one number,
                              # or one per distance ((1-SSIM)/2 weighs a few HU in flat tissue: a 10x smaller step)
lr_schedule = "constant"      # "constant": the talk; "cosine": decays to 1% of lr over the run
stop_early = True             # stop a run once every alpha converged (loss within 1% over the last 10%)
min_iter = 300                # ... but not before this many (a 10% window of a short run misses a slow trend)
continuation = False          # True: the largest alpha from x + noise, each smaller one from its neighbour's result
warm_min_iter = 50            # ... whose early stop may act from this many iterations on
explorer_warm_start = True    # the explorer starts an alpha not computed yet from the nearest grid alpha's result
adam_betas = [0.9, 0.9]       # Adam's (beta1, beta2); the talk: PyTorch's (0.9, 0.999), which grows small-alpha
                              # invariances ~5x slower (README: Converged, and said so)
hu_range = [-1024, 3071]      # x_inv projected onto this HU range after each step; None: unconstrained (talk)
compare_unconstrained = True  # also run bounded MSE without the range, shown side by side
unconstrained_alphas = [0.05, 0.2]  # the alphas of that comparison (None: alphas; must include panel_alpha)
tol_hu = 5.0                  # output tolerance (RMS f(x_inv) - f(x), HU) of the "at the tolerance" panels
tolerance_refine_steps = 2    # batched runs refining alpha between grid points (0: read off the grid)
tolerance_refine_steps_vgg = 0
tolerance_candidates = 1      # alphas per refinement run (one batch)
linearised_crop = 48          # centre crop (px) for the Jacobian spectrum (None: the whole analysed slice)
linearised_k = 4              # smallest and largest eigenpairs of J^T J
linearised_max_products = 300 # budget in J^T J v products (one jvp + one vjp each)
vgg_weights = "imagenet_or_random"  # imagenet never falls back (paper preset)
attack_eps_hu = 10.0          # adversarial budget, L-infinity, HU
attack_steps = 10             # BIM iterations; step size 2.5 eps over steps
denoiser_names = ["cnn10", "wganvgg", "gauss_ri"]  # may name published ones: "ldctbench:redcnn"
include_published = True      # also analyse every ldct-benchmark network notebook 02 evaluated

# %%
from IPython.display import Markdown, display

from ctinv_utils import InvarianceExplorer, get_distance, load_data, recipes, require_in_grid

from ctinv_utils.pipeline import context

from ctinv_utils.report import panels
from ctinv_utils.names import display_name
from ctinv_utils.synthesis.distances import DISTANCES

ctx = context.setup("03_image_domain_invariances", globals())
art = ctx.artifacts
protocol = recipes.InvarianceProtocol.from_settings(ctx.settings)
require_in_grid(panel_alpha, {f"the {dist} distance": protocol.grid(dist) for dist in DISTANCES})
if compare_unconstrained and unconstrained_alphas:
    require_in_grid(panel_alpha, {"unconstrained_alphas (the comparison panel shows it)": unconstrained_alphas},
                    fix="add it or set unconstrained_alphas to None")
data = load_data(data_path, simulation, progress=False)
ctx.data_source = data.source
names = [*denoiser_names, *(n for n in art.published_denoisers() if include_published and n not in denoiser_names)]
denoisers = art.load_denoisers(names, ctx.device)
x, x_full, where = recipes.analysis_slice(data, art, names, region, crop, ctx.device)
vgg_distance = get_distance("vgg", vgg_allow_random=vgg_weights == "imagenet_or_random", seed=seed).to(ctx.device)
ctx.add_note("vgg", vgg_note := f"VGG16 distance: {vgg_distance.describe(ctx.device)}")
print(f"x: low-dose {region} slice {where['slice']} of test patient {where['patient']}, {tuple(x.shape)}; {vgg_note}")

# %% [markdown]
# ## Optimise
# One batched run per denoiser and distance (all alphas at once). Each run is saved with its
# optimizer state (so it can be continued) and with its figure arrays in HU (so the figures can be
# redrawn without a network).

# %%
study = recipes.invariance_study(x, denoisers, DISTANCES, protocol, seed, art, tol_hu=tol_hu,
                                 refine_steps=tolerance_refine_steps, refine_steps_vgg=tolerance_refine_steps_vgg,
                                 candidates=tolerance_candidates, vgg_distance=vgg_distance, vgg_note=vgg_note)
converged = (f"{study['converged']}/{len(study['rows'])} (denoiser, distance, α) runs converged (loss within 1% "
             "over the last 10% of the iterations, scaled to the full learning rate)")
ctx.add_note("converged", converged)
print(f"converged: {converged}")
display(Markdown(panels.invariance_table(art)))

# %% [markdown]
# Optimisation histories (one line per α): the loss, the output distance the denoiser lets through,
# and the input distance it ignores.

# %%
ctx.show(*panels.synthesis_status(art, denoisers, "mse"), name="03_synthesis_status")

# %% [markdown]
# ## The talk's panels
# For each denoiser, at α = `panel_alpha`: the input and its invariance in the lung window
# (C=−600/W=1500 HU) and the abdomen window (C=50/W=400 HU), the outputs, and both differences in
# C=0/W=100 HU (with their RMS in HU). Rows: the three distances.

# %%
for name in denoisers:
    ctx.view(*panels.talk_results(art, name, DISTANCES, panel_alpha))  # file: 06_results_<name>_differences

# %% [markdown]
# ## At a stated output tolerance
# The same slides where the reader's question lives: for each distance, the **largest** input change
# whose output moves by at most `tol_hu` HU RMS (below the full-dose noise), read off the α grid and
# refined between grid points. Here the f(x_inv) − f(x) column is, by construction, nearly blank.

# %%
display(Markdown(panels.tolerance_table(art)))
for name in denoisers:
    ctx.view(*panels.tolerance_results(art, name, DISTANCES, tol_hu))  # file: 06_tolerance_<name>

# %% [markdown]
# ## Physically valid against the talk's unconstrained form
# Without a range, bounded MSE pushes x_inv below −1024 HU (negative attenuation, which no scanner
# measures). Bounded MSE at every α (of `unconstrained_alphas`), with and without the projection:

# %%
if compare_unconstrained and hu_range is not None:
    recipes.unconstrained_study(x, denoisers, protocol, unconstrained_alphas or alphas, seed, art)
    display(Markdown(panels.range_table(art)))
    ctx.view(*panels.range_comparison(art, denoisers, panel_alpha))  # file: 06_hu_range

# %% [markdown]
# ## Trade-off curves
# How far can the input move before the output notices? Each point is one α (annotated): the input
# distance against the output distance, per distance function, one curve per denoiser. A curve far
# to the right and low means large invariances.

# %%
ctx.view(*panels.tradeoff(art, denoisers, DISTANCES))  # file: 06_tradeoff

# %% [markdown]
# ## Linearised invariances: which α is worth running
# Near x, the directions a denoiser ignores are the eigenvectors of $J^\top J$ ($J$ its Jacobian
# at x) with the smallest eigenvalues λ: an input change εv changes the output by √λ·ε. A
# bounded-MSE invariance only starts to grow along directions with λ < α, so λ_min is the smallest α
# worth running (computed matrix-free by Lanczos on a `linearised_crop` px centre crop; every pair is
# checked by its residual).

# %%
recipes.linearised_study(x, denoisers, linearised_crop, linearised_k, linearised_max_products, seed, art)
display(Markdown(panels.linearised_table(art, denoisers, alphas)))
for name in denoisers:
    ctx.show(*panels.linearised(art, name, alphas), name=f"03_linearised_{name}", denoiser=name)

# %% [markdown]
# ## Adversarial contrast: FGSM and BIM
# An L∞ budget of `attack_eps_hu` HU. "output": push f(x_adv) away from f(x) (random start, since the
# gradient at x is zero); "target": push f(x_adv) away from the full-dose image. The figure compares
# like with like: BIM at the input budget of the bounded-MSE invariance at the output tolerance
# (L∞ ε = its RMS input change), so the same size of input change moves the output a lot (attack)
# or not at all (invariance).

# %%
recipes.adversarial_study(x, x_full, denoisers, attack_eps_hu, attack_steps, seed, ctx.device, art)
display(Markdown(panels.attack_table(art, denoisers, panel_alpha)))
ctx.view(*panels.attack_contrast(art, denoisers))  # file: 06_adversarial_vs_invariance

# %% [markdown]
# ## Explore: α, distance, denoiser and window
# Values on the precomputed α grid show at once; any other α is optimised on demand
# (`max_iter` iterations, progress bar) and cached. In headless runs the same panels are saved as files.

# %%
explorer = InvarianceExplorer(x, denoisers, DISTANCES, alphas, max_iter=max_iter, lr=lr, seed=seed,
                              cache_dir=ctx.artifacts_dir / "explorer_cache", distance_modules={"vgg": vgg_distance},
                              lr_schedule=lr_schedule, hu_range=hu_range, adam_betas=adam_betas, synthesize_kw=protocol.stop(),
                              warm_start=explorer_warm_start, warm_min_iter=warm_min_iter)
for name in denoisers:
    for dist in DISTANCES:
        explorer.add_arrays(name, dist, art.read_arrays("invariance_arrays", denoiser=name, distance=dist))
if interactive:
    display(explorer.widget())
else:
    for name in denoisers:
        ctx.show(explorer.figure(name, "mse", panel_alpha, "lung"), name=f"03_explorer_{name}",
                 caption=f"explorer panels (the widget's view): {display_name(name)}, bounded MSE, α={panel_alpha:g}")
