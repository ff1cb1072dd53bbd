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
# # 01 · Data: paired low-dose / full-dose CT
#
# The talk uses the TCIA *LDCT-and-Projection-data* (Mayo): head, chest and abdomen scans with a
# full-dose reconstruction and a simulated low-dose twin (25 % dose for head and abdomen, 10 % for
# chest). Without a data path, ctinv uses its embedded stand-in: anatomical phantoms sent through a
# simulated acquisition (forward projection, Poisson noise at both dose levels, FBP, HU).
#
# This notebook shows what the data look like, checks that the low-dose noise grows as
# $\sqrt{1/\mathrm{dose}}$, and shows that training samples every patient equally often.

# %% tags=["parameters"]
preset = "quick"          # name of the preset that set these values
data_path = None          # real data root (TCIA / AAPM layout); None: $CTINV_DATA or simulated
device = "auto"
seed = 0
figures_dir = "figures/quick"
artifacts_dir = "papermill_runs/quick/artifacts"
interactive = True        # False in headless runs
simulation = {}           # SimulationConfig settings for the embedded data
n_sampler_draws = 20000   # draws for the sampling histogram
noise_slices_per_patient = None  # slices per patient for the noise measurement (None: all)

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from ctinv_utils import context
from ctinv_utils.data.dataset import load_data
from ctinv_utils.data.noise_measurement import find_flat_roi, noise_std_hu
from ctinv_utils.figures.ct import show_ct
from ctinv_utils.data.sampling import PatientBalancedSampler, SliceUniformSampler, split_patients
from ctinv_utils.units import DIFFERENCE, REGION_WINDOW, LUNG, ABDOMEN

ctx = context.setup("01_data", preset, seed, device, figures_dir, artifacts_dir, interactive,
                    data_path=data_path, simulation=simulation)
data = load_data(data_path, simulation)
ctx.data_source = data.source
print(f"data: {data.source}; root: {data.root}")

# %% [markdown]
# ## Patients and slices per region

# %%
split = split_patients(data, seed=seed)
rows = data.summary()
table = "| region | patients | slices | low-dose fraction |\n|---|---|---|---|\n" + "\n".join(
    f"| {r['region']} | {r['patients']} | {r['slices']} | {r['dose_fraction']:.0%} |" for r in rows)
display(Markdown(table))
display(Markdown("Patient split (by patient, stratified by region): " + "; ".join(
    f"**{k}**: {', '.join(v)}" for k, v in split.items())))

# %% [markdown]
# ## Low-dose / full-dose pairs
# Each row: one patient per region, the middle slice. Chest is shown in the lung window, abdomen
# in the abdomen window, head in the head window; the difference low − full in C=0/W=100 HU.

# %%
regions = [r["region"] for r in rows]
panels = []
for region in regions:
    pi = next(i for i, p in enumerate(data.patients) if p.region == region)
    p = data.patients[pi]
    low, full = data.slice_hu(pi, p.n_slices // 2)
    win = REGION_WINDOW[region]
    panels.append((p, low, full, win))

fig, axes = plt.subplots(len(panels), 3, figsize=(11, 3.4 * len(panels)), squeeze=False)
for row, (p, low, full, win) in zip(axes, panels):
    show_ct(row[0], low, win, f"{p.patient_id} ({p.region}) low dose {p.dose_fraction:.0%}")
    show_ct(row[1], full, win, f"{p.patient_id} full dose")
    show_ct(row[2], low - full, DIFFERENCE, "low − full")
fig.tight_layout()
ctx.save_figure(fig, "01_data_pairs", "low/full-dose pairs per region")
plt.show()

# %% [markdown]
# Chest slices in both windows of the talk (lung C=-600/W=1500, abdomen/soft tissue C=50/W=400):

# %%
chest = [i for i, p in enumerate(data.patients) if p.region == "chest"]
if chest:
    low, full = data.slice_hu(chest[0], data.patients[chest[0]].n_slices // 2)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    show_ct(axes[0], low, LUNG, "low dose"), show_ct(axes[1], full, LUNG, "full dose")
    show_ct(axes[2], low, ABDOMEN, "low dose"), show_ct(axes[3], full, ABDOMEN, "full dose")
    fig.tight_layout()
    ctx.save_figure(fig, "01_data_chest_windows", "chest slice, lung and abdomen windows")
    plt.show()

# %% [markdown]
# ## Noise in a flat region
# In every slice we pick the 15×15 px soft-tissue square with the least structure (judged on the
# smoothed full-dose image) and measure the standard deviation of both images there. Quantum noise
# predicts a low/full ratio of $\sqrt{1/\mathrm{dose}}$: 2.0 at 25 % dose, 3.16 at 10 %.
# Remaining anatomy in the square adds to both and pulls the measured ratio slightly down.

# %%
noise = {}
for pi, p in enumerate(data.patients):
    n = p.n_slices if noise_slices_per_patient is None else min(p.n_slices, noise_slices_per_patient)
    for s in np.unique(np.linspace(0, p.n_slices - 1, n).round().astype(int)):
        low, full = data.slice_hu(pi, s)
        try:
            roi = find_flat_roi(full)
        except ValueError:
            continue
        noise.setdefault(p.region, []).append((noise_std_hu(full, roi), noise_std_hu(low, roi)))

fig, ax = plt.subplots(figsize=(6.5, 3.8))
x = np.arange(len(noise))
lines = ["| region | full dose std (HU) | low dose std (HU) | ratio | expected √(1/dose) |", "|---|---|---|---|---|"]
for i, (region, vals) in enumerate(sorted(noise.items())):
    v = np.median(np.array(vals), axis=0)
    dose = next(p.dose_fraction for p in data.patients if p.region == region)
    ax.bar(i - 0.2, v[0], 0.4, color="tab:blue", label="full dose" if i == 0 else None)
    ax.bar(i + 0.2, v[1], 0.4, color="tab:red", label="low dose" if i == 0 else None)
    ax.plot([i + 0.0, i + 0.4], [v[0] / np.sqrt(dose)] * 2, "k--", label="full × √(1/dose)" if i == 0 else None)
    lines.append(f"| {region} | {v[0]:.1f} | {v[1]:.1f} | {v[1] / v[0]:.2f} | {np.sqrt(1 / dose):.2f} |")
ax.set_xticks(x, sorted(noise))
ax.set_ylabel("noise std in flat ROI (HU), median over slices")
ax.legend(fontsize=8)
fig.tight_layout()
ctx.save_figure(fig, "01_data_noise", "noise std in a flat soft-tissue ROI")
plt.show()
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Every patient is drawn equally often
# Training draws a patient uniformly, then a slice uniformly within that patient. Drawing slices
# uniformly instead would favour patients with many slices.

# %%
balanced = PatientBalancedSampler(data.n_slices, seed=seed)
naive = SliceUniformSampler(data.n_slices, seed=seed)
counts_b = np.bincount(balanced.sample(n_sampler_draws)[0], minlength=len(data))
counts_n = np.bincount(naive.sample(n_sampler_draws)[0], minlength=len(data))
fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(data)), 3.8))
idx = np.arange(len(data))
ax.bar(idx - 0.2, counts_b / n_sampler_draws, 0.4, label="patient-balanced (ctinv)")
ax.bar(idx + 0.2, counts_n / n_sampler_draws, 0.4, color="0.7", label="uniform over slices")
ax.axhline(1 / len(data), color="k", ls="--", lw=1, label="1 / patients")
ax.set_xticks(idx, [f"{p.patient_id}\n({p.n_slices})" for p in data.patients], fontsize=7)
ax.set_ylabel("fraction of draws")
ax.set_xlabel("patient (slices)")
ax.legend(fontsize=8)
fig.tight_layout()
ctx.save_figure(fig, "01_data_sampling", f"patient frequencies over {n_sampler_draws} draws")
plt.show()
