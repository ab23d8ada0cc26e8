"""Functions run in child processes (multiprocessing 'spawn' or `python -c`) by store tests.

They live in a module, not in the tests, because spawned children import their target by
name. Each opens its own Catalog from the home it is given, as a separate process would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def open_catalog(home: str, barrier_path: str | None = None) -> int:
    """Open (and so migrate) the store; return the schema version seen."""
    from llmos_jupyter.store.catalog import Catalog

    _wait_for(barrier_path)
    return Catalog(Path(home)).schema_version


def add_datasets(home: str, prefix: str, n: int, barrier_path: str | None = None) -> list[str]:
    """Add n small datasets named {prefix}-{i}; return their names."""
    from llmos_jupyter.store.catalog import Catalog
    from llmos_jupyter.store.datasets import DatasetStore

    store = DatasetStore(Catalog(Path(home)))
    _wait_for(barrier_path)
    names = []
    for i in range(n):
        name = f"{prefix}-{i}"
        store.add(name, [{"text": f"{prefix} row {i} {j}", "j": j} for j in range(3)])
        names.append(name)
    return names


def record_items(
    home: str, run_id: str, indices: list[int], barrier_path: str | None = None
) -> int:
    """Record a result for each item index; return how many this process recorded."""
    from llmos_jupyter.store.catalog import Catalog
    from llmos_jupyter.store.runs import ItemAlreadyRecordedError, RunStore

    runs = RunStore(Catalog(Path(home)))
    _wait_for(barrier_path)
    recorded = 0
    for i in indices:
        try:
            runs.record_item(run_id, i, output=f"out {i} by {os.getpid()}", tokens=1, seconds=0.01)
            recorded += 1
        except ItemAlreadyRecordedError:
            pass
    return recorded


def run_forever(home: str, run_id: str) -> None:
    """Start a run in this process and heartbeat until killed."""
    from llmos_jupyter.store.catalog import Catalog
    from llmos_jupyter.store.runs import RunStore

    runs = RunStore(Catalog(Path(home)))
    runs.start(run_id, os.getpid())
    while True:
        runs.heartbeat(run_id)
        time.sleep(0.05)


def _wait_for(barrier_path: str | None, timeout: float = 60.0) -> None:
    """Say this process is ready, then spin until the barrier file exists (see `release`)."""
    if barrier_path is None:
        return
    Path(f"{barrier_path}.ready-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while not os.path.exists(barrier_path):
        if time.monotonic() > deadline:
            raise TimeoutError(barrier_path)
        time.sleep(0.002)


def release(barrier_path: str | Path, n: int, timeout: float = 120.0) -> None:
    """In the parent: once n children wait at the barrier, let them all go at once."""
    barrier = Path(barrier_path)
    deadline = time.monotonic() + timeout
    while len(list(barrier.parent.glob(barrier.name + ".ready-*"))) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only some of {n} workers reached {barrier}")
        time.sleep(0.01)
    barrier.touch()


def import_model(home: str, name: str, path: str, barrier_path: str | None = None) -> str:
    """Import a checkpoint as `name`; return "ok" or the error's class name."""
    from llmos_jupyter.errors import LLMOSError
    from llmos_jupyter.store.catalog import Catalog
    from llmos_jupyter.store.models import ModelStore

    models = ModelStore(Catalog(Path(home)))
    import llmos_jupyter.formats  # noqa: F401  (import torch before the race starts)

    _wait_for(barrier_path)
    try:
        models.import_model(name, path)
        return "ok"
    except LLMOSError as exc:
        return type(exc).__name__


def create_run_forever(home: str, chunks_before_hanging: int) -> None:
    """Create a run from a stream of items that stops coming after some chunks (the
    process is killed meanwhile, as a user's Ctrl-C or the OOM killer would)."""
    from llmos_jupyter.store.catalog import Catalog
    from llmos_jupyter.store.runs import ITEM_CHUNK, RunStore

    def items():
        for i in range(chunks_before_hanging * ITEM_CHUNK):
            yield {"text": f"row {i}"}
        while True:
            time.sleep(1)

    RunStore(Catalog(Path(home))).create("summarize", {"name": "summarize", "prompt": "{text}"},
                                         "m", None, "docs", None, items())
