"""Shared fixtures. Tests never touch the network and never write into the user's cache.

Each test session gets a private cache folder under the system temp folder, removed when the session
ends (``CTINV_KEEP_TEST_CACHE=1`` keeps it for debugging). A session that was killed cannot clean up
after itself; the next session removes such leftovers (their names carry the pid of a process that is
gone)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

_PREFIX = "ctinv-test-cache-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _remove_orphans(tmp: Path) -> None:
    """Cache folders of earlier test sessions whose process has ended (killed before cleaning up)."""
    for folder in tmp.glob(f"{_PREFIX}*"):
        found = re.match(rf"{_PREFIX}(\d+)-", folder.name)
        if found and int(found.group(1)) != os.getpid() and not _pid_alive(int(found.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


# one private cache for the whole test session (set before ctinv_utils reads it)
_remove_orphans(Path(tempfile.gettempdir()))
_CACHE = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
os.environ["CTINV_CACHE"] = str(_CACHE)
os.environ.pop("CTINV_DATA", None)

SMOKE_SIMULATION = dict(image_size=128, n_views=180, photons_full_dose=6e4, patients_per_region=3,
                        min_slices=2, max_slices=3)


def pytest_sessionfinish(session, exitstatus):
    """Remove this session's private cache (about 20 MB) unless CTINV_KEEP_TEST_CACHE is set."""
    if os.environ.get("CTINV_KEEP_TEST_CACHE") or os.getpid() != _OWNER:
        return
    shutil.rmtree(_CACHE, ignore_errors=True)


_OWNER = os.getpid()  # a forked worker never removes its parent's cache


@pytest.fixture(scope="session")
def smoke_data():
    """The smoke-preset simulated data set (generated once per test session)."""
    from ctinv_utils.data.dataset import load_data

    return load_data(None, SMOKE_SIMULATION, progress=False)


@pytest.fixture
def test_cache_dir() -> Path:
    """This session's private cache folder (``$CTINV_CACHE``)."""
    return _CACHE
