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
simulation = {"scanner": "clinical", "image_size": 512, "n_views": 1152, "photons_full_dose": 200000.0, "patients_per_region": 4,
              "min_slices": 3, "max_slices": 8}  # the embedded data (SimulationConfig settings)
n_sampler_draws = 20000   # draws for the sampling histogram
noise_slices_per_patient = None  # slices per patient for the noise measurement (None: all)

# %%
from IPython.display import Markdown, display

from ctinv_utils import load_data, split_patients

from ctinv_utils.pipeline import context
from ctinv_utils.data.noise_measurement import noise_by_region
from ctinv_utils.data.sampling import PatientBalancedSampler, SliceUniformSampler, patient_frequencies
from ctinv_utils.figures import ct, data as data_figures
from ctinv_utils.figures.tables import markdown_table
from ctinv_utils.units import ABDOMEN, LUNG, REGION_WINDOW

ctx = context.setup("01_data", globals())
data = load_data(data_path, simulation)
ctx.data_source = data.source
print(f"data: {data.source}; root: {data.root}")

# %% [markdown]
# ## Patients and slices per region
# Patients are split into train / validation / test by patient, stratified by region (seeded). The
# later notebooks read this split from the artifacts, so every notebook tests on the same patients.

# %%
split = split_patients(data, seed=seed)
rows = data.summary()
ctx.artifacts.write_json("data", {"source": data.source, "root": str(data.root), "split": split,
                                  "summary": rows, "simulation": simulation})
display(Markdown(markdown_table(rows, [("region", "region", ""), ("patients", "patients", ""),
                                       ("slices", "slices", ""), ("dose_fraction", "low-dose fraction", ".0%")])))
display(Markdown("Patient split (by patient, stratified by region): " + "; ".join(
    f"**{k}**: {', '.join(v)}" for k, v in split.items())))

# %% [markdown]
# ## Low-dose / full-dose pairs
# Each row: one patient per region, the middle slice. Chest is shown in the lung window, abdomen
# in the abdomen window, head in the head window; the difference low − full in C=0/W=100 HU.

# %%
pairs = []
for region in [r["region"] for r in rows]:
    pi = data.patients_of(region)[0]
    p = data.patients[pi]
    pairs.append((f"{p.patient_id} ({region})", *data.middle_slice(pi), REGION_WINDOW[region], p.dose_fraction))
ctx.show(data_figures.paired_slices(pairs), name="01_data_pairs", caption="low/full-dose pairs per region")

# %% [markdown]
# Chest slices in both windows of the talk (lung C=−600/W=1500, abdomen/soft tissue C=50/W=400):

# %%
chest = data.patients_of("chest")
if chest:
    low, full = data.middle_slice(chest[0])
    fig = ct.ct_grid([(low, LUNG, "low dose"), (full, LUNG, "full dose"), (low, ABDOMEN, "low dose"),
                      (full, ABDOMEN, "full dose")], ncols=4, panel_size=3.4)
    ctx.show(fig, name="01_data_chest_windows", caption="chest slice, lung and abdomen windows")

# %% [markdown]
# ## Noise in a flat region
# In every slice we pick the 15×15 px soft-tissue square with the least structure (judged on the
# smoothed full-dose image) and measure the standard deviation of both images there. Quantum noise
# predicts a low/full ratio of $\sqrt{1/\mathrm{dose}}$: 2.0 at 25 % dose, 3.16 at 10 %.
# Remaining anatomy in the square adds to both and pulls the measured ratio slightly down.

# %%
noise = noise_by_region(data, noise_slices_per_patient)
ctx.show(data_figures.noise_bars(noise), name="01_data_noise", caption="noise std in a flat soft-tissue ROI")
display(Markdown(markdown_table(noise, [
    ("region", "region", ""), ("slices", "slices", ""), ("full_std_hu", "full dose std (HU)", ".1f"),
    ("low_std_hu", "low dose std (HU)", ".1f"), ("ratio", "ratio", ".2f"), ("expected_ratio", "expected √(1/dose)", ".2f")])))

# %% [markdown]
# ## Every patient is drawn equally often
# Training draws a patient uniformly, then a slice uniformly within that patient. Drawing slices
# uniformly instead would favour patients with many slices.

# %%
freqs = {"patient-balanced (ctinv)": patient_frequencies(PatientBalancedSampler(data.n_slices, seed=seed), n_sampler_draws),
         "uniform over slices": patient_frequencies(SliceUniformSampler(data.n_slices, seed=seed), n_sampler_draws)}
fig = data_figures.sampling_frequencies([f"{p.patient_id}\n({p.n_slices})" for p in data.patients], freqs,
                                        expected=1 / len(data))
ctx.show(fig, name="01_data_sampling", caption=f"patient frequencies over {n_sampler_draws} draws")
