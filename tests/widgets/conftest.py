"""A store with the tiny model and a small dataset, shared by the widget tests of a module.

Module-scoped (importing and loading take a moment); each module gets its own
LLMOS_HOME, and models loaded by a module are unloaded after it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TINY = "tiny"
TOY_ROWS = [
    {"text": "hello world", "label": "greeting"},
    {"text": "the cat sat on the mat and then it sat on the hat", "label": "story"},
    {"text": "is it raining in the city", "label": "question"},
    {"text": "the", "label": "word"},
    {"text": "an ant and a bat in a hat, and an owl at the window", "label": "story"},
]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Iterator[Path]:
    """LLMOS_HOME with model `tiny` (random weights, real BPE) and dataset `toy`."""
    from llmos_jupyter import api
    from tests.checkpoint_factory import write_tiny_gguf

    root = tmp_path_factory.mktemp("widgets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMOS_HOME", str(root / "home"))
        gguf = write_tiny_gguf(root / "tiny.gguf")
        api.import_model(TINY, gguf)
        api.datasets.add("toy", TOY_ROWS)
        yield root / "home"
        api.unload()


def eventually(check: Callable[[], bool], timeout: float = 20.0, every: float = 0.05) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass (for poller-driven state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def env_with(**extra: str) -> dict[str, str]:
    """os.environ plus `extra` (for kernels and subprocesses)."""
    return {**os.environ, **extra}
