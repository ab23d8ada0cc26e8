"""`llmos.datasets`, `llmos.tasks` and `llmos.runs`: the API's namespaces over the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos_jupyter.runtime.cache import load_tokenizer
from llmos_jupyter.runtime.loss_plot import metrics_callback
from llmos_jupyter.runtime.progress import count_callback, count_progress
from llmos_jupyter.runtime.task_runs import RunHandle, resume_run
from llmos_jupyter.runtime.training import TrainHandle, resume_training

if TYPE_CHECKING:  # the task language imports a YAML parser; `llmos list` needs none
    from llmos_jupyter.tasks.taskspec import TaskSpec


class Dataset:
    """A dataset in the store: `.head(n)`, `.rows()`, `.to_pandas()`, `.stats()`."""

    def __init__(self, services: Callable[[], Any], name: str,
                 resolve_model: Callable[[Any], Any]):
        self._services = services
        self._resolve = resolve_model
        self.name = name

    @property
    def record(self) -> Any:
        """The dataset's catalog record (rows, columns, sha256, stats)."""
        return self._services().datasets.get(self.name)

    def rows(self) -> list[dict[str, Any]]:
        """Every record of the snapshot, in order."""
        return self._services().datasets.rows(self.name)

    def head(self, n: int = 5) -> list[dict[str, Any]]:
        """The first `n` records."""
        return self._services().datasets.head(self.name, n)

    def to_pandas(self):
        """The records as a pandas DataFrame (pandas must be installed)."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def stats(self, model: str | None = None) -> dict[str, Any]:
        """Rows, columns, characters (and with `model`, tokens) per row with percentiles."""
        if model is None:
            return self._services().datasets.stats(self.name)

        s = self._services()
        return s.datasets.stats(self.name, tokenizer=load_tokenizer(s, model))

    def __len__(self) -> int:
        return self.record.rows

    def __repr__(self) -> str:
        r = self.record
        return f"<Dataset {self.name!r} rows={r.rows} columns={r.columns}>"


class DatasetsAPI:
    """Add, inspect, clean, split, export and tokenize datasets."""

    def __init__(self, services: Callable[[], Any], resolve_model: Callable[[Any], Any]):
        self._services = services
        self._resolve = resolve_model

    def add(
        self, name: str, source: Any, format: str | None = None,  # noqa: A002
        replace: bool = False, described_as: str | None = None,
    ) -> Dataset:
        """From a file path, a list of dicts or a pandas DataFrame; snapshotted in the store
        (its record names `described_as` as the source, if given, else the file's path).

        Adding the same content again is a no-op; different content under an existing name
        needs replace=True. Raises DataError naming the bad row; nothing is registered then.
        """
        src = str(source) if isinstance(source, Path) else source
        self._services().datasets.add(name, src, format=format, replace=replace,
                                      described_as=described_as)
        return Dataset(self._services, name, self._resolve)

    def get(self, name: str) -> Dataset:
        """Dataset `name`; NotFoundError (with close names) when there is none."""
        self._services().datasets.get(name)  # raises NotFoundError with a suggestion
        return Dataset(self._services, name, self._resolve)

    def list(self) -> list[dict[str, Any]]:
        """Every dataset's record as a dict, by name."""
        return [r.to_dict() for r in self._services().datasets.list()]

    def rm(self, name: str) -> None:
        """Remove dataset `name` and its snapshots."""
        self._services().datasets.remove(name)

    def export(self, name: str, path: str | Path, format: str | None = None) -> Path:  # noqa: A002
        """Write dataset `name` to `path`; the format comes from the extension unless given."""
        return Path(self._services().datasets.export(name, path, format))

    def prep(self, src: str, dst: str, replace: bool = False, **options: Any) -> list[dict]:
        """Clean/split `src` into new dataset(s): `dst`, or `dst-<part>` for each split part.

        Options: dedupe, min_chars, max_chars, strip, text_field, split ({"train": 0.9,
        "val": 0.1}), seed. Returns the new datasets' records (their stats hold the report).
        """
        recs = self._services().datasets.prep(src, dst, replace=replace, **options)
        return [r.to_dict() for r in recs]

    def tokenize(
        self, name: str, model: str, text_field: str | None = None, progress=False
    ) -> dict[str, Any]:
        """Write token shards of `name` with `model`'s tokenizer; returns their stats.

        progress=True shows a bar of documents tokenized, or pass a (done, total) callback.
        """
        # numpy: imported on first use, not with this module
        from llmos_jupyter.data.shards import tokenize_records

        s = self._services()
        tokenizer = self._resolve(model).tokenizer
        out = s.home / "shards" / name / f"{model}.tok"
        out.parent.mkdir(parents=True, exist_ok=True)
        info = tokenize_records(s.datasets.rows(name), tokenizer, text_field, out,
                                progress=count_callback(progress, f"tokenize {name}"))
        stats = info.to_dict() if hasattr(info, "to_dict") else dict(vars(info))
        s.datasets.record_tokenized(name, model, out, stats)
        return {"dataset": name, "model": model, "path": str(out), **stats}


class TasksAPI:
    """Task specs: built-in ones and yours."""

    def __init__(self, services: Callable[[], Any]):
        self._services = services

    def add(self, name: str, spec: str | dict[str, Any]) -> TaskSpec:
        """Define or update a task from YAML text or a dict; returns the validated spec."""
        return self._services().tasks.add(name, spec)

    def get(self, name: str) -> TaskSpec:
        """The parsed spec of task `name` (built-in or yours)."""
        return self._services().tasks.get(name)

    def list(self) -> list[dict[str, Any]]:
        """Built-in tasks, then yours: name, inputs, output type, description."""
        store = self._services().tasks
        rows = []
        for rec in store.list():
            spec = store.get(rec.name)
            rows.append({
                "name": rec.name, "builtin": rec.builtin, "inputs": spec.inputs,
                "output": f"flow of {len(spec.steps)} steps" if spec.is_flow else spec.output.type,
                "description": rec.description or spec.description,
                "updated_at": rec.updated_at,
            })
        return rows

    def rm(self, name: str) -> None:
        """Remove your task `name` (built-in tasks cannot be removed)."""
        self._services().tasks.remove(name)


class RunsAPI:
    """The history of runs: list, get, cancel, resume, export."""

    def __init__(self, services: Callable[[], Any], resolve_model: Callable[[Any], Any]):
        self._services = services
        self._resolve = resolve_model

    def list(self, limit: int = 20, status: str | None = None) -> list[dict[str, Any]]:
        """The latest `limit` runs (of `status` when given), newest first, as dicts."""
        return [r.to_dict() for r in self._services().runs.list(limit=limit, status=status)]

    def get(self, run_id: str):
        """A handle on run `run_id`: a TrainHandle for training runs, else a RunHandle."""
        rec = self._services().runs.get(run_id)
        if rec.kind == "train":
            return TrainHandle(self._services(), rec.id)
        return RunHandle(self._services(), rec.id)

    def cancel(self, run_id: str):
        """Ask run `run_id` to stop (it ends 'cancelled', keeping finished items); its handle."""
        return self.get(run_id).cancel()

    def resume(self, run_id: str, background: bool | None = None, progress=False):
        """Finish an interrupted run; progress as for `llmos.run`."""
        rec = self._services().runs.get(run_id)
        if rec.kind == "train":
            on_metrics = metrics_callback(progress, rec.total, f"resume {rec.id}")
            return resume_training(self._services(), run_id, background is not False,
                                   on_metrics)
        with count_progress(progress, f"resume {run_id}",
                            foreground=background is False) as on_progress:
            return resume_run(self._services(), run_id, self._resolve, background, on_progress)

    def export(self, run_id: str, path: str | Path) -> Path:
        """Write run `run_id`'s items to `path` (CSV or JSONL by the extension)."""
        return Path(self._services().runs.export(run_id, path))
