"""The textured anatomy of the simulated phantoms against what it claims: seeded and deterministic,
different per patient, texture amplitudes per organ in the stated HU ranges, lung vessel trees that
are dense enough and continuous along z, trabecular bone with both bone and marrow, and the same
anatomy at 256 and 512 px (textures defined in mm, not pixels)."""

from functools import lru_cache

import numpy as np
import pytest
from scipy import ndimage

from ctinv_utils.data.phantoms import FLAT_TISSUE, LABELS, TISSUE_HU, Z_EXTENT_MM, Phantom

REGIONS = ("head", "chest", "abdomen")


@lru_cache(maxsize=3)  # a chest phantom grows its vessel trees once (~1 s); each holds some MB of field caches
def phantom(region: str, seed: int) -> Phantom:
    return Phantom(region, seed)


@lru_cache(maxsize=16)
def painted(region: str, seed: int, z: float, size: int):
    hu, labels, pixel_mm = phantom(region, seed).slice(z, size)
    hu.flags.writeable = False
    labels.flags.writeable = False
    return hu, labels, pixel_mm


def eroded(labels: np.ndarray, name: str, iterations: int = 3) -> np.ndarray:
    return ndimage.binary_erosion(labels == LABELS[name], iterations=iterations)


def test_old_label_values_are_unchanged():
    """Label maps already stored by simulated data sets keep their meaning: the first 16 names
    keep their values; new names only come after them."""
    old = ["air", "fat", "muscle", "bone", "cancellous", "lung", "vessel", "heart", "liver", "spleen", "kidney",
           "water", "gray_matter", "white_matter", "lesion", "bowel_gas"]
    assert [LABELS[n] for n in old] == list(range(16))
    assert len(LABELS) == len(TISSUE_HU) < 256


@pytest.mark.parametrize("region", REGIONS)
def test_same_seed_same_slice_bit_for_bit_in_any_order(region):
    hu, labels, pixel_mm = painted(region, 11, 0.5, 256)
    fresh = Phantom(region, 11)
    fresh.slice(0.31, 128)  # another slice first: caches must not change the result
    hu2, labels2, pixel_mm2 = fresh.slice(0.5, 256)
    assert np.array_equal(hu, hu2) and np.array_equal(labels, labels2) and pixel_mm == pixel_mm2
    assert hu.dtype == np.float32 and labels.dtype == np.uint8 and np.isfinite(hu).all()


@pytest.mark.parametrize("region", REGIONS)
def test_two_seeds_give_two_patients(region):
    a, la, _ = painted(region, 11, 0.5, 256)
    b, lb, _ = painted(region, 12, 0.5, 256)
    assert np.abs(a - b).mean() > 5.0
    assert (la != lb).mean() > 0.02


@pytest.mark.parametrize("region, tissue, lo, hi", [
    ("abdomen", "liver", 3.0, 8.0),       # parenchyma ~4 HU plus the intrahepatic vessels
    ("abdomen", "spleen", 3.0, 8.0),
    ("abdomen", "kidney", 2.0, 8.0),
    ("head", "white_matter", 1.0, 4.0),
    ("head", "gray_matter", 1.0, 5.0),
    ("chest", "heart", 1.0, 4.0),
    ("chest", "lung", 10.0, 50.0),        # parenchyma: a few tens of HU (fine grain + gravity gradient)
])
def test_texture_std_per_organ_is_in_range(region, tissue, lo, hi):
    for seed in (1, 2):
        hu, labels, _ = painted(region, seed, 0.5, 512)
        m = eroded(labels, tissue)
        assert m.sum() > 200, (tissue, m.sum())
        assert lo <= hu[m].std() <= hi, (tissue, seed, hu[m].std())
        assert abs(np.median(hu[m]) - TISSUE_HU[tissue]) < max(2 * hi, 10.0)


@pytest.mark.parametrize("region", REGIONS)
def test_flat_tissue_stays_flat_enough_for_noise_measurement(region):
    """Noise is measured in FLAT_TISSUE: its texture stays a few HU (< 6), so against the ~20-50 HU
    of acquisition noise it adds < 2 % to a measured noise std."""
    hu, labels, _ = painted(region, 3, 0.5, 512)
    m = eroded(labels, FLAT_TISSUE[region])
    assert m.sum() > 500 and hu[m].std() < 6.0


@pytest.mark.parametrize("region", ["abdomen", "head"])
def test_water_stays_homogeneous_zero_hu(region):
    hu, labels, _ = painted(region, 5, 0.5, 512)
    water = labels == LABELS["water"]
    assert water.sum() > 100 and np.all(hu[water] == 0.0)


def test_lesions_are_kept_homogeneous_with_their_contrast():
    found = 0
    for seed in range(6):
        p = phantom("abdomen", seed)
        for les in p.lesions:
            hu, labels, _ = p.slice(les["z"], 256)
            m = labels == LABELS["lesion"]
            if m.sum() == 0:
                continue
            found += 1
            values = {float(v) for v in np.unique(hu[m])}
            allowed = {float(np.float32(TISSUE_HU["liver"] + other["contrast"])) for other in p.lesions}
            assert values <= allowed, (values, allowed)
    assert found >= 3


def lung_vessels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lungs = ndimage.binary_closing(labels == LABELS["lung"], iterations=6)
    return (labels == LABELS["vessel"]) & lungs, lungs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lung_vessels_are_dense_and_many(seed):
    """Vessels take 1.5-15 % of the lung field of a mid-chest slice (measured 3-5 %), in some
    hundreds of cross-sections and branch segments (measured ~250), bronchi beside them."""
    _, labels, _ = painted("chest", seed, 0.5, 512)
    vessels, lungs = lung_vessels(labels)
    frac = vessels.sum() / lungs.sum()
    n = ndimage.label(vessels)[1]
    assert 0.015 < frac < 0.15, frac
    assert 80 < n < 1500, n
    assert (labels == LABELS["airway"]).sum() > 20 and (labels == LABELS["airway_wall"]).sum() > 20


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lung_vessels_continue_to_the_next_slice(seed):
    """A vessel pixel at z has a vessel within 3 mm at z + 2 mm (measured 83-88 %), far more often
    than at an unrelated slice 39 mm away (measured 36-38 %, the chance level of this density)."""
    z, dz = 0.5, 2.0 / Z_EXTENT_MM["chest"]
    _, lab0, px = painted("chest", seed, z, 512)
    v0, _ = lung_vessels(lab0)
    near = []
    for other in (z + dz, z + 0.15):
        v1, _ = lung_vessels(painted("chest", seed, other, 512)[1])
        dist_mm = ndimage.distance_transform_edt(~v1) * px
        near.append(np.mean(dist_mm[v0] < 3.0))
    assert near[0] > 0.7 and near[1] < 0.55 and near[0] - near[1] > 0.25, near


@pytest.mark.parametrize("region", ["abdomen", "chest"])
def test_trabecular_bone_has_bone_and_marrow_in_a_cortical_shell(region):
    """Cancellous bone (vertebral bodies, ribs, sternum) mixes trabecular pixels (> 300 HU) with
    marrow pixels (< 100 HU); its mean is that of real vertebrae (100-400 HU); the cortical shell
    around it is 900-1600 HU."""
    hu, labels = None, None
    for z in np.linspace(0.3, 0.7, 9):  # a slice through a vertebral body, not a disc
        hu, labels, _ = painted(region, 4, float(z), 512)
        if (labels == LABELS["cancellous"]).sum() > 800:
            break
    c = labels == LABELS["cancellous"]
    assert c.sum() > 800
    bone_like, marrow_like = np.mean(hu[c] > 300), np.mean(hu[c] < 100)
    assert bone_like > 0.1 and marrow_like > 0.2, (bone_like, marrow_like)
    assert 100 < hu[c].mean() < 400
    shell = (labels == LABELS["bone"]) & ndimage.binary_dilation(c, iterations=3)
    assert 900 < np.median(hu[shell]) < 1600


def test_skull_has_diploe_and_the_brain_has_sulci():
    hu, labels, _ = painted("head", 4, 0.5, 512)
    assert (labels == LABELS["cancellous"]).sum() > 300  # diploe between the tables
    assert (labels == LABELS["csf"]).sum() > 300         # sulci, fissure, subarachnoid space
    gm, wm = eroded(labels, "gray_matter", 1), eroded(labels, "white_matter", 1)
    assert hu[gm].mean() - hu[wm].mean() > 6


def test_bowel_has_gas_content_and_wall():
    hu, labels, _ = painted("abdomen", 4, 0.7, 512)
    for name in ("bowel_gas", "bowel_content", "bowel_wall"):
        assert (labels == LABELS[name]).sum() > 100, name
    content = hu[labels == LABELS["bowel_content"]]
    assert -60 < np.median(content) < 60 and content.std() > 5  # mixed, mottled


def pooled(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean(axis=(1, 3))


@pytest.mark.parametrize("region, organs", [
    ("abdomen", ("liver", "spleen", "kidney", "fat", "muscle")),
    ("chest", ("lung", "heart", "fat", "muscle")),
    ("head", ("white_matter", ("bone", "cancellous"), ("gray_matter", "white_matter", "csf"))),
])
def test_same_anatomy_at_256_and_512_px(region, organs):
    """The 512 px slice pooled 2 x 2 matches the 256 px slice: organ label maps correlate > 0.95
    (the cortical ribbon, 3 mm thin, > 0.9; the skull as a whole), the image > 0.98, and the liver's fine texture > 0.6
    (it is defined in mm, not pixels)."""
    hu5, lab5, px5 = painted(region, 6, 0.45, 512)
    hu2, lab2, px2 = painted(region, 6, 0.45, 256)
    assert px2 == pytest.approx(2 * px5)
    for name, limit in [(n, 0.95) for n in organs] + ([("gray_matter", 0.9)] if region == "head" else []):
        ids = [LABELS[n] for n in ((name,) if isinstance(name, str) else name)]
        a, b = pooled(np.isin(lab5, ids).astype(float)), np.isin(lab2, ids).astype(float)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > limit, name
    assert np.corrcoef(pooled(hu5).ravel(), hu2.ravel())[0, 1] > 0.98
    if region == "abdomen":
        m = eroded(lab2, "liver")
        assert np.corrcoef(pooled(hu5)[m], hu2[m])[0, 1] > 0.6
