"""The Data tab: a dataset's first rows, its statistics and its length distribution."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from llmos_jupyter import api
from llmos_jupyter.widgets import html
from llmos_jupyter.widgets.background import Jobs
from llmos_jupyter.widgets.histogram import histogram_html

PREVIEW_ROWS = 5


def text_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Columns holding strings in some row, in first-seen order (what can be tokenized)."""
    seen: list[str] = []
    for r in rows:
        for k, v in r.items():
            if isinstance(v, str) and k not in seen:
                seen.append(k)
    return seen


def stats_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Dataset.stats() as one table row per column (type, non-null, chars/tokens p50/p90/max)."""
    out = []
    for name, col in stats.get("columns", {}).items():
        row = {"column": name, "type": col.get("type"), "non_null": col.get("non_null")}
        for unit in ("chars", "tokens"):
            d = col.get(unit) or {}
            for k in ("mean", "p50", "p90", "max"):
                if k in d:
                    row[f"{unit} {k}"] = d[k]
        out.append(row)
    return out


class DataTab(w.VBox):
    """Dataset dropdown → preview table, stats and a histogram of lengths per row.

    Lengths are in tokens of the current model when one is loaded (that is what a task
    will feed it), else in characters.
    """

    status = t.Unicode("", help="The last error, if any.").tag(sync=True)
    unit = t.Unicode("chars", help="Unit of the histogram: 'tokens' or 'chars'.").tag(sync=True)
    lengths = t.List(t.Int(), help="Length of the chosen column in each row.")

    def __init__(self, **kwargs: Any):
        self.jobs = Jobs("data", lambda e: setattr(self, "status", html.describe_error(e)))
        self.dataset = w.Dropdown(description="Dataset", options=[])
        self.column = w.Dropdown(description="Column", options=[])
        self.preview = w.HTML()
        self.stats = w.HTML()
        self.histogram = w.HTML()
        self.status_label = w.HTML()
        self.dataset.observe(lambda _: self.show(), names="value")
        self.column.observe(self._column_changed, names="value")
        self._filling = False  # True while a job sets the column list itself
        self._rows: list[dict[str, Any]] = []
        super().__init__(children=[
            w.HBox([self.dataset, self.column]),
            w.HTML(f"<b>First {PREVIEW_ROWS} rows</b>"), self.preview,
            w.HTML("<b>Stats</b>"), self.stats,
            self.histogram, self.status_label,
        ], **kwargs)
        self.refresh()

    @t.observe("status")
    def _status_changed(self, change: dict[str, Any]) -> None:
        self.status_label.value = html.error(change["new"]) if change["new"] else ""

    def refresh(self) -> None:
        """Re-read the list of datasets; redraw the selected one."""
        try:
            names = [d["name"] for d in api.datasets.list()]
        except Exception as e:
            self.status = html.describe_error(e)
            return
        if list(self.dataset.options) != names:
            keep = self.dataset.value if self.dataset.value in names else None
            self.dataset.options = names
            self.dataset.value = keep or (names[0] if names else None)
            return  # the value change (if any) redraws
        self.show()

    def show(self) -> None:
        """Read the selected dataset in a thread and fill preview, stats and histogram."""
        name = self.dataset.value
        if not name:
            self.preview.value = "<p><em>No datasets yet: add one with llmos.datasets.add."
            self.stats.value = self.histogram.value = ""
            return

        def job() -> None:
            ds = api.datasets.get(name)
            rows = ds.rows()
            head = rows[:PREVIEW_ROWS]
            columns = list(head[0]) if head else []
            self.preview.value = html.table(head, columns, empty="(empty dataset)")
            self.stats.value = html.table(
                stats_rows(ds.stats()),
                ["column", "type", "non_null", "chars mean", "chars p50", "chars p90",
                 "chars max"])
            self._rows = rows
            cols = text_columns(rows)
            if list(self.column.options) != cols:
                self._filling = True
                try:
                    self.column.options = cols
                    self.column.value = "text" if "text" in cols else (cols[0] if cols else None)
                finally:
                    self._filling = False
            self._plot_column()
            self.status = ""

        self.jobs.start(job)

    def _column_changed(self, _change: dict[str, Any]) -> None:
        if not self._filling:  # a user's pick: tokenizing may take a while, so off-thread
            self.jobs.start(self._plot_column)

    def _plot_column(self) -> None:
        col, rows, name = self.column.value, self._rows, self.dataset.value
        if not col:
            self.histogram.value = ""
            return
        texts = [r[col] for r in rows if isinstance(r.get(col), str)]
        model = api.current_model_or_none()
        if model is not None:
            self.lengths = [len(ids) for ids in model.tokenizer.encode_batch(texts)]
            self.unit, who = "tokens", f" ({model.name} tokenizer)"
        else:
            self.lengths, self.unit, who = [len(s) for s in texts], "chars", " (no model loaded)"
        self.histogram.value = histogram_html(self.lengths, self.unit,
                                              f"{name}.{col}: {self.unit} per row{who}")

    def wait(self, timeout: float | None = None) -> bool:
        """Join this tab's background jobs."""
        return self.jobs.wait(timeout)
