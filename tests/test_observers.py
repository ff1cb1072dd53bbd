"""Model observers and contrast-detail curves against analytic ground truth (Gaussian noise with
known covariance, known signals), plus the lesion metrics and the figure."""

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from ctinv_utils.analysis.contrast_detail import contrast_detail, dprime_table, threshold_contrast  # noqa: E402
from ctinv_utils.analysis.lesion_removal import lesion_component  # noqa: E402
from ctinv_utils.analysis.observers import (ObserverError, channel_width_px, cho, cho_dprime_analytic,  # noqa: E402
                                            contrast_retained, laguerre_gauss_channels, lesion_contrast,
                                            npw, npw_dprime_analytic, structure_transfer)
from ctinv_utils.data.lesions import annuli, disc_coverage  # noqa: E402

SIZE = 15


def disc(diameter_px: float, contrast: float, size: int = SIZE) -> np.ndarray:
    return contrast * disc_coverage((size, size), ((size - 1) / 2, (size - 1) / 2), diameter_px / 2)


def classes(signal, n, sigma, seed, noise_matrix=None):
    """n present and n absent ROIs with independent Gaussian noise (white, or B z with covariance B B^T)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, n, signal.size))
    noise = sigma * (z if noise_matrix is None else z @ noise_matrix.T).reshape(2, n, *signal.shape)
    return signal + noise[0], noise[1]


def correlated_noise_matrix(size=SIZE, width=1.2):
    """B such that B z is white noise smoothed by a Gaussian of ``width`` px (covariance B B^T)."""
    yy, xx = np.mgrid[0:size, 0:size]
    pos = np.stack([yy.ravel(), xx.ravel()], 1)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    b = np.exp(-d2 / (2 * width ** 2))
    return b / np.sqrt((b ** 2).sum(1, keepdims=True))  # unit variance per pixel


def test_npw_matches_the_analytic_dprime_in_white_noise():
    """d'^2 = ||s||^2 / sigma^2 for a known signal in white noise, within 10 %: with the known
    template, and with a template estimated by 2-fold holdout from 2000 ROIs per class."""
    s, sigma = disc(5.0, 15.0), 20.0
    expected = npw_dprime_analytic(s, sigma)
    assert abs(expected - np.linalg.norm(s) / sigma) < 1e-12 and 2 < expected < 4
    p, a = classes(s, 2000, sigma, seed=0)
    known = npw(p, a, template=s)
    fitted = npw(p, a)
    assert abs(known.dprime / expected - 1) < 0.10, (known.dprime, expected)
    assert abs(fitted.dprime / expected - 1) < 0.10, (fitted.dprime, expected)
    assert fitted.dprime_resubstitution >= fitted.dprime_holdout


@pytest.mark.parametrize("correlated", [False, True])
def test_cho_matches_the_channelized_ideal_value(correlated):
    """d'^2 = s_c^T K_c^-1 s_c with s_c = U s, K_c = U K U^T: white noise and smoothed (correlated)
    noise of known covariance, within 10 % (holdout and resubstitution)."""
    s, sigma = disc(4.0, 12.0), (5.0 if correlated else 15.0)
    u = laguerre_gauss_channels(SIZE, channel_width_px(4.0))
    b = correlated_noise_matrix() if correlated else None
    expected = (cho_dprime_analytic(s, u, sigma=sigma) if b is None
                else cho_dprime_analytic(s, u, noise_cov=sigma ** 2 * b @ b.T))
    assert 1.5 < expected < 5
    p, a = classes(s, 1500, sigma, seed=1, noise_matrix=b)
    res = cho(p, a, u)
    assert abs(res.dprime_holdout / expected - 1) < 0.10, (res, expected)
    assert abs(res.dprime_resubstitution / expected - 1) < 0.10, (res, expected)
    if correlated:  # prewhitening pays off where the noise is correlated: CHO beats the NPW
        assert expected > npw_dprime_analytic(s, noise_cov=sigma ** 2 * b @ b.T)


def test_holdout_and_resubstitution_bracket_the_truth_at_small_samples():
    """With 12 ROIs per class the resubstituted NPW fits its template to the noise (biased up) and
    the held-out one does not (biased down); averaged over 40 studies they bracket the analytic d'."""
    s, sigma = disc(5.0, 15.0), 20.0
    expected = npw_dprime_analytic(s, sigma)
    runs = [npw(*classes(s, 12, sigma, seed=100 + k)) for k in range(40)]
    assert np.mean([r.dprime_resubstitution for r in runs]) > expected > np.mean([r.dprime_holdout for r in runs])


def test_dprime_grows_with_contrast_and_size():
    sigma, n = 20.0, 600
    for observer in ("npw", "cho"):
        table = np.zeros((3, 3))
        for i, d in enumerate((2.0, 4.0, 7.0)):
            u = laguerre_gauss_channels(SIZE, channel_width_px(d))
            for j, c in enumerate((3.0, 6.0, 12.0)):
                p, a = classes(disc(d, c), n, sigma, seed=10 * i + j)
                table[i, j] = (npw(p, a) if observer == "npw" else cho(p, a, u)).dprime
        assert (np.diff(table, axis=0) > 0).all() and (np.diff(table, axis=1) > 0).all(), (observer, table)


def test_paired_twins_and_noise_rois():
    """Twins (absent = present - s, same noise) and extra independent noise ROIs give the same d'
    as independent classes, within 10 %; the CHO refuses a covariance it cannot estimate."""
    s, sigma = disc(5.0, 5.0), 20.0
    u = laguerre_gauss_channels(SIZE, channel_width_px(5.0))
    expected = cho_dprime_analytic(s, u, sigma=sigma)
    p, _ = classes(s, 400, sigma, seed=3)
    _, noise = classes(s, 400, sigma, seed=4)
    twin = p - s
    for res in (npw(p, twin, paired=True, noise=noise), cho(p, twin, u, paired=True, noise=noise),
                npw(p, twin, template=s, noise=noise)):
        assert abs(res.dprime / expected - 1) < 0.10, res
    with pytest.raises(ObserverError, match="add realisations, pass lesion-free ROIs as noise="):
        cho(p[:6], twin[:6], u, paired=True)
    with pytest.raises(ObserverError, match="one absent ROI per present ROI"):
        npw(p[:6], twin[:5], paired=True)


def test_threshold_contrast_interpolates_a_synthetic_table():
    """d' = k |C| D^2 (linear in contrast, as for a linear observer on a linear reconstruction): the
    interpolated threshold is 2 / (k D^2) exactly, for each sign; NaN where the grid never reaches 2."""
    contrasts = np.array([-40.0, -20.0, -10.0, -5.0, 5.0, 10.0, 20.0, 40.0])
    diameters = np.array([3.0, 5.0, 10.0])
    k_pos, k_neg = 0.01, 0.004
    dprime = np.array([[(k_pos if c > 0 else k_neg) * abs(c) * d ** 2 for c in contrasts] for d in diameters])
    table = type("T", (), dict(diameters_mm=diameters, contrasts_hu=contrasts, dprime=dprime,
                               observer="NPW", method="synthetic"))
    curve = contrast_detail(table, threshold=2.0)
    for sign, k in (("positive", k_pos), ("negative", k_neg)):
        expected = 2.0 / (k * diameters ** 2)
        expected[expected > 40] = np.nan  # 3 mm: needs 22 HU (positive), 56 HU (negative: not reached)
        np.testing.assert_allclose(curve[sign], expected, rtol=1e-12)
    assert np.isnan(curve["negative"][0]) and np.isfinite(curve["positive"][0])
    # first upward crossing of a non-monotone curve; below the first grid point: from (0, 0)
    assert threshold_contrast([5, 10, 20, 40], [1.0, 3.0, 1.5, 4.0]) == pytest.approx(7.5)
    assert threshold_contrast([5, 10], [4.0, 8.0]) == pytest.approx(2.5)
    assert np.isnan(threshold_contrast([5, 10], [0.5, 1.9]))


def test_dprime_table_on_labelled_rois():
    sigma, n = 20.0, 40
    present, absent, d_lab, c_lab = [], [], [], []
    for d in (3.0, 8.0):
        for c in (-20.0, 20.0):
            p, _ = classes(disc(d, c), n, sigma, seed=int(d * 10 + c))
            present.append(p), absent.append(p - disc(d, c))
            d_lab += [d] * n
            c_lab += [c] * n
    t = dprime_table(np.concatenate(present), np.concatenate(absent), d_lab, c_lab, observer="cho", pixel_mm=1.0)
    assert t.dprime.shape == (2, 2) and (t.n == n).all()
    for i, d in enumerate((3.0, 8.0)):
        u = laguerre_gauss_channels(SIZE, channel_width_px(d))
        for j, c in enumerate((-20.0, 20.0)):
            assert abs(t.dprime[i, j] / cho_dprime_analytic(disc(d, c), u, sigma=sigma) - 1) < 0.35  # n = 40


def test_contrast_retained_and_structure_transfer():
    s = disc(7.0, 20.0, size=31)
    mask = disc_coverage((31, 31), (15, 15), 3.5) >= 0.5
    ring = annuli(mask, 3, 8)
    assert lesion_contrast(s, mask, ring) == pytest.approx(s[mask].mean())
    rng = np.random.default_rng(0)
    x_free = 60 + 20 * rng.standard_normal((4, 31, 31))
    x_lesion = x_free + s
    halve = contrast_retained(0.5 * (x_lesion - x_free), x_lesion - x_free, mask, ring)
    assert halve["ratio_of_means"] == pytest.approx(0.5) and np.allclose(halve["ratio"], 0.5)
    assert np.allclose(structure_transfer(x_lesion, x_free, x_lesion, x_free), 1.0)
    assert np.allclose(structure_transfer(2 * x_lesion, 2 * x_free, x_lesion, x_free), 2.0)
    removed = structure_transfer(x_free, x_free, x_lesion, x_free)
    assert np.allclose(removed, 0.0)
    # projection onto the lesion profile: removing the lesion -> 1, removing half -> 0.5, noise -> ~0
    assert np.allclose(lesion_component(x_free - x_lesion, s), 1.0)
    assert np.allclose(lesion_component(-0.5 * s, s), 0.5)
    assert abs(lesion_component(20 * rng.standard_normal((31, 31)), s)) < 0.5  # 3 sigma of the noise's projection


def test_contrast_detail_figure_draws_reached_and_missing_points():
    from ctinv_utils.figures.contrast_detail import contrast_detail_figure, dprime_figure

    curves = {"low dose": {"diameters_mm": [3, 5, 10], "positive": [np.nan, 30.0, 12.0], "negative": [np.nan, 35.0, 14.0]},
              "full dose": {"diameters_mm": [3, 5, 10], "positive": [25.0, 14.0, 6.0], "negative": [28.0, 15.0, 7.0]}}
    fig = contrast_detail_figure(curves, threshold=2.0, observer="NPW", title="quick", max_contrast_hu=40)
    assert len(fig.axes) == 2
    triangles = [ln for ln in fig.axes[0].lines if ln.get_marker() == "^"]
    assert len(triangles) == 1 and len(triangles[0].get_xdata()) == 1  # the one low-dose NaN
    tables = {"low": {"diameters_mm": [3, 5], "contrasts_hu": [-10, 10], "dprime": [[1, 1], [2, 2]],
                      "stderr": [[0.1, 0.1], [0.2, 0.2]]}}
    assert len(dprime_figure(tables).axes) == 2


def test_contrast_detail_figure_from_artifacts_alone(tmp_path):
    """The figures notebook redraws the contrast-detail curves from the stored artifact (no network,
    no simulation): one line per image kind, a missing observer is named."""
    from ctinv_utils.pipeline.artifacts import Artifacts
    from ctinv_utils.figures.contrast_detail import contrast_detail_from_artifacts

    art = Artifacts(tmp_path, "smoke")
    kinds = np.array(["low dose", "full dose", "cnn10"])
    thr = np.array([[[np.nan, 30.0], [np.nan, 32.0], [np.nan, 31.0]]])[0]  # (K, D)
    art.write_arrays("contrast_detail", {"kinds": kinds, "diameters_mm": np.array([3.0, 10.0]),
                                         "contrasts_hu": np.array([-40.0, -20.0, 20.0, 40.0]), "threshold": np.float64(2),
                                         "npw_positive": thr, "npw_negative": thr, "npw_dprime": np.ones((3, 2, 4)),
                                         "npw_stderr": np.ones((3, 2, 4))}, {"preset": "smoke"})
    fig, caption = contrast_detail_from_artifacts(Artifacts(tmp_path, "smoke"), "npw")
    assert len(fig.axes) == 2 and "d' = 2" in caption and "smoke" in caption
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} == {"low dose", "full dose", "CNN-10"}
    with pytest.raises(KeyError, match="no observer 'cho'"):
        contrast_detail_from_artifacts(art, "cho")
