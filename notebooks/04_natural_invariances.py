# %% [markdown]
# # 04 · Natural invariances
#
# The image-domain invariances of notebook 03 leave the data manifold: their $x_\mathrm{inv}$ do not
# look like low-dose CT, and every new sample needs a new optimisation. The talk's second half trains
# a conditional generator $g_\phi(z\,|\,x)$, $z \sim \mathcal N(0, 1)$, together with a critic $C$:
#
# $$\arg\min_\phi\; d\big(f(x), f(g_\phi(z|x))\big) - \alpha\, d\big(x, g_\phi(z|x)\big) + \beta\, C\big(g_\phi(z|x)\big)$$
#
# on 80×80 px patches, so that one forward pass gives a new invariance of $x$ that looks like a real
# low-dose image. (Our critic scores *real* low-dose patches high, so the talk's $+\beta C$ is
# $-\beta\,\mathbb E[C]$ here; see `ctinv_utils/synthesis/natural.py`.) The generator is multi-scale:
# the condition $x$, downsampled to each stage ($d_i(x)$), and fresh noise $z_i$ enter every stage.
#
# The talk concludes that natural invariances "mostly alter noise structure and much less the
# anatomical structure". Below, that claim is **measured** on the samples, next to the image-domain
# invariance of the same slice.

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
natural_denoisers = ["cnn10"]  # a generator is trained for each
distance = "dssim"            # d in both terms; (1-SSIM)/2 weighs noise-level changes (bounded MSE barely does)
alpha = 0.5                   # reward for moving away from x
beta = 0.02                   # weight of the critic term (realism)
iterations = 400              # generator updates (CPU minutes; the paper preset trains far longer)
batch_size = 8
patch_size = 80               # the talk's training patches
lr = 3e-4                     # generator
critic_lr = 1e-3
critic_steps = 1
n_samples = 16                # samples per slice (the pixel-wise std is taken over them)
compare_alpha = 0.05          # the image-domain invariance (notebook 03, same distance) shown beside
vgg_weights = "imagenet_or_random"  # only with the vgg distance; imagenet never falls back

# %%
import torch
from IPython.display import Markdown, display

from ctinv_utils import hu_to_norm, load_data, recipes

from ctinv_utils.pipeline import context

from ctinv_utils.report import panels
from ctinv_utils.analysis.natural import change_metrics, verdicts
from ctinv_utils.names import display_name
from ctinv_utils.training.model_cache import training_data_key
from ctinv_utils.units import tensor_to_hu

ctx = context.setup("04_natural_invariances", globals())
art = ctx.artifacts
data = load_data(data_path, simulation, progress=False)
ctx.data_source = data.source
split = art.data_split(data)
denoisers = art.load_denoisers(natural_denoisers, ctx.device)
sl = art.read_arrays("analysis_slice")  # the slice of notebook 03, for the side-by-side
x = torch.from_numpy(hu_to_norm(sl["low"]))[None, None].float().to(ctx.device)
data_key = training_data_key(data, split)
print(f"x: {sl.meta}; generators for {[display_name(n) for n in denoisers]}")

# %% [markdown]
# ## Train (or load) the generators
# Patient-balanced low-dose patches of the training patients are the critic's real images. Training
# checkpoints and resumes like the denoisers' (notebook 02) and is cached by configuration.

# %%
nats = {}
for name, (nats[name], path, loaded) in recipes.train_generators(ctx.settings, denoisers, data.subset(split["train"]),
                                                                  data_key).items():
    art.save_object("natural_generator", nats[name], {"denoiser": name})
    print(f"{display_name(name)}: {'loaded' if loaded else 'trained'} ({path.name}), {nats[name].iteration} iterations")

# %% [markdown]
# ## Samples and what they change
# Several samples $g(z|x)$ of the same slice (one forward pass each), their differences to $x$ and
# the pixel-wise standard deviation over all samples. The numbers compare them with the image-domain
# invariance of notebook 03 (same slice, same distance, α = `compare_alpha`) and with the real
# low-dose noise $x - x_\mathrm{full}$: correlation with it, noise amplitude in a flat ROI, energy on
# anatomical edges, and the shape of the noise power spectrum (NPS).

# %%
analysis = {}
for name, nat in nats.items():
    samples = nat.sample(x, n_samples, seed=seed)
    with torch.no_grad():
        f_x, f_s = nat.denoiser(x), nat.denoiser(samples)
    s_hu = tensor_to_hu(samples[:, 0])
    art.write_arrays("natural_arrays", {"x": sl["low"], "full": sl["full"], "samples": s_hu, "f_x": tensor_to_hu(f_x[0, 0]),
                                        "f_samples": tensor_to_hu(f_s[:, 0]), "std": s_hu.std(0)},
                     {"denoiser": name, "distance": distance, "alpha": alpha, "beta": beta, "iterations": nat.iteration,
                      "patch_size": patch_size}, {"denoiser": name})
    d_out, d_in = nat.distances(x, samples)
    m = change_metrics(s_hu, sl["low"], sl["full"], margin=nat.config.margin)
    m.update(d_out=float(d_out.mean()), d_in=float(d_in.mean()), critic_score=float(nat.critic_scores(samples).mean()),
             output_rms_hu=float(((tensor_to_hu(f_s[:, 0]) - tensor_to_hu(f_x[0, 0])) ** 2).mean() ** 0.5))
    entry = {"natural": m, "verdicts": verdicts(m), "critic_score_input": float(nat.critic_scores(x).mean())}
    if art.exists("invariance_arrays", denoiser=name, distance=distance):
        inv = art.read_arrays("invariance_arrays", denoiser=name, distance=distance)
        k = panels.alpha_index(inv["alphas"], compare_alpha)
        x_inv = torch.from_numpy(hu_to_norm(inv["x_inv"][k:k + 1])).float()[:, None].to(ctx.device)
        mi = change_metrics(inv["x_inv"][k:k + 1], sl["low"], sl["full"], margin=nat.config.margin)
        di_out, di_in = nat.distances(x, x_inv)
        mi.update(d_out=float(di_out[0]), d_in=float(di_in[0]), critic_score=float(nat.critic_scores(x_inv)[0]),
                  output_rms_hu=float(((inv["f_x_inv"][k] - inv["f_x"]) ** 2).mean() ** 0.5),
                  label=f"{display_name(distance)}, α={compare_alpha:g}")
        entry["image_domain"] = mi
    analysis[name] = entry
art.write_json("natural_analysis", {"denoisers": analysis})
ctx.add_note("natural_verdicts", {n: a["verdicts"] for n, a in analysis.items()})

for name in nats:
    ctx.view(*panels.natural_samples(art, name))  # file: 06_natural_<name>
    display(Markdown(panels.natural_table(art, name)))
    display(Markdown(f"**The talk's conclusion, measured ({display_name(name)})** — critic score of the input "
                     f"{analysis[name]['critic_score_input']:.2f}:\n\n" + panels.natural_verdicts(art, name)))
    ctx.view(*panels.natural_nps(art, name))  # file: 06_natural_nps_<name>
