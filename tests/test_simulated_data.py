"""The embedded data set: caching by config, no half-written cache, real noise properties."""

import numpy as np
import pytest
from scipy import ndimage

from ctinv_utils.data import simulated as simulated_data
from ctinv_utils.data.phantoms import FLAT_TISSUE, LABELS
from ctinv_utils.data.simulated import SimulationConfig, load_phantom_labels, simulated_data_root
from ctinv_utils.errors import BadArgumentError


def test_config_hash_keys_the_cache():
    a = SimulationConfig(image_size=96, patients_per_region=1, min_slices=1, max_slices=1)
    b = SimulationConfig(image_size=96, patients_per_region=1, min_slices=1, max_slices=1, seed=1)
    assert a.hash != b.hash
    assert a.hash == SimulationConfig.from_dict(a.to_dict()).hash
    with pytest.raises(ValueError, match="unknown simulation settings"):
        SimulationConfig.from_dict({"image_sise": 64})


def test_cache_is_reused(monkeypatch):
    cfg = dict(image_size=96, n_views=120, patients_per_region=1, min_slices=1, max_slices=2)
    root = simulated_data_root(cfg, progress=False)

    def fail(*a, **k):
        raise AssertionError("regenerated although cached")

    monkeypatch.setattr(simulated_data, "generate", fail)
    assert simulated_data_root(cfg, progress=False) == root


def test_interrupted_generation_leaves_nothing(monkeypatch):
    cfg = SimulationConfig(image_size=96, n_views=120, patients_per_region=1, min_slices=1, max_slices=1, seed=7)

    def die(cfg, out, **k):
        (out / "partial.dcm").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(simulated_data, "generate", die)
    with pytest.raises(KeyboardInterrupt):
        simulated_data_root(cfg, progress=False)
    parent = simulated_data.cache_dir() / "simulated"
    assert not (parent / cfg.hash).exists()
    assert not [p for p in parent.iterdir() if cfg.hash in p.name]


def test_simulated_data_loads_as_paired_dicom(smoke_data):
    assert smoke_data.source.startswith("simulated")
    assert len(smoke_data) == 9
    labels = load_phantom_labels(smoke_data.root)
    for i, p in enumerate(smoke_data.patients):
        assert labels[p.patient_id].shape[0] == p.n_slices
        low, full = smoke_data.slice_hu(i, 0)
        assert low.shape == full.shape == (128, 128)
        assert low.dtype == np.float32
        # the low-dose image is really noisier: the photons removed leave a difference of several HU
        # (3 mm pixels at this size, so only a few), and in the region's flat tissue and muscle (the
        # same anatomy in both) the low dose varies more
        tissue = np.isin(labels[p.patient_id][0], [LABELS[FLAT_TISSUE[p.region]], LABELS["muscle"]])
        flat = ndimage.binary_erosion(tissue, iterations=2)
        assert flat.sum() > 20, p.patient_id
        assert np.std((low - full)[flat]) > 3, p.patient_id
        assert low[flat].std() > full[flat].std(), (p.patient_id, low[flat].std(), full[flat].std())


def test_slice_cache_is_bounded(smoke_data):
    from ctinv_utils.data.dataset import PairedCTData

    pair_bytes = 2 * 128 * 128 * 4
    small = PairedCTData(smoke_data.patients, smoke_data.source, smoke_data.root, cache_bytes=3 * pair_bytes)
    first = small.slice_hu(0, 0)
    for s in range(smoke_data.patients[1].n_slices):
        small.slice_hu(1, s)
    small.slice_hu(2, 0)
    assert small._cached_bytes <= 3 * pair_bytes and len(small._cache) == 3
    assert (0, 0) not in small._cache  # least recently used went first
    assert all(np.array_equal(a, b) for a, b in zip(small.slice_hu(0, 0), first))


def test_the_analysed_slice_records_its_pixel_size(smoke_data):
    """Notebook 03's slice record carries the PixelSpacing, which the DICOM export then uses as is."""
    from ctinv_utils.data.dataset import pick_slice
    from ctinv_utils.data.regions import FOV_MM
    low, full, where = pick_slice(smoke_data, smoke_data.patient_ids, "chest", 64)
    assert low.shape == full.shape == (64, 64)
    assert where["pixel_mm"] == pytest.approx(FOV_MM["chest"] / 128, rel=1e-6)  # the smoke simulation: 128 px


def test_the_analysed_window_holds_the_most_anatomy():
    """A body of flat soft tissue with one structured patch (lung-like holes and vessels) off-centre:
    the crop lands on the patch, never on the air outside the body; None is the whole slice."""
    from ctinv_utils.data.dataset import anatomy_crop_origin, crop_at

    image = np.full((200, 200), -1000.0)
    yy, xx = np.mgrid[:200, :200]
    image[np.hypot(yy - 100, xx - 100) < 95] = 40.0
    patch = (slice(120, 160), slice(40, 80))
    image[patch] = np.where((yy[patch] // 5 + xx[patch] // 5) % 2, -850.0, 40.0)  # a checkerboard of lung
    r0, c0 = anatomy_crop_origin(image, 48)
    assert 112 <= r0 <= 120 and 32 <= c0 <= 40, (r0, c0)  # the 48 px window covers the 40 px patch
    assert (crop_at(image, (r0, c0), 48) > -950).mean() >= 0.95
    assert anatomy_crop_origin(image, None) == (0, 0) and crop_at(image, (0, 0), None) is image
    flat = np.full((64, 64), -1000.0)  # no body at all: the centre
    assert anatomy_crop_origin(flat, 32) == (16, 16)
    with pytest.raises(BadArgumentError, match="larger than"):
        anatomy_crop_origin(image, 300)
