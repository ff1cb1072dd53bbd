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


# pytest-xdist (make test): each worker computes on its share of the cores, set before torch is
# imported so that the notebook kernels and subprocesses a test starts inherit it (two workers with
# all cores each would fight over them)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ.setdefault(_var, str(max(1, _cores // _WORKERS)))

#: The longest test files, first: pytest-xdist (--dist loadfile --no-loadscope-reorder) hands files
#: to the workers in collection order, so the two start together instead of one after the other.
LONGEST_FIRST = ("test_training.py", "test_chain.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: (LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST
                                 else len(LONGEST_FIRST)))  # stable: the order inside a file is kept


# one private cache for the whole test session (set before ctinv_utils reads it)
_remove_orphans(Path(tempfile.gettempdir()))
_CACHE = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
os.environ["CTINV_CACHE"] = str(_CACHE)
os.environ.pop("CTINV_DATA", None)

SMOKE_SIMULATION = dict(scanner="clinical", image_size=128, n_views=360, photons_full_dose=2e5, patients_per_region=3,
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
