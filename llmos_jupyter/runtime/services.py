"""The store's services for the current LLMOS_HOME, opened once per home per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.datasets import DatasetStore
from llmos_jupyter.store.home import llmos_home
from llmos_jupyter.store.models import ModelStore
from llmos_jupyter.store.runs import RunStore
from llmos_jupyter.store.tasks import TaskStore


@dataclass
class Services:
    home: Path
    catalog: Catalog
    models: ModelStore
    datasets: DatasetStore
    tasks: TaskStore
    runs: RunStore


_open: dict[Path, Services] = {}
_lock = threading.Lock()


def services() -> Services:
    """Services of the store at LLMOS_HOME as it is now (tests change it per test)."""
    home = llmos_home().resolve()
    with _lock:
        s = _open.get(home)
        if s is None:
            catalog = Catalog(home)
            s = Services(
                home, catalog, ModelStore(catalog), DatasetStore(catalog),
                TaskStore(catalog), RunStore(catalog),
            )
            _open[home] = s
        return s
