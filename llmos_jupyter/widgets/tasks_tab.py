"""The Tasks tab: a task's spec and a run form generated from its inputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as w
import traitlets as t

from llmos_jupyter import api
from llmos_jupyter.widgets import html
from llmos_jupyter.widgets.background import Jobs

INPUTS, DATASET = "inputs", "dataset"
CURRENT = "(current model)"


class TasksTab(w.VBox):
    """Task dropdown, its YAML, and a form: one Textarea per input, or a dataset.

    Run with inputs executes the task once (in a thread) and shows its output. Run with a
    dataset starts a background run (`api.run(..., data=..., background=True)`); its
    progress shows in the Runs tab. Inputs filled in alongside a dataset are constants
    for every row (e.g. `target_language`); empty ones come from the same-named column.
    """

    status = t.Unicode("", help="The last thing that happened, or the last error.").tag(sync=True)
    busy = t.Bool(False, help="A run started here is executing inline.").tag(sync=True)
    last_run_id = t.Unicode("", help="Id of the last run started from this tab.").tag(sync=True)

    def __init__(self, on_run_started: Callable[[str], None] | None = None, **kwargs: Any):
        self.on_run_started = on_run_started
        self.jobs = Jobs("tasks", self._fail)
        self.task = w.Dropdown(description="Task", options=[])
        self.spec = w.HTML()
        self.source = w.ToggleButtons(options=[INPUTS, DATASET], value=INPUTS,
                                      description="Run on")
        self.inputs: dict[str, w.Textarea] = {}
        self.form = w.VBox()
        self.dataset = w.Dropdown(description="Dataset", options=[])
        self.limit = w.BoundedIntText(value=0, min=0, max=1_000_000, description="Limit",
                                      tooltip="rows to run (0 = all)")
        self.model = w.Dropdown(description="Model", options=[CURRENT], value=CURRENT)
        self.max_tokens = w.BoundedIntText(value=0, min=0, max=100_000, description="max_tokens",
                                           tooltip="0 = the task's own setting")
        self.run_button = w.Button(description="Run", icon="play", button_style="primary")
        self.result = w.Textarea(description="Output", disabled=True,
                                 layout=w.Layout(width="100%", height="100px"))
        self.status_label = w.HTML()
        self.task.observe(lambda _: self._show_task(), names="value")
        self.source.observe(lambda _: self._show_source(), names="value")
        self.run_button.on_click(lambda _: self.run())
        self.dataset_box = w.HBox([self.dataset, self.limit])
        super().__init__(children=[
            self.task, self.spec, self.source, self.form, self.dataset_box,
            w.HBox([self.model, self.max_tokens, self.run_button]), self.status_label, self.result,
        ], **kwargs)
        self.refresh()
        self._show_source()

    @t.observe("status")
    def _status_changed(self, change: dict[str, Any]) -> None:
        self.status_label.value = html.preformatted(change["new"]) if change["new"] else ""

    @t.observe("busy")
    def _busy_changed(self, change: dict[str, Any]) -> None:
        self.run_button.disabled = change["new"]

    def _fail(self, e: BaseException) -> None:
        self.status, self.busy = html.describe_error(e), False

    def refresh(self) -> None:
        """Re-read tasks, datasets and models."""
        try:
            # Records or dicts: the API documents dicts, the store hands out records.
            tasks = [x["name"] if isinstance(x, dict) else x.name for x in api.tasks.list()]
            datasets = [d["name"] for d in api.datasets.list()]
            models = [m["name"] for m in api.list_models()]
        except Exception as e:
            self.status = html.describe_error(e)
            return
        for dd, names in ((self.dataset, datasets), (self.model, [CURRENT, *models])):
            if list(dd.options) != names:
                keep = dd.value if dd.value in names else (names[0] if names else None)
                dd.options, dd.value = names, keep
        if list(self.task.options) != tasks:
            keep = self.task.value if self.task.value in tasks else (tasks[0] if tasks else None)
            self.task.options = tasks
            self.task.value = keep

    def _show_task(self) -> None:
        name = self.task.value
        if not name:
            self.spec.value, self.inputs, self.form.children = "", {}, ()
            return
        spec = api.tasks.get(name)
        self.spec.value = html.preformatted(spec.to_yaml())
        self.inputs = {
            n: w.Textarea(description=n, placeholder=f"{n} (with a dataset: blank = column {n})",
                          layout=w.Layout(width="100%", height="60px"))
            for n in spec.inputs
        }
        self.form.children = tuple(self.inputs.values())

    def _show_source(self) -> None:
        self.dataset_box.layout.display = "" if self.source.value == DATASET else "none"

    def run(self) -> None:
        """Run the selected task on the form's inputs or dataset, off the main thread."""
        task = self.task.value
        if not task:
            self.status = "No task selected."
            return
        values = {n: box.value for n, box in self.inputs.items()}
        model = None if self.model.value == CURRENT else self.model.value
        params = {"max_tokens": self.max_tokens.value} if self.max_tokens.value else None
        self.busy, self.result.value = True, ""
        if self.source.value == DATASET:
            data = self.dataset.value
            if not data:
                self.status, self.busy = "No dataset selected.", False
                return
            constants = {k: v for k, v in values.items() if v.strip()}
            limit = self.limit.value or None
            self.status = f"starting {task} on {data}…"
            self.jobs.start(self._run_dataset, task, model, params, data, limit, constants)
        else:
            self.status = f"running {task}…"
            self.jobs.start(self._run_inline, task, model, params, values)

    def _run_dataset(self, task: str, model: str | None, params: dict[str, Any] | None,
                     data: str, limit: int | None, constants: dict[str, str]) -> None:
        handle = api.run(task, model=model, data=data, limit=limit, params=params,
                         background=True, **constants)
        self.last_run_id = handle.id
        self.status = f"run {handle.id} started on {data}: see the Runs tab"
        self.busy = False
        if self.on_run_started:
            self.on_run_started(handle.id)

    def _run_inline(self, task: str, model: str | None, params: dict[str, Any] | None,
                    values: dict[str, str]) -> None:
        result = api.run(task, model=model, params=params, **values)
        self.last_run_id = result.run_id
        if result.status == "succeeded":
            out = result.output
            self.result.value = out if isinstance(out, str) else html.cell_text(out, 10_000)
            self.status = f"run {result.run_id} succeeded"
        else:
            self.result.value = result.raw_text or ""
            self.status = f"run {result.run_id} {result.status}: {result.error}"
        self.busy = False
        if self.on_run_started:
            self.on_run_started(result.run_id)

    def wait(self, timeout: float | None = None) -> bool:
        """Join this tab's background jobs (not the background runs they start)."""
        return self.jobs.wait(timeout)
