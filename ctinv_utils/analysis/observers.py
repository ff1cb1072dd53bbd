"""Model observers and lesion metrics on ROIs in HU: how detectable a lesion is, how much of its
contrast survives, and how much of it passes through a denoiser.

Task: signal known exactly, location known; ROIs ``present`` (N_p, h, w) and ``absent`` (N_a, h, w).
Each observer scores ``t = w . g`` per ROI and reports ``d' = (mean t_present - mean t_absent) /
sqrt(pooled variance of t)`` (for Gaussian scores AUC = Phi(d' / sqrt 2); d' = 2 is AUC 0.92).
:func:`npw` is the non-prewhitening matched filter, :func:`cho` the channelized Hotelling observer
on Laguerre-Gauss channels (:func:`channel_width_px`).

**Estimation.** ``method="holdout"`` (default): k-fold cross-validation (sample ``i`` in fold
``i % folds``; with ``paired=True`` a lesion ROI and its same-noise twin share a fold); each template
is scaled to unit noise and centred between the training classes, so that scores of different folds
are comparable. Resubstitution, also returned, is biased up (the template fits the noise), holdout
down; holdout stays honest at the small sample counts of a lesion study. Twins repeat one noise
realisation in both classes; extra lesion-absent ``noise`` ROIs add independent scatter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.special import eval_laguerre

from ..errors import CTInvError

#: Laguerre-Gauss channels of the CHO and their width relative to the lesion diameter (:func:`channel_width_px`).
N_CHANNELS = 6
WIDTH_FACTOR = 1.5
MIN_WIDTH_PX = 2.0


class ObserverError(CTInvError):
    """ROIs of mismatched shapes, too few samples for an observer, or a degenerate template."""


@dataclass
class ObserverResult:
    """d' of one observer on one task, with how it was estimated."""

    observer: str
    dprime: float                   # by ``method``
    method: str
    dprime_resubstitution: float
    dprime_holdout: float | None    # None for a known template (nothing fitted)
    stderr: float                   # approximate, for independent samples (see :func:`dprime_stderr`)
    n_present: int
    n_absent: int
    scores_present: np.ndarray = field(repr=False)
    scores_absent: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("scores_present"), d.pop("scores_absent")
        return d


# -- d' from scores ----------------------------------------------------------------------------

def dprime_from_scores(scores_present, scores_absent, noise_scatter: float = 0.0, noise_dof: int = 0) -> float:
    """d' = (mean t_p - mean t_a) / sqrt(pooled variance). The pooled variance is the scatter of each
    class about its mean (plus ``noise_scatter``, the scatter of extra lesion-absent scores about
    their group means) over the degrees of freedom (N_p - 1) + (N_a - 1) (+ ``noise_dof``); for equal
    class sizes and no noise scores it is (var t_p + var t_a) / 2."""
    tp, ta = np.asarray(scores_present, dtype=np.float64), np.asarray(scores_absent, dtype=np.float64)
    if len(tp) < 2 or len(ta) < 2:
        raise ObserverError(f"d' needs at least 2 scores per class, got {len(tp)} present and {len(ta)} absent")
    scatter = ((tp - tp.mean()) ** 2).sum() + ((ta - ta.mean()) ** 2).sum() + noise_scatter
    pooled = scatter / (len(tp) - 1 + len(ta) - 1 + noise_dof)
    if pooled <= 0:
        raise ObserverError("all scores of each class are equal (zero variance): d' is undefined; "
                            "are the ROIs noise-free? use an analytic d' (npw_dprime_analytic) instead")
    return float((tp.mean() - ta.mean()) / np.sqrt(pooled))


def dprime_stderr(dprime: float, n_present: int, n_absent: int) -> float:
    """Approximate standard error of d' for independent Gaussian scores:
    sqrt(1/N_p + 1/N_a + d'^2 / (2 (N_p + N_a))). Conservative for paired twins."""
    return float(np.sqrt(1 / n_present + 1 / n_absent + dprime ** 2 / (2 * (n_present + n_absent))))


def auc_from_dprime(dprime):
    """Area under the ROC curve of Gaussian equal-variance scores: Phi(d' / sqrt 2)."""
    from scipy.stats import norm

    return norm.cdf(np.asarray(dprime) / np.sqrt(2))


# -- input checks, folds, the shared estimation ------------------------------------------------

def _as_rois(present, absent, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    p, a = np.asarray(present, dtype=np.float64), np.asarray(absent, dtype=np.float64)
    if p.ndim != 3 or a.ndim != 3 or p.shape[1:] != a.shape[1:]:
        raise ObserverError(f"present and absent must be stacks of equally sized 2-D ROIs (N, h, w); "
                            f"got {p.shape} and {a.shape}")
    if paired and len(p) != len(a):
        raise ObserverError(f"paired=True needs one absent ROI per present ROI; got {len(p)} and {len(a)}")
    if not (np.isfinite(p).all() and np.isfinite(a).all()):
        raise ObserverError("ROIs contain NaN or inf")
    return p, a


def _as_noise(noise, noise_groups, roi_shape) -> tuple[np.ndarray, np.ndarray]:
    if noise is None:
        return np.zeros((0, *roi_shape)), np.zeros(0, dtype=int)
    n = np.asarray(noise, dtype=np.float64)
    if n.ndim != 3 or n.shape[1:] != tuple(roi_shape):
        raise ObserverError(f"noise ROIs must be (M, {roi_shape[0]}, {roi_shape[1]}), got {n.shape}")
    groups = np.zeros(len(n), dtype=int) if noise_groups is None else np.asarray(noise_groups)
    if groups.shape != (len(n),):
        raise ObserverError(f"noise_groups must have one entry per noise ROI ({len(n)}), got {groups.shape}")
    if not np.isfinite(n).all():
        raise ObserverError("noise ROIs contain NaN or inf")
    return n, np.unique(groups, return_inverse=True)[1]


def _check_method(method: str, folds: int, n_p: int, n_a: int) -> None:
    if method not in ("holdout", "resubstitution"):
        raise ObserverError(f"unknown estimation method {method!r}; use 'holdout' or 'resubstitution'")
    if method == "holdout" and (folds < 2 or min(n_p, n_a) < 2 * folds):
        raise ObserverError(f"holdout with {folds} folds needs folds >= 2 and at least {2 * folds} ROIs per class "
                            f"(2 scores per fold), got {n_p} present and {n_a} absent; add realisations or "
                            "use method='resubstitution'")


def _group_scatter(x: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Sum of outer products of ``x`` (M, k) about its group means, and its degrees of freedom."""
    scatter, dof = np.zeros((x.shape[1], x.shape[1])), 0
    for g in np.unique(groups):
        r = x[groups == g] - x[groups == g].mean(0)
        scatter += r.T @ r
        dof += int((groups == g).sum()) - 1
    return scatter, dof


def _estimate(fp, fa, fn, groups, fit, method: str, folds: int):
    """Fit a linear template on features (``fit(ip, ia, inn)`` -> unit-noise template), score, and
    return (d' resubstitution, d' holdout or None, scores of the chosen method).

    Holdout folds: present/absent ROI ``i`` -> fold ``i % folds`` (a pair shares its fold); noise ROIs
    by group (``group % folds``) when there are at least ``folds`` groups, else by index. Every ROI is
    scored by a template fitted without it; noise scores enter the pooled variance."""
    every = (np.ones(len(fp), bool), np.ones(len(fa), bool), np.ones(len(fn), bool))
    w = fit(*every)
    sn, dn = _group_scatter((fn @ w)[:, None], groups)
    tp, ta = fp @ w, fa @ w  # resubstitution: the offset would not change d'
    resub = dprime_from_scores(tp, ta, float(sn[0, 0]), dn)
    if method != "holdout":
        return resub, None, tp, ta
    kp, ka = np.arange(len(fp)) % folds, np.arange(len(fa)) % folds
    kn = groups % folds if len(np.unique(groups)) >= folds else np.arange(len(fn)) % folds
    tp, ta, scatter, dof = np.empty(len(fp)), np.empty(len(fa)), 0.0, 0
    for k in range(folds):
        wk = fit(kp != k, ka != k, kn != k)
        offset = 0.5 * (fp[kp != k].mean(0) + fa[ka != k].mean(0)) @ wk  # training midpoint -> score 0
        tp[kp == k], ta[ka == k] = fp[kp == k] @ wk - offset, fa[ka == k] @ wk - offset
        s, d = _group_scatter((fn[kn == k] @ wk)[:, None], groups[kn == k])
        scatter, dof = scatter + float(s[0, 0]), dof + d
    return resub, dprime_from_scores(tp, ta, scatter, dof), tp, ta


def _result(observer, method, folds, paired, n_noise, resub, holdout, tp, ta) -> ObserverResult:
    if method == "holdout":
        how = f"holdout ({folds}-fold cross-validation{', pairs kept together' if paired else ''})"
        d = holdout
    else:
        how, d = method, resub
    if n_noise:
        how += f", + {n_noise} lesion-absent noise ROIs in the variance"
    return ObserverResult(observer, float(d), how, float(resub), None if holdout is None else float(holdout),
                          dprime_stderr(d, len(tp), len(ta)), len(tp), len(ta), tp, ta)


# -- NPW ---------------------------------------------------------------------------------------

def npw(present, absent, template=None, method: str = "holdout", folds: int = 2, paired: bool = False,
        noise=None, noise_groups=None) -> ObserverResult:
    """Non-prewhitening matched filter. ``present``, ``absent``: (N, h, w) ROIs in HU; ``template``
    (h, w): the known mean signal (then nothing is fitted and every ROI is scored), else the template
    is ``mean present - mean absent`` (estimated as in the module docstring; with ``paired=True``,
    ``present[i] - absent[i]`` being the lesion alone, it is exact for a linear reconstruction at
    any N, while d' still uses the two classes' marginal scores). ``noise``: optional
    (M, h, w) extra lesion-absent ROIs, independent of the scored ones; their scores (about their
    mean per ``noise_groups``) join the pooled score variance."""
    p, a = _as_rois(present, absent, paired)
    n, groups = _as_noise(noise, noise_groups, p.shape[1:])
    fp, fa, fn = (x.reshape(len(x), p[0].size) for x in (p, a, n))
    if template is not None:
        w = np.asarray(template, dtype=np.float64).ravel()
        if w.size != fp.shape[1] or not np.any(w):
            raise ObserverError(f"template must be a non-zero ROI of shape {p.shape[1:]}")
        w = w / np.linalg.norm(w)
        sn, dn = _group_scatter((fn @ w)[:, None], groups)
        tp, ta = fp @ w, fa @ w
        d = dprime_from_scores(tp, ta, float(sn[0, 0]), dn)
        how = "known template (nothing fitted)" + (f", + {len(fn)} lesion-absent noise ROIs in the variance" if len(fn) else "")
        return ObserverResult("NPW", d, how, d, None, dprime_stderr(d, len(tp), len(ta)), len(tp), len(ta), tp, ta)
    _check_method(method, folds, len(p), len(a))

    def fit(ip, ia, inn):
        w = fp[ip].mean(0) - fa[ia].mean(0)
        norm = np.linalg.norm(w)
        if norm == 0:
            raise ObserverError("present and absent ROIs have the same mean: the NPW template is zero")
        return w / norm

    return _result("NPW", method, folds, paired, len(fn), *_estimate(fp, fa, fn, groups, fit, method, folds))


def npw_dprime_analytic(signal, sigma: float | None = None, noise_cov=None) -> float:
    """Analytic NPW d' of a known ``signal`` (h, w) in Gaussian noise: white with std ``sigma``
    (d' = ||s|| / sigma) or with covariance ``noise_cov`` (h w, h w) (d'^2 = (s^T s)^2 / s^T K s)."""
    s = np.asarray(signal, dtype=np.float64).ravel()
    if noise_cov is None:
        return float(np.linalg.norm(s) / sigma)
    return float((s @ s) / np.sqrt(s @ np.asarray(noise_cov) @ s))


# -- CHO ---------------------------------------------------------------------------------------

def channel_width_px(diameter_px: float) -> float:
    """Laguerre-Gauss width ``a`` for a lesion of ``diameter_px``: WIDTH_FACTOR x diameter, >= MIN_WIDTH_PX.

    Why 1.5 diameters: the span of the 6 channels holds >= 99 % of the signal energy of the
    reconstructed (blurred) discs of 3-10 mm at 256 px for ``a`` between 0.8 and 1.5 diameters, and
    1.5 lets the channels reach into the lesion's surround (the noise correlations the Hotelling
    template exploits) while the envelope ``exp(-pi r^2 / a^2)`` has fallen to ~2 % at the edge of
    the 23 px (34 mm) ROI of the 10 mm lesion, so the ROI does not cut the channels off."""
    return max(WIDTH_FACTOR * float(diameter_px), MIN_WIDTH_PX)


def laguerre_gauss_channels(size: int, width_px: float, n_channels: int = N_CHANNELS) -> np.ndarray:
    """Laguerre-Gauss channels centred on the ROI's centre pixel, (n_channels, size, size), each of
    unit L2 norm: ``u_j(r) = exp(-pi r^2 / a^2) L_j(2 pi r^2 / a^2)`` with ``a`` = ``width_px``."""
    if size < 3 or width_px <= 0 or n_channels < 1:
        raise ObserverError(f"need size >= 3, width_px > 0, n_channels >= 1; got {size}, {width_px}, {n_channels}")
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    q = np.pi * (xx ** 2 + yy ** 2) / width_px ** 2
    u = np.stack([np.exp(-q) * eval_laguerre(j, 2 * q) for j in range(n_channels)])
    return u / np.linalg.norm(u, axis=(1, 2), keepdims=True)


def cho(present, absent, channels, method: str = "holdout", folds: int = 2, paired: bool = False,
        noise=None, noise_groups=None) -> ObserverResult:
    """Channelized Hotelling observer. ``present``, ``absent``: (N, h, w) ROIs in HU; ``channels``
    (n_channels, h, w) (:func:`laguerre_gauss_channels`). ``noise``: optional (M, h, w) extra
    lesion-absent ROIs, independent of the scored ones: about their mean per ``noise_groups`` (M,)
    (e.g. the realisation they come from; default one group) they join the channel covariance of
    each fit and the pooled score variance (held out by fold like the rest). Resubstitution
    overestimates d'^2 by about ``n_channels (1/N_p + 1/N_a)``, times ``dof / (dof - n_channels - 1)``
    from inverting a sample covariance; see the module docstring for the estimation."""
    p, a = _as_rois(present, absent, paired)
    n, groups = _as_noise(noise, noise_groups, p.shape[1:])
    u = np.asarray(channels, dtype=np.float64)
    if u.ndim != 3 or u.shape[1:] != p.shape[1:]:
        raise ObserverError(f"channels must be (n_channels, {p.shape[1]}, {p.shape[2]}), got {u.shape}")
    n_ch = len(u)
    uf = u.reshape(n_ch, -1).T
    vp, va, vn = (x.reshape(len(x), uf.shape[0]) @ uf for x in (p, a, n))
    _check_method(method, folds, len(p), len(a))

    def fit(ip, ia, inn):
        dv = vp[ip].mean(0) - va[ia].mean(0)
        rp, ra = vp[ip] - vp[ip].mean(0), va[ia] - va[ia].mean(0)
        sn, dn = _group_scatter(vn[inn], groups[inn])
        n_p, n_a = int(ip.sum()), int(ia.sum())
        dof = n_p - 1 + n_a - 1 + dn
        effective = (n_p - 1 if paired else n_p + n_a - 2) + dn
        if effective < n_ch + 2:
            raise ObserverError(f"the CHO's {n_ch}x{n_ch} channel covariance needs more than {n_ch + 1} degrees of "
                                f"freedom, this fit has {effective} ({n_p} present, {n_a} absent"
                                f"{', paired' if paired else ''}, {dn} from noise ROIs); add realisations, "
                                "pass lesion-free ROIs as noise=, or use fewer channels")
        k = (rp.T @ rp + ra.T @ ra + sn) / dof
        w = np.linalg.solve(k, dv)
        wkw = float(w @ k @ w)
        if not wkw > 0:
            raise ObserverError("the Hotelling template is zero: present and absent channel means are equal")
        return w / np.sqrt(wkw)

    width = _channel_width_of(u)
    name = f"CHO ({n_ch} LG channels{f', a = {width:.2f} px' if width else ''})"
    return _result(name, method, folds, paired, len(n), *_estimate(vp, va, vn, groups, fit, method, folds))


def _channel_width_of(channels: np.ndarray) -> float | None:
    """Recover ``a`` from the first LG channel (a Gaussian exp(-pi r^2/a^2)), for naming only."""
    u0 = channels[0]
    size = u0.shape[0]
    c = (size - 1) / 2
    if size % 2 == 0 or u0[int(c), int(c)] <= 0 or u0[int(c), int(c) + 1] <= 0:
        return None
    ratio = u0[int(c), int(c) + 1] / u0[int(c), int(c)]
    return float(np.sqrt(np.pi / -np.log(ratio))) if 0 < ratio < 1 else None


def cho_dprime_analytic(signal, channels, sigma: float | None = None, noise_cov=None) -> float:
    """The channelized ideal d' of a known ``signal`` (h, w): d'^2 = s_c^T K_c^-1 s_c, with
    ``s_c = U s`` and ``K_c = U K U^T`` (``K = sigma^2 I`` for white noise, else ``noise_cov``)."""
    u = np.asarray(channels, dtype=np.float64).reshape(len(channels), -1)
    s_c = u @ np.asarray(signal, dtype=np.float64).ravel()
    k_c = sigma ** 2 * (u @ u.T) if noise_cov is None else u @ np.asarray(noise_cov) @ u.T
    return float(np.sqrt(s_c @ np.linalg.solve(k_c, s_c)))


# -- lesion metrics ----------------------------------------------------------------------------

def lesion_contrast(images, masks, annuli) -> np.ndarray:
    """Mean inside the lesion minus mean in its background annulus, per image (HU).
    ``images`` (N, h, w) or (h, w); ``masks``, ``annuli`` bool of the same shape (or broadcastable)."""
    im = np.asarray(images, dtype=np.float64)
    m, an = np.broadcast_to(masks, im.shape).astype(bool), np.broadcast_to(annuli, im.shape).astype(bool)
    im2, m2, a2 = (v.reshape(-1, *im.shape[-2:]) for v in (im, m, an))
    if not (m2.any(axis=(1, 2)).all() and a2.any(axis=(1, 2)).all()):
        raise ObserverError("every image needs a non-empty lesion mask and annulus")
    out = np.array([x[mm].mean() - x[aa].mean() for x, mm, aa in zip(im2, m2, a2)])
    return out.reshape(im.shape[:-2]) if im.ndim > 2 else out[0]


def contrast_retained(images, full_images, masks, annuli) -> dict:
    """The lesion's contrast in ``images`` relative to the full-dose ``full_images`` (both (N, h, w)):
    per sample ``C(image) / C(full)`` and the robust ``mean C(image) / mean C(full)``.

    With twins, pass differences (``f(x_lesion) - f(x_free)`` and ``full_lesion - full_free``): the
    noise cancels and the full-dose difference is the lesion's noise-free reconstruction, so the
    ratio measures what the denoiser kept of the lesion itself. Passing the images measures the
    classic single-image contrast, noisy at low contrasts."""
    c = lesion_contrast(images, masks, annuli)
    c_full = lesion_contrast(full_images, masks, annuli)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = c / c_full
    return dict(contrast_hu=c, full_contrast_hu=c_full, ratio=per,
                ratio_of_means=float(np.mean(c) / np.mean(c_full)))


def structure_transfer(f_lesion, f_free, x_lesion, x_free, region=None) -> np.ndarray:
    """||f(x_lesion) - f(x_free)|| / ||x_lesion - x_free|| per sample (norms over the last two axes,
    inside the bool ``region`` when given). 1: the denoiser passes the lesion's difference on
    unchanged in energy; 0: it removes it; > 1: it amplifies it."""
    df = np.asarray(f_lesion, dtype=np.float64) - np.asarray(f_free, dtype=np.float64)
    dx = np.asarray(x_lesion, dtype=np.float64) - np.asarray(x_free, dtype=np.float64)
    if df.shape != dx.shape:
        raise ObserverError(f"denoised and input differences differ in shape: {df.shape} vs {dx.shape}")
    if region is not None:
        region = np.broadcast_to(region, dx.shape)
        df, dx = np.where(region, df, 0.0), np.where(region, dx, 0.0)
    den = np.sqrt((dx ** 2).sum(axis=(-2, -1)))
    if np.any(den == 0):
        raise ObserverError("x_lesion equals x_free for some sample: the structure transfer is undefined")
    return np.sqrt((df ** 2).sum(axis=(-2, -1))) / den
