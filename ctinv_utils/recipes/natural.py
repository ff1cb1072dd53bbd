"""Notebook 04's generator recipe, once: the sweep's data-parallel training calls the same function."""

from __future__ import annotations

from ..synthesis.natural import NaturalInvariance, train_or_load_natural


def train_generators(settings, denoisers: dict, train_data, data_key: str, progress: bool = True) -> dict:
    """A natural-invariance generator g(z|x) per denoiser, trained (or loaded from its cache) with
    notebook 04's settings.

    Parameters
    ----------
    settings : NaturalSettings or mapping
        Notebook 04's settings (distance, alpha, beta, patch_size, seed, lr, critic_lr, critic_steps,
        vgg_weights, iterations, batch_size).
    denoisers : dict
        ``{name: frozen denoiser}``, one generator each.
    train_data : PairedCTData
        The training patients (the critic's real low-dose patches).

    Returns
    -------
    dict
        ``{name: (NaturalInvariance, cache file, whether it was loaded)}``.
    """
    get = settings.get if isinstance(settings, dict) else (lambda k: getattr(settings, k))
    out = {}
    for name, f in denoisers.items():
        nat = NaturalInvariance(f, get("distance"), get("alpha"), get("beta"), get("patch_size"), get("seed"),
                                lr=get("lr"), critic_lr=get("critic_lr"), critic_steps=get("critic_steps"),
                                vgg_allow_random=get("vgg_weights") == "imagenet_or_random")
        out[name] = train_or_load_natural(nat, train_data, data_key, get("iterations"), get("batch_size"),
                                          progress=progress)
    return out
