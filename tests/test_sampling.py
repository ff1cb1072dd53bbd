"""Patient split and patient-balanced sampling."""

import numpy as np
import pytest
from scipy.stats import chisquare

from ctinv_utils.data.sampling import PatchSampler, PatientBalancedSampler, SliceUniformSampler, split_patients

SLICES = [3, 40, 7, 120, 15, 3]


def test_patient_balanced_sampler_is_uniform_over_patients():
    patients, slices = PatientBalancedSampler(SLICES, seed=3).sample(30000)
    counts = np.bincount(patients, minlength=len(SLICES))
    assert chisquare(counts).pvalue > 1e-3
    assert (slices < np.array(SLICES)[patients]).all() and (slices >= 0).all()
    # within a patient, slices are uniform too
    assert chisquare(np.bincount(slices[patients == 3], minlength=120)).pvalue > 1e-3


def test_slice_uniform_sampler_is_not_balanced():
    """The same test has the power to reject the naive scheme."""
    patients, _ = SliceUniformSampler(SLICES, seed=3).sample(30000)
    counts = np.bincount(patients, minlength=len(SLICES))
    assert chisquare(counts).pvalue < 1e-6
    expected = np.array(SLICES) / sum(SLICES) * 30000
    assert chisquare(counts, expected).pvalue > 1e-3


def test_split_is_by_patient_stratified_and_seeded(smoke_data):
    a = split_patients(smoke_data, seed=1)
    b = split_patients(smoke_data, seed=1)
    assert a == b
    ids = a["train"] + a["val"] + a["test"]
    assert sorted(ids) == sorted(smoke_data.patient_ids) and len(set(ids)) == len(ids)
    for split in a.values():  # three patients per region: one of each region in every split
        assert sorted(i[0] for i in split) == ["C", "L", "N"]
    with pytest.raises(ValueError):
        split_patients(smoke_data, fractions=(0.5, 0.5, 0.5))


def test_patch_sampler_shapes_units_and_resume(smoke_data):
    from ctinv_utils.units import norm_to_hu

    s = PatchSampler(smoke_data, patch_size=40, seed=0)
    s.next_batch(3)
    state = s.state_dict()
    low, full = s.next_batch(4)
    assert low.shape == full.shape == (4, 1, 40, 40)
    assert (norm_to_hu(full) > -500).float().mean() > 0.4  # mostly body, not air
    s.load_state_dict(state)
    low2, full2 = s.next_batch(4)
    assert np.array_equal(low.numpy(), low2.numpy()) and np.array_equal(full.numpy(), full2.numpy())
