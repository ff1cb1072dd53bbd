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
# # 02 · The denoisers: CNN-10, WGAN-VGG and Gauss+RI
#
# The talk analyses three denoisers:
#
# * **CNN-10** (Chen et al. 2017): a 3-layer CNN trained with the L2 loss;
# * **WGAN-VGG** (Yang et al. 2018): an 8-layer CNN trained as a Wasserstein GAN with a VGG19
#   perceptual loss;
# * **Gauss+RI**: a Gaussian filter (σ = 1 px) that returns zero inside the central 30×30 px
#   square, a denoiser whose invariances we know exactly.
#
# This notebook trains the two networks on patient-balanced patches of the training patients (or
# loads them from the model cache when this configuration was trained before), shows their loss
# curves, and compares all three with the low-dose input on the test patients.

# %% tags=["parameters"]
preset = "quick"
data_path = None
device = "auto"
seed = 0
figures_dir = "figures/quick"
artifacts_dir = "papermill_runs/quick/artifacts"
interactive = True
simulation = {}
# TrainConfig settings per method (see ctinv_utils/training.py)
cnn10 = {"iterations": 1500, "batch_size": 16, "patch_size": 64, "lr": 3e-4}
wganvgg = {"iterations": 1000, "pretrain_iterations": 600, "batch_size": 8, "patch_size": 48, "lr": 2e-4,
           "lambda_perceptual": 1e5, "vgg_weights": "imagenet_or_random"}

# %%

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from ctinv_utils import atomic, context
from ctinv_utils.data.dataset import load_data
from ctinv_utils.models import DISPLAY_NAME, build_denoiser, freeze
from ctinv_utils.training.evaluation import denoise_hu, evaluate
from ctinv_utils.figures.ct import show_ct
from ctinv_utils.provenance import config_hash
from ctinv_utils.data.sampling import split_patients
from ctinv_utils.training.loop import TrainConfig, train_or_load
from ctinv_utils.units import ABDOMEN, LUNG

ctx = context.setup("02_denoiser_training", preset, seed, device, figures_dir, artifacts_dir, interactive,
                    data_path=data_path, simulation=simulation, cnn10=cnn10, wganvgg=wganvgg)
data = load_data(data_path, simulation, progress=False)
ctx.data_source = data.source
split = split_patients(data, seed=seed)
train_data = data.subset(split["train"])
data_key = config_hash({"source": data.source, "root": str(data.root), "train": split["train"]})
print(f"data: {data.source}; training patients: {split['train']}; test patients: {split['test']}")

# %% [markdown]
# ## Train (or load) the networks

# %%
models, records = {}, {}
for name, settings in (("cnn10", cnn10), ("wganvgg", wganvgg)):
    cfg = TrainConfig.from_dict({"method": name, "seed": seed, **settings})
    model, rec, path = train_or_load(cfg, train_data, data_key, ctx.device, progress=True)
    models[name], records[name] = model, rec
    notes = rec.get("notes", {})
    print(f"{DISPLAY_NAME[name]}: {path.name} {notes if notes else ''}")
models["gauss_ri"] = freeze(build_denoiser("gauss_ri").to(ctx.device))
vgg_note = "WGAN-VGG perceptual loss: " + records["wganvgg"].get("notes", {}).get("vgg", "")
ctx.add_note("vgg", vgg_note)

# keep the trained weights with this run's artifacts, for notebook 03 and the figures
model_dir = ctx.artifacts_dir / "models"
for name in ("cnn10", "wganvgg"):
    atomic.torch_save(model_dir / f"{name}.pt", {"model": {k: v.cpu() for k, v in models[name].state_dict().items()}})
atomic.write_json(ctx.artifacts_dir / "denoisers.json", ctx.provenance(
    models={n: str(model_dir / f"{n}.pt") for n in ("cnn10", "wganvgg")}, split=split, vgg=vgg_note,
    train_configs={n: records[n]["config"] for n in ("cnn10", "wganvgg")}))

# %% [markdown]
# ## Loss curves

# %%
def smooth(v, k=25):
    v = np.asarray(v, dtype=float)
    return np.convolve(v, np.ones(k) / k, mode="valid") if len(v) > k else v

fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
axes[0].semilogy(smooth(records["cnn10"]["history"]["loss"]))
axes[0].set_title("CNN-10: L2 loss (normalized units²)")
h = records["wganvgg"]["history"]
axes[1].semilogy(smooth(h["mse"]), label="L2 to full dose")
axes[1].set_title("WGAN-VGG generator: L2 to full dose")
if "perceptual" in h:
    axes[2].plot(smooth(h["wasserstein"]), label="critic: Wasserstein estimate")
    axes[2].plot(smooth(np.asarray(h["perceptual"]) * wganvgg.get("lambda_perceptual", 1)), label="λ · perceptual")
    axes[2].legend(fontsize=8)
axes[2].set_title(f"WGAN-VGG GAN phase\n{vgg_note}", fontsize=9)
for ax in axes:
    ax.set_xlabel("iteration (moving average)")
fig.tight_layout()
ctx.save_figure(fig, "02_loss_curves", f"training losses; {vgg_note}")
plt.show()

# %% [markdown]
# ## Evaluation on the test patients
# PSNR and SSIM on the images mapped through the region's window, RMSE in HU within that window.

# %%
rows = evaluate(models, data, split["test"], ctx.device, progress=False)
atomic.write_json(ctx.artifacts_dir / "evaluation.json", ctx.provenance(rows=rows, vgg=vgg_note))
order = ["low dose", "cnn10", "wganvgg", "gauss_ri"]
lines = ["| region | method | slices | PSNR (dB) | SSIM | RMSE (HU) |", "|---|---|---|---|---|---|"]
for r in sorted(rows, key=lambda r: (r["region"], order.index(r["method"]))):
    lines.append(f"| {r['region']} | {DISPLAY_NAME.get(r['method'], r['method'])} | {r['slices']} | "
                 f"{r['psnr']:.2f} | {r['ssim']:.3f} | {r['rmse_hu']:.1f} |")
display(Markdown("\n".join(lines) + f"\n\n{vgg_note}"))

fig, ax = plt.subplots(figsize=(7, 3.5))
regions = sorted({r["region"] for r in rows})
for k, method in enumerate(order):
    vals = [next(r["psnr"] for r in rows if r["method"] == method and r["region"] == reg) for reg in regions]
    ax.bar(np.arange(len(regions)) + (k - 1.5) * 0.2, vals, 0.2, label=DISPLAY_NAME.get(method, method))
ax.set_xticks(np.arange(len(regions)), regions)
ax.set_ylabel("PSNR in region window (dB)")
ax.legend(fontsize=8, ncol=4, loc="lower center")
ax.set_title(vgg_note, fontsize=9)
fig.tight_layout()
ctx.save_figure(fig, "02_evaluation_psnr", f"test-set PSNR per region; {vgg_note}")
plt.show()

# %% [markdown]
# ## Example slices
# A chest test slice in the lung window and an abdomen test slice in the abdomen window.

# %%
examples = []
for region, window in (("chest", LUNG), ("abdomen", ABDOMEN)):
    ids = [pid for pid in split["test"] if data.patients[data.index_of(pid)].region == region]
    if ids:
        pi = data.index_of(ids[0])
        low, full = data.slice_hu(pi, data.patients[pi].n_slices // 2)
        examples.append((region, window, low, full))
fig, axes = plt.subplots(len(examples), 5, figsize=(19, 3.6 * len(examples)), squeeze=False)
for row, (region, window, low, full) in zip(axes, examples):
    show_ct(row[0], low, window, f"{region}: low dose")
    show_ct(row[1], full, window, "full dose")
    for ax, name in zip(row[2:], ("cnn10", "wganvgg", "gauss_ri")):
        show_ct(ax, denoise_hu(models[name], low, ctx.device), window, DISPLAY_NAME[name])
fig.suptitle(vgg_note, fontsize=10)
fig.tight_layout()
ctx.save_figure(fig, "02_examples", f"test slices denoised; {vgg_note}")
plt.show()
