"""Shared fixtures. Tests never touch the network and never write into the user's cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# one private cache for the whole test session (set before ctinv_utils reads it)
_CACHE = Path(tempfile.mkdtemp(prefix="ctinv-test-cache-"))
os.environ["CTINV_CACHE"] = str(_CACHE)
os.environ.pop("CTINV_DATA", None)

SMOKE_SIMULATION = dict(image_size=128, n_views=180, photons_full_dose=6e4, patients_per_region=3,
                        min_slices=2, max_slices=3)


@pytest.fixture(scope="session")
def smoke_data():
    """The smoke-preset simulated data set (generated once per test session)."""
    from ctinv_utils.data.dataset import load_data

    return load_data(None, SMOKE_SIMULATION, progress=False)
