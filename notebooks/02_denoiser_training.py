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
simulation = {"scanner": "clinical", "image_size": 512, "n_views": 1152, "photons_full_dose": 200000.0, "patients_per_region": 4,
              "min_slices": 3, "max_slices": 8}  # the embedded data (SimulationConfig settings)
# training settings per method (see ctinv_utils/training/methods.py)
cnn10 = {"iterations": 1500, "batch_size": 16, "patch_size": 64, "lr": 3e-4}
wganvgg = {"iterations": 1700, "pretrain_iterations": 1500, "batch_size": 8, "patch_size": 48, "lr": 6e-4,
           "gan_lr": 2e-5, "critic_lr": 1e-4, "gan_betas": [0.5, 0.9], "critic_warmup": 50,
           "lambda_perceptual": 1e6, "vgg_weights": "imagenet_or_random"}
# ldct-benchmark's published networks (e.g. "ldctbench:cnn10") evaluated beside ours when their files are
# in the hub cache (`python -m ctinv_utils hub download cnn10`); a missing one is skipped with a note
published = []

# %%
import warnings

import numpy as np
from IPython.display import Markdown, display

from ctinv_utils import denoise_hu, display_name, evaluate, load_data, recipes

from ctinv_utils.pipeline import context

from ctinv_utils.report import panels
from ctinv_utils.data.ldctbench_split import evaluation_patients
from ctinv_utils.models.ldctbench.hub import present_published
from ctinv_utils.models import load_denoiser
from ctinv_utils.training.evaluation import worse_than_input
from ctinv_utils.training.model_cache import training_data_key
from ctinv_utils.units import ABDOMEN, LUNG

ctx = context.setup("02_denoiser_training", globals())
art = ctx.artifacts
data = load_data(data_path, simulation, progress=False)
ctx.data_source = data.source
split = art.data_split(data)
train_data = data.subset(split["train"])
data_key = training_data_key(data, split)
print(f"data: {data.source}; training patients: {split['train']}; test patients: {split['test']}")

# %% [markdown]
# ## Train (or load) the networks

# %%
models, records, paths = recipes.train_denoisers(ctx.settings, train_data, data_key, ctx.device)
for name, rec in records.items():
    print(f"{display_name(name)}: {paths[name].name} {rec.get('notes') or ''}")
    art.write_arrays("training_history", {k: np.asarray(v) for k, v in rec["history"].items()},
                     {"config": rec["config"], "notes": rec.get("notes", {})}, {"name": name})
vgg_note = "WGAN-VGG perceptual loss: " + records["wganvgg"].get("notes", {}).get("vgg", "")
ctx.add_note("vgg", vgg_note)
published_files, missing = present_published(published)
for name in missing:
    print(f"note: {name} skipped: its checkpoint is not in the hub cache "
          f"(`python -m ctinv_utils hub download {name.split(':', 1)[1]}`)")
if missing:
    ctx.add_note("published_missing", missing)
for name, path in published_files.items():
    models[name] = load_denoiser(name, path, ctx.device)
    print(f"{display_name(name)}: {path}")
art.save_denoisers({n: m for n, m in models.items() if n not in published_files},
                   {"split": split, "vgg": vgg_note, "train_configs": {n: r["config"] for n, r in records.items()}},
                   published=published_files)

# %% [markdown]
# ## Loss curves

# %%
ctx.show(*panels.loss_curves(art), name="02_loss_curves")

# %% [markdown]
# ## Evaluation on the test patients
# PSNR and SSIM on the images mapped through the region's window, RMSE in HU within that window.
# A trained denoiser must beat its low-dose input in both PSNR and SSIM in every region: the
# invariances of a network that does not denoise answer nothing.

# %%
test_ids = evaluation_patients(data, split["test"], models)  # ldct-benchmark's test patients for its networks
rows = evaluate(models, data, test_ids, ctx.device, progress=False)
not_denoising = worse_than_input(rows, [*records, *published_files])
art.write_json("evaluation", {"rows": rows, "not_denoising": not_denoising, "vgg": vgg_note})
ctx.add_note("denoisers_beat_low_dose", not not_denoising)
if not_denoising:
    text = "; ".join(f"{display_name(r['method'])} in {r['region']} (PSNR {r['psnr_gain_db']:+.2f} dB, "
                     f"SSIM {r['ssim_gain']:+.3f} against low dose)" for r in not_denoising)
    warnings.warn(f"trained denoisers that do NOT beat their low-dose input: {text}", stacklevel=1)
    display(Markdown(f"<div style='color:#b00;font-weight:bold'>⚠ Not a denoiser here: {text}. "
                     "Invariances of these networks answer nothing.</div>"))
display(Markdown(panels.evaluation_table(art)[0]))
ctx.show(*panels.evaluation_bars(art), name="02_evaluation_psnr")

# %% [markdown]
# ## Example slices
# A chest test slice in the lung window and an abdomen test slice in the abdomen window.

# %%
for region, window in (("chest", LUNG), ("abdomen", ABDOMEN)):
    ids = data.patients_of(region, split["test"])
    if ids:
        low, full = data.middle_slice(ids[0])
        art.write_arrays("examples", {"low": low, "full": full, **{n: denoise_hu(m, low, ctx.device) for n, m in models.items()}},
                         {"window": window.name, "patient": data.patients[ids[0]].patient_id}, {"region": region})
ctx.show(*panels.examples(art), name="02_examples")
