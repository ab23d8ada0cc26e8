"""The store's services for the current LLMOS_HOME, opened once per home per process."""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.datasets import DatasetStore
from llmos_jupyter.store.home import llmos_home
from llmos_jupyter.store.models import ModelStore
from llmos_jupyter.store.runs import RunStore

if TYPE_CHECKING:
    from llmos_jupyter.store.tasks import TaskStore


class Services:
    """The catalog of one home and its four stores. Each store is opened on first use, and
    the task store's module imported then, so a command that lists models does not import
    the task language's YAML parser. Two threads racing to open the same store may each
    build one; that is harmless, since a store holds no state of its own beyond the
    shared catalog (opening one only tidies leftovers of dead processes)."""

    def __init__(self, home: Path, catalog: Catalog):
        self.home = home
        self.catalog = catalog

    @cached_property
    def models(self) -> ModelStore:
        return ModelStore(self.catalog)

    @cached_property
    def datasets(self) -> DatasetStore:
        return DatasetStore(self.catalog)

    @cached_property
    def tasks(self) -> TaskStore:
        # yaml (the task language's parser): only commands that use tasks load it.
        from llmos_jupyter.store.tasks import TaskStore

        return TaskStore(self.catalog)

    @cached_property
    def runs(self) -> RunStore:
        return RunStore(self.catalog)


_open: dict[Path, Services] = {}
_lock = threading.Lock()


def services() -> Services:
    """Services of the store at LLMOS_HOME as it is now (tests change it per test)."""
    home = llmos_home().resolve()
    with _lock:
        s = _open.get(home)
        if s is None:
            s = Services(home, Catalog(home))
            _open[home] = s
        return s
