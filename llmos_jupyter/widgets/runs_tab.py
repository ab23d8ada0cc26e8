"""The Runs tab: recent runs with live progress, cancel, and the selected run's results."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as w
import traitlets as t

from llmos_jupyter import api
from llmos_jupyter.widgets import html
from llmos_jupyter.widgets.background import Jobs, Poller

COLUMNS = ["id", "task", "model", "dataset", "status", "progress", "done", "created"]
RESULT_COLUMNS = ["idx", "inputs", "output", "status", "error", "tokens"]
FINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def _label(r: dict[str, Any]) -> str:
    return f"{r['id']} · {r['task']} · {r['status']}"


class RunsTab(w.VBox):
    """A table of recent runs, refreshed by a poller thread while the widget is open.

    The poller only rewrites a widget when its content changed, so an idle dashboard
    sends nothing to the browser. `close()` stops it.
    """

    status = t.Unicode("", help="The last thing that happened, or the last error.").tag(sync=True)
    selected = t.Unicode("", help="Id of the run whose results are shown.").tag(sync=True)
    poll_interval = t.Float(1.0, help="Seconds between polls of the run store.")
    limit = t.Int(20, help="How many recent runs the table shows.")

    def __init__(self, poll: bool = True, **kwargs: Any):
        self.jobs = Jobs("runs", lambda e: setattr(self, "status", html.describe_error(e)))
        self.table = w.HTML()
        self.run = w.Dropdown(description="Run", options=[], layout=w.Layout(width="420px"))
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0)
        self.cancel_button = w.Button(description="Cancel", icon="stop", button_style="warning")
        self.results = w.HTML()
        self.status_label = w.HTML()
        self.run.observe(self._run_changed, names="value")
        self.cancel_button.on_click(lambda _: self.cancel())
        self._last: dict[str, Any] = {}
        # The poller and user actions both refresh; one at a time keeps `_last` true.
        self._lock = threading.RLock()
        self._filling = False  # True while refresh() replaces the dropdown's options
        super().__init__(children=[
            self.table, w.HBox([self.run, self.progress, self.cancel_button]),
            self.status_label, w.HTML("<b>Results</b>"), self.results,
        ], **kwargs)
        self.poller: Poller | None = None
        try:
            self.refresh()
        except Exception as e:  # a broken store shows in the tab, not as a traceback
            self.status = html.describe_error(e)
        if poll:
            self.start_polling()

    def start_polling(self) -> None:
        """Start the poller thread (once); `close()` stops it."""
        if self.poller is None or not self.poller.alive:
            self.poller = Poller(self.refresh, self.poll_interval,
                                 lambda e: setattr(self, "status", html.describe_error(e)),
                                 name="runs-poller").start()

    @t.observe("status")
    def _status_changed(self, change: dict[str, Any]) -> None:
        self.status_label.value = html.preformatted(change["new"]) if change["new"] else ""

    @t.observe("selected")
    def _selected_changed(self, change: dict[str, Any]) -> None:
        if not change["new"] or self.run.value == change["new"]:
            return
        if change["new"] in self.run_ids:
            self.run.value = change["new"]
        else:  # a run newer than the last poll: refresh lists it and selects it
            self.jobs.start(self.refresh)

    def _run_changed(self, change: dict[str, Any]) -> None:
        if self._filling or not change["new"]:
            return
        self.selected = change["new"]
        self.jobs.start(self.refresh)

    # ------------------------------------------------------------------ polling
    def _set(self, key: str, widget: w.Widget, attr: str, value: Any) -> None:
        """Set widget.attr only when it changed: each set is a message to the browser."""
        if self._last.get(key) != value:
            self._last[key] = value
            setattr(widget, attr, value)

    def refresh(self) -> None:
        """Re-read recent runs and the selected run's progress and results."""
        with self._lock:
            runs = api.runs.list(limit=self.limit)
            rows = [{**r, "progress": html.progress_bar(r["progress"]["fraction"]),
                     "done": f"{r['progress']['done']}/{r['progress']['total']}",
                     "created": (r.get("created_at") or "")[:19].replace("T", " ")}
                    for r in runs]
            self._set("table", self.table, "value",
                      html.table(rows, COLUMNS, empty="No runs yet.", raw=("progress",)))
            options = [(_label(r), r["id"]) for r in runs]
            if self.selected and self.selected not in {r["id"] for r in runs}:
                try:  # an older run picked by id: keep it selectable
                    options.append((_label(api.runs.get(self.selected).to_dict()),
                                    self.selected))
                except Exception:
                    self.selected = ""
            if self._last.get("options") != options:
                self._last["options"] = options
                keep = self.selected or self.run.value
                ids = [o[1] for o in options]
                self._filling = True
                try:
                    self.run.options = options
                    self.run.value = keep if keep in ids else (ids[0] if ids else None)
                finally:
                    self._filling = False
            self._refresh_selected()

    def _refresh_selected(self) -> None:
        run_id = self.run.value
        if not run_id:
            self._set("results", self.results, "value", "")
            return
        handle = api.runs.get(run_id)
        rec = handle.to_dict()
        self.progress.value = rec["progress"]["fraction"]
        style = {"succeeded": "success", "failed": "danger", "cancelled": "warning"}
        self.progress.bar_style = style.get(rec["status"], "info")
        self.cancel_button.disabled = rec["status"] in FINAL
        self._set("results", self.results, "value",
                  html.table(handle.results(), RESULT_COLUMNS, empty="(no items)"))

    @property
    def run_ids(self) -> list[str]:
        return [o[1] for o in self.run.options]

    # ------------------------------------------------------------------ actions
    def cancel(self) -> None:
        """Ask the selected run to stop (it finishes its current batch step first)."""
        run_id = self.run.value
        if not run_id:
            return

        def job() -> None:
            api.runs.cancel(run_id)
            self.status = f"cancel requested for {run_id}"
            self.refresh()

        self.jobs.start(job)

    def wait(self, timeout: float | None = None) -> bool:
        """Join this tab's one-shot jobs (the poller runs until close)."""
        return self.jobs.wait(timeout)

    def close(self) -> None:
        """Stop the poller, then close the widget."""
        if self.poller is not None:
            self.poller.stop()
        super().close()
