"""Runs: every task execution is recorded in the store, item by item.

`start_run` resolves the task and model, records a queued run with every item's inputs,
then executes it — in the calling thread for a single input, in a background thread for
a dataset. Execution records each item's result as soon as its batch finishes, so a run
whose process dies keeps what it did; `resume_run` does only the items with no result.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmos_jupyter.errors import ConfigError, DataError, LLMOSError
from llmos_jupyter.runtime.background import THREADS, run_or_spawn

if TYPE_CHECKING:  # torch, and a YAML parser: RunHandle (`llmos runs show ID`) needs neither
    from llmos_jupyter.runtime.loaded_model import LoadedModel
    from llmos_jupyter.tasks.taskspec import TaskSpec

# Items per engine batch. A fused CPU decode step's cost per sequence keeps falling as
# rows are added, since each weight block is dequantized once for all of them (SmolLM2,
# 2 AVX2 cores: ~9.5 ms per token alone, 3.5 ms per row at 16 rows, 3.25 at 32, no
# better at 64); 32 rows keep a step near 0.1 s, so cancelling is prompt. The engine
# splits a batch further when its KV cache would pass its budget (long documents).
# Results are recorded batch by batch, so a crash loses at most one batch of work.
BATCH_SIZE = 32


@dataclass
class TaskResult:
    """The result of a task run on one set of inputs."""

    output: Any
    run_id: str
    status: str
    text: str | None = None
    error: str | None = None
    raw_text: str | None = None
    usage: dict[str, int] | None = None

    def __repr__(self) -> str:
        if self.status != "succeeded":
            return f"<TaskResult run={self.run_id} {self.status}: {self.error}>"
        return f"<TaskResult run={self.run_id}: {self.output!r}>"


class RunHandle:
    """A run in the store, possibly still executing in the background."""

    def __init__(self, services: Any, run_id: str):
        self._services = services
        self.id = run_id

    def record(self) -> Any:
        return self._services.runs.get(self.id)

    @property
    def status(self) -> str:
        return self.record().status

    @property
    def progress(self) -> float:
        """Fraction of items with a result, 0..1."""
        return self.record().progress

    def wait(self, timeout: float | None = None, poll: float = 0.2) -> RunHandle:
        """Block until the run is final (or timeout seconds pass); returns self."""
        deadline = None if timeout is None else time.monotonic() + timeout
        thread = THREADS.get(self.id)
        while not self.record().is_final:
            if thread is not None and not thread.is_alive() and not self.record().is_final:
                break  # the executor died; its status says why
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(poll)
        return self

    def cancel(self) -> RunHandle:
        self._services.runs.cancel(self.id)
        return self

    def results(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Each item (idx, inputs, output, status, error, tokens): all, or `limit` items
        from `offset`."""
        return [it.to_dict() for it in self._services.runs.items(self.id, offset, limit)]

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.results())

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def __repr__(self) -> str:
        r = self.record()
        return f"<Run {r.id} {r.task} {r.status} {r.done}/{r.total}>"


def _items_from_data(
    services: Any, spec: TaskSpec, data: str, mapping: dict[str, str], constants: dict[str, Any],
    limit: int | None,
) -> Iterator[dict[str, Any]]:
    """One input dict per dataset row: task input <- column (by `mapping`, else same name).

    Rows are streamed from the snapshot as the run records them, so `limit` rows cost
    `limit` lines read, and a million-row dataset is never in memory at once.
    """
    record = services.datasets.get(data)
    columns = record.columns  # every column of any row
    for k, col in mapping.items():
        if k not in spec.inputs:
            raise ConfigError(f"map {k}={col}: task {spec.name!r} has no input {k!r}; "
                              f"its inputs are {spec.inputs}",
                              command_line=f"--map {k}={col}: task {spec.name!r} has no input "
                                           f"{k!r}; its inputs are {spec.inputs}")
        if col not in columns:
            raise DataError(f"map {k}={col}: dataset {data!r} has no column {col!r}; its "
                            f"columns are {columns}",
                            command_line=f"--map {k}={col}: dataset {data!r} has no column "
                                         f"{col!r}; its columns are {columns}")
    missing = [n for n in spec.inputs if n not in constants and mapping.get(n, n) not in columns]
    if missing:
        # Suggest a column of text: inputs are prompt text, rarely an id or a number.
        types = ((record.stats or {}).get("columns") or {}) if isinstance(record.stats, dict) \
            else {}
        texts = [c for c in columns if (types.get(c) or {}).get("type") == "str"]
        col = texts[0] if texts else (columns[0] if columns else "COLUMN")
        what = f"dataset {data!r} has no column for input(s) {missing}; its columns are {columns}"
        raise DataError(f"{what}. Map them, e.g. map={{{missing[0]!r}: {col!r}}}",
                        command_line=f"{what}. Map them, e.g. --map {missing[0]}={col}")
    if limit is not None and limit < 1:
        raise DataError(f"limit {limit}: a run over dataset {data!r} needs at least one row")
    rows = services.datasets.iter_rows(data)
    if limit is not None:
        rows = itertools.islice(rows, limit)
    wanted = [n for n in spec.inputs if n not in constants]
    return ({**constants, **{n: row.get(mapping.get(n, n)) for n in wanted}} for row in rows)


def start_run(
    services: Any,
    task: str,
    *,
    model: str | LoadedModel | None,
    resolve_model: Callable[[Any], LoadedModel],
    data: str | None = None,
    mapping: dict[str, str] | None = None,
    limit: int | None = None,
    params: dict[str, Any] | None = None,
    background: bool | None = None,
    inputs: dict[str, Any] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> TaskResult | RunHandle:
    """Record and execute a run of `task`; see api.run."""
    spec = services.tasks.get(task)
    inputs = dict(inputs or {})
    mapping = dict(mapping or {})
    if data is None:
        missing = [n for n in spec.inputs if n not in inputs]
        unknown = [k for k in inputs if k not in spec.inputs]
        if missing or unknown:
            what = (f"task {spec.name!r} takes inputs {spec.inputs}"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; unknown {unknown}" if unknown else ""))
            raise ConfigError(
                f"{what}. Example: llmos.run({spec.name!r}, "
                + ", ".join(f"{n}=..." for n in spec.inputs) + ")",
                command_line=f"{what}. Example: `llmos task run {spec.name} "
                + " ".join(f"--input {n}=..." for n in spec.inputs) + "`",
            )
        items = [inputs]
    else:
        items = _items_from_data(services, spec, data, mapping, inputs, limit)
    loaded = resolve_model(model if model is not None else spec.model)
    rec = services.runs.create(spec.name, spec.to_dict(), loaded.name, inputs or None, data,
                               mapping or None, items, params)
    if data is None:
        execute_run(services, rec.id, loaded, spec, params)
        item = services.runs.items(rec.id)[0]
        return TaskResult(
            output=item.output_json if item.output_json is not None else item.output,
            run_id=rec.id, status=item.status, text=item.output, error=item.error,
            raw_text=item.raw_text,
            usage={"prompt_tokens": item.prompt_tokens or 0,
                   "completion_tokens": item.tokens or 0},
        )
    return launch(services, rec.id, loaded, spec, params, background, on_progress)


def launch(
    services: Any, run_id: str, loaded: LoadedModel, spec: TaskSpec,
    params: dict[str, Any] | None, background: bool | None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunHandle:
    """Execute a recorded run, in a background thread unless background is False."""
    run_or_spawn(run_id, execute_run, (services, run_id, loaded, spec, params, on_progress),
                 background is not False, f"llmos-run-{run_id}")
    return RunHandle(services, run_id)


def execute_run(
    services: Any, run_id: str, loaded: LoadedModel, spec: TaskSpec,
    params: dict[str, Any] | None = None, on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Do every pending item of a run, batch by batch, recording each result."""
    runs = services.runs
    runs.start(run_id, os.getpid())
    total = runs.get(run_id).total
    last_poll = [0.0, False]

    def cancelled() -> bool:
        # Generation asks every token; the database is asked at most twice a second.
        now = time.monotonic()
        if now - last_poll[0] > 0.5:
            last_poll[0], last_poll[1] = now, runs.is_cancel_requested(run_id)
        return last_poll[1]

    from llmos_jupyter.runtime.task_exec import TaskExecutor  # torch: only when a run executes

    executor = TaskExecutor(loaded, services.tasks.get, params, should_stop=cancelled)
    try:
        pending = runs.pending_items(run_id)
        if on_progress:
            on_progress(total - len(pending), total)
        for start in range(0, len(pending), BATCH_SIZE):
            if runs.is_cancel_requested(run_id):
                runs.finish(run_id, "cancelled")
                return
            batch = pending[start : start + BATCH_SIZE]
            outcomes = executor.run_batch(spec, [inputs for _, inputs in batch])
            for (idx, _), o in zip(batch, outcomes, strict=True):
                if o.error == "cancelled":
                    continue  # not a result: resume redoes it
                runs.record_item(run_id, idx, o.output, o.output_json, o.raw_text, o.status,
                                 o.error, o.completion_tokens, o.seconds, o.prompt_tokens)
            runs.heartbeat(run_id)
            if on_progress:
                on_progress(total - len(runs.pending_items(run_id)), total)
        if runs.is_cancel_requested(run_id):
            runs.finish(run_id, "cancelled")
            return
        rec = runs.get(run_id)
        status = "failed" if rec.total and rec.failed == rec.total else "succeeded"
        runs.finish(run_id, status, None if status == "succeeded" else "every item failed")
    except BaseException as e:
        if not runs.get(run_id).is_final:
            runs.finish(run_id, "failed", f"{type(e).__name__}: {e}")
        raise


def resume_run(
    services: Any, run_id: str, resolve_model: Callable[[Any], LoadedModel],
    background: bool | None = None, on_progress: Callable[[int, int], None] | None = None,
) -> RunHandle:
    """Finish an interrupted run: only the items that have no result yet."""
    rec = services.runs.get(run_id)
    if rec.status not in ("interrupted", "queued"):
        raise LLMOSError(
            f"run {rec.id} is {rec.status}; only interrupted or queued runs can be resumed"
        )
    # yaml: imported on first use, not with this module
    from llmos_jupyter.tasks.spec_yaml import parse_task_spec

    spec = parse_task_spec(rec.spec, name=rec.task)
    loaded = resolve_model(rec.model)
    return launch(services, rec.id, loaded, spec, rec.params, background, on_progress)
