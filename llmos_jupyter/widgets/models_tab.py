"""The Models tab: what is in the store and in memory; pull, load, unload, details."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from llmos_jupyter import api
from llmos_jupyter.humanize import human_bytes
from llmos_jupyter.widgets import html
from llmos_jupyter.widgets.background import Jobs

# The details pane leaves out what only a developer reads (checksums, the full template).
DETAIL_KEYS = ("name", "kind", "base", "format", "arch", "params", "quantization",
               "context_length", "size_bytes", "source", "license", "system", "default_params",
               "presets", "path", "created_at")
COLUMNS = ["name", "kind", "arch", "params", "quantization", "context_length", "size",
           "loaded"]


class ModelsTab(w.VBox):
    """Models in the store (table), a name to act on, Pull with progress, Load / Unload."""

    status = t.Unicode("", help="The last thing that happened, or the last error.").tag(sync=True)
    busy = t.Bool(False, help="A pull, load or unload is running.").tag(sync=True)

    def __init__(self, **kwargs: Any):
        self.jobs = Jobs("models", self._fail)
        self.table = w.HTML()
        self.name = w.Dropdown(description="Model", options=[])
        pullable = [p["name"] for p in api.pullable()]
        self.pull_name = w.Combobox(description="Pull", value=pullable[0] if pullable else "",
                                    options=pullable, ensure_option=False)
        self.pull_button = w.Button(description="Pull", icon="download")
        self.load_button = w.Button(description="Load", icon="play", button_style="primary")
        self.unload_button = w.Button(description="Unload", icon="eject")
        self.progress = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="",
                                        layout=w.Layout(width="320px"))
        self.status_label = w.HTML()
        self.details = w.HTML()
        self.pull_button.on_click(lambda _: self.pull())
        self.load_button.on_click(lambda _: self.load())
        self.unload_button.on_click(lambda _: self.unload())
        self.name.observe(lambda _: self._show_details(), names="value")
        super().__init__(children=[
            self.table,
            w.HBox([self.name, self.load_button, self.unload_button]),
            w.HBox([self.pull_name, self.pull_button, self.progress]),
            self.status_label,
            w.HTML("<b>Details</b>"),
            self.details,
        ], **kwargs)
        self.refresh()

    # ------------------------------------------------------------------ state
    @t.observe("status")
    def _status_changed(self, change: dict[str, Any]) -> None:
        self.status_label.value = html.preformatted(change["new"]) if change["new"] else ""

    @t.observe("busy")
    def _busy_changed(self, change: dict[str, Any]) -> None:
        for b in (self.pull_button, self.load_button, self.unload_button):
            b.disabled = change["new"]

    def _fail(self, e: BaseException) -> None:
        self.status = html.describe_error(e)
        self.busy = False

    # ------------------------------------------------------------------ actions
    def refresh(self) -> None:
        """Re-read the store and the loaded models (quick: catalog rows only)."""
        try:
            models = api.list_models()
            loaded = {m["name"] for m in api.ps()}
        except Exception as e:  # the store may be unreadable; say so in the tab
            self.table.value = html.error(html.describe_error(e))
            return
        rows = [{**m, "size": human_bytes(m.get("size_bytes")),
                 "loaded": "●" if m["name"] in loaded else ""} for m in models]
        self.table.value = html.table(rows, COLUMNS, empty="No models yet: pull one below.")
        names = [m["name"] for m in models]
        if list(self.name.options) != names:
            keep = self.name.value if self.name.value in names else (names[0] if names else None)
            self.name.options = names
            self.name.value = keep

    def _show_details(self) -> None:
        name = self.name.value
        if not name:
            self.details.value = ""
            return

        def job() -> None:
            info = api.show(name)
            if self.name.value == name:  # the user may have picked another meanwhile
                self.details.value = html.record(
                    {k: info[k] for k in DETAIL_KEYS if info.get(k) not in (None, "", {}, [])})

        self.jobs.start(job)

    def pull(self, name: str | None = None) -> None:
        """Pull `name` (default: the Pull box) in a thread, feeding the progress bar."""
        name = (name or self.pull_name.value or "").strip()
        if not name:
            self.status = "Type a model name to pull."
            return
        self.busy, self.progress.value, self.progress.bar_style = True, 0.0, ""
        self.status = f"pulling {name}…"

        def progress(done: int, total: int, stage: str) -> None:
            self.progress.description = stage
            self.progress.value = done / total if total else 0.0

        def job() -> None:
            try:
                api.pull(name, progress=progress)
            except BaseException:
                self.progress.bar_style = "danger"
                raise
            self.progress.value, self.progress.bar_style = 1.0, "success"
            self.refresh()
            if name in self.name.options:
                self.name.value = name
            self.status, self.busy = f"pulled {name}", False

        self.jobs.start(job)

    def load(self) -> None:
        """Load the selected model in a thread (it becomes the current model)."""
        name = self.name.value
        if not name:
            self.status = "No model selected."
            return
        self.busy, self.status = True, f"loading {name}…"

        def job() -> None:
            m = api.load(name)
            self.status, self.busy = f"loaded {name} ({m.mode}, {m.device})", False
            self.refresh()

        self.jobs.start(job)

    def unload(self) -> None:
        """Free the selected model's memory."""
        name = self.name.value
        self.busy = True

        def job() -> None:
            gone = api.unload(name)
            self.status = f"unloaded {', '.join(gone)}" if gone else f"{name} was not loaded"
            self.busy = False
            self.refresh()

        self.jobs.start(job)

    def wait(self, timeout: float | None = None) -> bool:
        """Join this tab's background jobs (for tests and scripts)."""
        return self.jobs.wait(timeout)
