"""Image quality of denoisers against full dose: PSNR, SSIM and RMSE in the region's HU window."""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..data.dataset import PairedCTData
from ..progress import progress_bar
from ..units import REGION_WINDOW, apply_window, hu_to_norm, norm_to_hu


@torch.no_grad()
def denoise_hu(model: torch.nn.Module, image_hu: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Denoise one slice given in HU, without gradients.

    Parameters
    ----------
    model : torch.nn.Module
        A denoiser mapping ``(B, 1, H, W)`` normalized images to the same shape.
    image_hu : array_like
        The slice ``(H, W)`` in HU.
    device : str
        Where ``model`` lives.

    Returns
    -------
    numpy.ndarray
        The denoised slice ``(H, W)`` float32 in HU.

    Examples
    --------
    >>> import numpy as np
    >>> from ctinv_utils import denoise_hu, load_denoiser
    >>> out_hu = denoise_hu(load_denoiser("gauss_ri"), np.zeros((64, 64), np.float32))
    >>> out_hu.shape, round(float(out_hu[0, 0]), 2)
    ((64, 64), 0.0)
    """
    x = torch.from_numpy(hu_to_norm(np.asarray(image_hu, dtype=np.float32)))[None, None].to(device)
    return norm_to_hu(model(x))[0, 0].cpu().numpy()


def window_metrics(image_hu: np.ndarray, reference_hu: np.ndarray, region: str) -> dict[str, float]:
    """PSNR (dB) and SSIM on the window-mapped [0, 1] images, RMSE (HU) of the window-clipped HU."""
    w = REGION_WINDOW[region]
    a, b = apply_window(image_hu, w), apply_window(reference_hu, w)
    return {"psnr": peak_signal_noise_ratio(b, a, data_range=1.0),
            "ssim": structural_similarity(b, a, data_range=1.0),
            "rmse_hu": float(np.sqrt(np.mean(((a - b) * w.width) ** 2)))}


def evaluate(models: dict[str, torch.nn.Module], data: PairedCTData, patient_ids, device: str = "cpu",
             progress: bool = True) -> list[dict]:
    """Image quality of denoisers against full dose: mean PSNR, SSIM and RMSE per method and region.

    Every metric is computed in the region's HU window (lung, abdomen or head): PSNR (dB) and SSIM
    on the window-mapped [0, 1] images, RMSE in HU of the window-clipped values.

    Parameters
    ----------
    models : dict
        ``{name: denoiser}``, each mapping ``(B, 1, H, W)`` normalized images to the same shape.
    data : PairedCTData
        The data; every slice of each listed patient is used.
    patient_ids : iterable of str
        The patients to evaluate on (usually the test split).
    device : str
        Where the models live.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of dict
        One row per (method, region): ``method``, ``region``, ``slices``, ``psnr``, ``ssim``,
        ``rmse_hu``. The low-dose input itself is the method ``"low dose"``.

    Examples
    --------
    >>> from ctinv_utils import evaluate, load_data, load_denoiser, split_patients
    >>> data = load_data()
    >>> rows = evaluate({"gauss_ri": load_denoiser("gauss_ri")}, data, split_patients(data)["test"])
    """
    acc: dict[tuple[str, str], list[dict]] = {}
    items = [(data.index_of(pid), s) for pid in patient_ids for s in range(data.patients[data.index_of(pid)].n_slices)]
    for pi, s in progress_bar(items, desc="evaluating", disable=not progress):
        region = data.patients[pi].region
        low, full = data.slice_hu(pi, s)
        acc.setdefault(("low dose", region), []).append(window_metrics(low, full, region))
        for name, model in models.items():
            acc.setdefault((name, region), []).append(window_metrics(denoise_hu(model, low, device), full, region))
    rows = []
    for (method, region), ms in acc.items():
        rows.append({"method": method, "region": region, "slices": len(ms),
                     **{k: float(np.mean([m[k] for m in ms])) for k in ms[0]}})
    return rows


def worse_than_input(rows: list[dict], methods) -> list[dict]:
    """The (method, region) rows of ``methods`` whose PSNR or SSIM is not above the low-dose input's:
    a denoiser there does not denoise. Each returned row carries ``psnr_gain_db`` and ``ssim_gain``."""
    low = {r["region"]: r for r in rows if r["method"] == "low dose"}
    bad = []
    for r in rows:
        if r["method"] in methods and r["region"] in low:
            gain = {"psnr_gain_db": r["psnr"] - low[r["region"]]["psnr"], "ssim_gain": r["ssim"] - low[r["region"]]["ssim"]}
            if gain["psnr_gain_db"] <= 0 or gain["ssim_gain"] <= 0:
                bad.append({**r, **gain})
    return bad
