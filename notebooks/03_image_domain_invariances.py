# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

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

# %% tags=["parameters"]
preset = "quick"
data_path = None
device = "auto"
seed = 0
figures_dir = "figures/quick"
artifacts_dir = "papermill_runs/quick/artifacts"
interactive = True
simulation = {}
region = "chest"              # a test slice of this region; shown in the lung and abdomen windows
crop = 128                    # centre crop in px (None: the whole slice)
alphas = [0.01, 0.05, 0.2, 1.0]   # optimised as one batch per (denoiser, distance): panels + trade-off
panel_alpha = 0.05            # the alpha shown in the talk-style panels (must be in alphas)
max_iter = 3000               # Adam iterations (the talk: 3k)
max_iter_vgg = 3000           # iterations with the VGG distance (the most expensive)
lr = 0.01
vgg_weights = "imagenet"      # or "imagenet_or_random" (quick preset offline)
attack_eps_hu = 10.0          # adversarial budget, L-infinity, HU
attack_steps = 10             # BIM iterations; step size 2.5 eps over steps
denoiser_names = ["cnn10", "wganvgg", "gauss_ri"]

# %%
import json

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from ctinv_utils import atomic, context
from ctinv_utils.synthesis.adversarial import BIM, FGSM
from ctinv_utils.data.dataset import load_data
from ctinv_utils.models import DISPLAY_NAME, load_denoiser
from ctinv_utils.synthesis.distances import DISPLAY_NAME as DIST_NAME, DISTANCES, get_distance
from ctinv_utils.synthesis.invariances import Invariance, tradeoff_curve
from ctinv_utils.units import hu_to_norm, norm_to_hu
from ctinv_utils.figures.ct import show_ct, synthesis_status, tradeoff_axes
from ctinv_utils.synthesis.explorer import InvarianceExplorer
from ctinv_utils.units import ABDOMEN, DIFFERENCE, LUNG

ctx = context.setup("03_image_domain_invariances", preset, seed, device, figures_dir, artifacts_dir, interactive,
                    data_path=data_path, simulation=simulation, region=region, crop=crop, alphas=alphas,
                    panel_alpha=panel_alpha, max_iter=max_iter, max_iter_vgg=max_iter_vgg, lr=lr,
                    vgg_weights=vgg_weights, attack_eps_hu=attack_eps_hu, attack_steps=attack_steps)
if panel_alpha not in alphas:
    raise ValueError(f"panel_alpha {panel_alpha} must be one of alphas {alphas}")
info_path = ctx.artifacts_dir / "denoisers.json"
if not info_path.is_file():
    raise FileNotFoundError(f"{info_path} is missing: run notebook 02 first "
                            f"(python -m ctinv_utils.run --preset {preset} --only 02)")
info = json.loads(info_path.read_text())
denoisers = {n: load_denoiser(n, info["models"].get(n), ctx.device) for n in denoiser_names}
data = load_data(data_path, simulation, progress=False)
ctx.data_source = data.source

candidates = [p for p in info["split"]["test"] if data.patients[data.index_of(p)].region == region]
if not candidates:
    raise ValueError(f"no test patient of region {region!r} in this data set; set region to one of "
                     f"{sorted({data.patients[data.index_of(p)].region for p in info['split']['test']})}")
pid = candidates[0]
pi = data.index_of(pid)
low_hu, full_hu = data.slice_hu(pi, data.patients[pi].n_slices // 2)
if crop:
    r0, c0 = (low_hu.shape[0] - crop) // 2, (low_hu.shape[1] - crop) // 2
    low_hu, full_hu = low_hu[r0:r0 + crop, c0:c0 + crop], full_hu[r0:r0 + crop, c0:c0 + crop]
x = torch.from_numpy(hu_to_norm(low_hu))[None, None].float().to(ctx.device)
x_full = torch.from_numpy(hu_to_norm(full_hu))[None, None].float().to(ctx.device)
vgg_distance = get_distance("vgg", vgg_allow_random=vgg_weights == "imagenet_or_random", seed=seed).to(ctx.device)
vgg_note = f"VGG16 distance: {vgg_distance.weights_source}"
ctx.add_note("vgg", vgg_note)
print(f"x: low-dose {region} slice of test patient {pid}, {tuple(x.shape)}; {vgg_note}")

# %% [markdown]
# ## Optimise
# One batched run per denoiser and distance (all alphas at once). Results are saved with their
# optimizer state, so the figures can be regenerated (and runs continued) without recomputing.

# %%
runs = {}
inv_dir = ctx.artifacts_dir / "invariances"
for name, f in denoisers.items():
    for dist in DISTANCES:
        inv = Invariance(x, f, dist, alpha=list(alphas), seed=seed, lr=lr,
                         distance_module=vgg_distance if dist == "vgg" else None)
        inv.synthesize(max_iter_vgg if dist == "vgg" else max_iter, progress=True)
        inv.save(inv_dir / f"{name}_{dist}.pt")
        runs[name, dist] = inv

summary = [dict(denoiser=n, distance=d, **row) for (n, d), inv in runs.items() for row in inv.summary()]
atomic.write_json(ctx.artifacts_dir / "invariances_summary.json", ctx.provenance(rows=summary, vgg=vgg_note))
lines = ["| denoiser | distance | α | d(x, x_inv) | d(f(x), f(x_inv)) | RMS x_inv − x (HU) | RMS f(x_inv) − f(x) (HU) |",
         "|---|---|---|---|---|---|---|"]
lines += [f"| {DISPLAY_NAME[r['denoiser']]} | {DIST_NAME[r['distance']]} | {r['alpha']:g} | {r['input_distance']:.4f} | "
          f"{r['output_distance']:.4f} | {r['input_rms_hu']:.1f} | {r['output_rms_hu']:.1f} |" for r in summary]
display(Markdown("\n".join(lines) + f"\n\n{vgg_note}"))

# %% [markdown]
# Optimisation histories (one line per α): the loss, the output distance the denoiser lets through,
# and the input distance it ignores.

# %%
fig, axes = plt.subplots(len(denoisers), 3, figsize=(14, 3 * len(denoisers)), squeeze=False)
for row, name in zip(axes, denoisers):
    synthesis_status(row, runs[name, "mse"].history, [f"α={a:g}" for a in alphas], f"{DISPLAY_NAME[name]}, MSE:")
fig.tight_layout()
ctx.save_figure(fig, "03_synthesis_status", "optimisation histories, bounded MSE")
plt.show()

# %% [markdown]
# ## The talk's panels
# For each denoiser, at α = `panel_alpha`: the input and its invariance in the lung window
# (C=−600/W=1500 HU) and the abdomen window (C=50/W=400 HU), the outputs, and both differences in
# C=0/W=100 HU. Rows: the three distances.

# %%
def hu(t):
    return norm_to_hu(t.detach().cpu().double().numpy())

k = alphas.index(panel_alpha)
for name in denoisers:
    fx = hu(runs[name, "mse"].target[0, 0])
    xh = hu(x[0, 0])
    fig, axes = plt.subplots(1 + len(DISTANCES), 6, figsize=(20, 3.3 * (1 + len(DISTANCES))))
    show_ct(axes[0, 0], xh, LUNG, "x (low dose)"), show_ct(axes[0, 1], xh, ABDOMEN, "x")
    show_ct(axes[0, 2], fx, LUNG, "f(x)"), show_ct(axes[0, 3], fx, ABDOMEN, "f(x)")
    show_ct(axes[0, 4], hu(x_full[0, 0]), ABDOMEN, "full dose (reference)")
    axes[0, 5].set_axis_off()
    for row, dist in zip(axes[1:], DISTANCES):
        inv = runs[name, dist]
        xi, fi = hu(inv.result[k, 0]), hu(inv.outputs()[k, 0])
        show_ct(row[0], xi, LUNG, f"x_inv ({DIST_NAME[dist]})"), show_ct(row[1], xi, ABDOMEN, "x_inv")
        show_ct(row[2], fi, LUNG, "f(x_inv)"), show_ct(row[3], fi, ABDOMEN, "f(x_inv)")
        show_ct(row[4], xi - xh, DIFFERENCE, "x_inv − x"), show_ct(row[5], fi - fx, DIFFERENCE, "f(x_inv) − f(x)")
    fig.suptitle(f"{DISPLAY_NAME[name]}: invariances at α = {panel_alpha:g}\n{vgg_note}", fontsize=13)
    fig.tight_layout()
    ctx.save_figure(fig, f"03_invariances_{name}", f"{DISPLAY_NAME[name]}, α={panel_alpha:g}, all distances; {vgg_note}",
                    denoiser=name, alpha=panel_alpha)
    plt.show()

# %% [markdown]
# ## Trade-off curves
# How far can the input move before the output notices? Each point is one α (annotated): the input
# distance against the output distance, per distance function, one curve per denoiser. A curve far
# to the right and low means large invariances.

# %%
fig, axes = plt.subplots(1, len(DISTANCES) + 1, figsize=(5 * (len(DISTANCES) + 1), 4))
for ax, dist in zip(axes, DISTANCES):
    curves = {DISPLAY_NAME[n]: tradeoff_curve(runs[n, dist]) for n in denoisers}
    tradeoff_axes(ax, curves, "d(x, x_inv)", "d(f(x), f(x_inv))", DIST_NAME[dist])
curves = {DISPLAY_NAME[n]: tradeoff_curve(runs[n, "mse"], in_hu=True) for n in denoisers}
tradeoff_axes(axes[-1], curves, "RMS x_inv − x (HU)", "RMS f(x_inv) − f(x) (HU)", "bounded MSE, in HU")
fig.suptitle(vgg_note, fontsize=10)
fig.tight_layout()
ctx.save_figure(fig, "03_tradeoff", f"trade-off curves over α = {alphas}; {vgg_note}")
plt.show()

# %% [markdown]
# ## Adversarial contrast: FGSM and BIM
# An L∞ budget of `attack_eps_hu` HU. "output": push f(x_adv) away from f(x) (random start, since the
# gradient at x is zero); "target": push f(x_adv) away from the full-dose image.

# %%
attacks, rows = {}, []
for name, f in denoisers.items():
    for loss in ("output", "target"):
        tgt = x_full if loss == "target" else None
        for cls in (FGSM, BIM):
            kw = {} if cls is FGSM else {"step_hu": 2.5 * attack_eps_hu / attack_steps}
            atk = cls(x, f, eps_hu=attack_eps_hu, loss=loss, target=tgt, seed=seed, device=ctx.device, **kw)
            atk.synthesize(1 if cls is FGSM else attack_steps, progress=False)
            atk.save(ctx.artifacts_dir / "adversarial" / f"{name}_{loss}_{cls.__name__}.pt")
            attacks[name, loss, cls.__name__] = atk
            rows.append(dict(denoiser=name, attack=cls.__name__, loss=loss, **atk.summary()))
atomic.write_json(ctx.artifacts_dir / "adversarial_summary.json", ctx.provenance(rows=rows))
inv_rows = {r["denoiser"]: r for r in summary if r["distance"] == "mse" and r["alpha"] == panel_alpha}
lines = ["| denoiser | perturbation | max \\|Δx\\| (HU) | RMS Δx (HU) | RMS Δf (HU) |", "|---|---|---|---|---|"]
for n in denoisers:
    r = inv_rows[n]
    lines.append(f"| {DISPLAY_NAME[n]} | invariance (MSE, α={panel_alpha:g}) | {r['input_max_hu']:.0f} | "
                 f"{r['input_rms_hu']:.1f} | {r['output_rms_hu']:.1f} |")
    lines += [f"| | {r['attack']} ({r['loss']}) | {r['input_max_hu']:.1f} | {r['input_rms_hu']:.1f} | "
              f"{r['output_rms_hu']:.1f} |" for r in rows if r["denoiser"] == n]
display(Markdown("\n".join(lines)))

fig, axes = plt.subplots(len(denoisers), 4, figsize=(14, 3.3 * len(denoisers)), squeeze=False)
for row, n in zip(axes, denoisers):
    atk = attacks[n, "output", "BIM"]
    inv = runs[n, "mse"]
    show_ct(row[0], hu(atk.result[0, 0]) - hu(x[0, 0]), DIFFERENCE, f"{DISPLAY_NAME[n]}: BIM x_adv − x")
    show_ct(row[1], hu(atk.output()[0, 0]) - hu(atk.clean_output[0, 0]), DIFFERENCE, "f(x_adv) − f(x)")
    show_ct(row[2], hu(inv.result[k, 0]) - hu(x[0, 0]), DIFFERENCE, f"invariance x_inv − x (MSE, α={panel_alpha:g})")
    show_ct(row[3], hu(inv.outputs()[k, 0]) - hu(inv.target[0, 0]), DIFFERENCE, "f(x_inv) − f(x)")
fig.tight_layout()
ctx.save_figure(fig, "03_adversarial_vs_invariance", f"BIM (output loss, eps={attack_eps_hu:g} HU, "
                f"{attack_steps} steps) against the MSE invariance")
plt.show()

# %% [markdown]
# ## Explore: α, distance, denoiser and window
# Values on the precomputed α grid show at once; any other α is optimised on demand
# (`max_iter` iterations, progress bar) and cached. In headless runs the same panels are saved as files.

# %%
explorer = InvarianceExplorer(x, denoisers, DISTANCES, alphas, max_iter=max_iter, lr=lr, seed=seed,
                              cache_dir=ctx.artifacts_dir / "explorer_cache", distance_modules={"vgg": vgg_distance})
for (n, _), inv in runs.items():
    explorer.add(inv, n)
if interactive:
    display(explorer.widget())
else:
    for n in denoisers:
        fig = explorer.figure(n, "mse", panel_alpha, "lung",
                              title=f"explorer: {DISPLAY_NAME[n]}, bounded MSE, α = {panel_alpha:g}")
        ctx.save_figure(fig, f"03_explorer_{n}", "explorer panels (the widget's view)")
        plt.close(fig)
