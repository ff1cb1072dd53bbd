"""Optional tools some tests need (a browser, ldct-benchmark's own classes). Where one is missing a
test skips with the command that installs it, except in CI (``CI=true``), where the README's test
command installs them all: there a missing tool is a failure, so nothing goes untested unnoticed."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest


def missing(what: str, fix: str) -> None:
    """Skip the test (fail it under ``CI``): ``what`` is not installed, ``fix`` installs it."""
    message = f"needs {what}: {fix}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run this test but it {message}", pytrace=False)
    pytest.skip(message)


def chromium() -> str:
    """The system Chromium's path, and Playwright to drive it (its own browsers are never downloaded)."""
    if importlib.util.find_spec("playwright") is None:
        missing("Playwright", "pip install -e '.[dev]'")
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if exe is None:
        missing("Chromium", "apt-get install chromium")
    return exe


def ldctbench_root() -> Path:
    """The installed ldct-benchmark package's folder (its heavy modules are not imported)."""
    spec = importlib.util.find_spec("ldctbench")
    if spec is None:
        missing("ldct-benchmark", "pip install --no-deps ldct-benchmark==0.0.15")
    return Path(spec.submodule_search_locations[0])
