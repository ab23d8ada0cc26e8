"""store layer of LLMOS: LLMOS_HOME's layout and the SQLite catalog of models, datasets,
tasks and runs that every process (kernel, Jupyter server, CLI) shares.

    store = Store()            # opens $LLMOS_HOME (default ~/.llmos), migrating if needed
    store.models.pull("smollm2-135m-instruct")
    store.datasets.add("docs", "docs.jsonl")
    store.runs.list()

Also here: home.py (the layout and safe writes), catalog.py (SQLite in WAL mode),
model_records.py, run_records.py and sources.py (where pullable models come from).
The task language is `llmos_jupyter.tasks`, record files are `llmos_jupyter.data`.

Imports: tasks, data, formats, tokenizer, core and errors of ours, never the runtime or
anything above it. Importing this package is cheap: torch is imported only when a model
is converted.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmos_jupyter.store.catalog import Catalog
    from llmos_jupyter.store.datasets import DatasetRecord, DatasetStore
    from llmos_jupyter.store.home import HomeLayout, llmos_home
    from llmos_jupyter.store.model_records import ModelRecord
    from llmos_jupyter.store.models import ModelStore
    from llmos_jupyter.store.run_records import ItemAlreadyRecordedError, RunItem, RunRecord
    from llmos_jupyter.store.runs import RunStore
    from llmos_jupyter.store.tasks import TaskRecord, TaskStore

# Where each exported name lives. They are imported on first use (PEP 562), so importing
# one module of the store (`llmos list` needs only the models) does not import them all:
# tasks bring a YAML parser, datasets their file readers.
_EXPORTS = {
    "Catalog": "catalog", "DatasetRecord": "datasets", "DatasetStore": "datasets",
    "HomeLayout": "home", "llmos_home": "home", "ModelRecord": "model_records",
    "ModelStore": "models", "ItemAlreadyRecordedError": "run_records",
    "RunItem": "run_records", "RunRecord": "run_records", "RunStore": "runs",
    "TaskRecord": "tasks", "TaskStore": "tasks",
}

__all__ = [
    "Catalog", "DatasetRecord", "DatasetStore", "HomeLayout", "ItemAlreadyRecordedError",
    "ModelRecord", "ModelStore", "RunItem", "RunRecord", "RunStore", "Store", "TaskRecord",
    "TaskStore", "llmos_home",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Store:
    """One LLMOS_HOME opened: its catalog and the four stores sharing it."""

    def __init__(self, home: Path | str | None = None):
        # Here, not at the top: this __init__ runs on every import of a store module, which
        # must not import them all (store.tasks brings yaml).
        from llmos_jupyter.store.catalog import Catalog
        from llmos_jupyter.store.datasets import DatasetStore
        from llmos_jupyter.store.models import ModelStore
        from llmos_jupyter.store.runs import RunStore
        from llmos_jupyter.store.tasks import TaskStore

        self.catalog = Catalog(home)
        self.home = self.catalog.home
        self.models = ModelStore(self.catalog)
        self.datasets = DatasetStore(self.catalog)
        self.tasks = TaskStore(self.catalog)
        self.runs = RunStore(self.catalog)
