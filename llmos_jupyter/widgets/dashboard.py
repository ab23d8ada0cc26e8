"""The LLMOS dashboard: Models, Data, Tasks and Runs tabs in one widget."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from llmos_jupyter.widgets.data_tab import DataTab
from llmos_jupyter.widgets.models_tab import ModelsTab
from llmos_jupyter.widgets.runs_tab import RunsTab
from llmos_jupyter.widgets.tasks_tab import TasksTab

TITLES = ("Models", "Data", "Tasks", "Runs")


class Dashboard(w.Tab):
    """`Dashboard()` shows the store of LLMOS_HOME: models, datasets, tasks and runs.

    Each tab is also an attribute (`.models`, `.data`, `.tasks`, `.runs`) whose widgets
    can be driven from code. The Runs tab polls the store every `poll_interval` seconds
    while the dashboard is open; `close()` stops it. `poll=False` disables polling.
    """

    def __init__(self, poll: bool = True, poll_interval: float = 1.0, **kwargs: Any):
        self.models = ModelsTab()
        self.data = DataTab()
        self.runs = RunsTab(poll=False)
        self.runs.poll_interval = poll_interval
        self.tasks = TasksTab(on_run_started=self._run_started)
        super().__init__(children=[self.models, self.data, self.tasks, self.runs],
                         titles=TITLES, **kwargs)
        self.add_class("llmos-dashboard")  # a stable hook for styling and screenshots
        if poll:
            self.runs.start_polling()

    def _run_started(self, run_id: str) -> None:
        # Show the new run's progress right away, and the models now in memory.
        self.runs.selected = run_id
        self.models.refresh()

    def refresh(self) -> None:
        """Re-read the store in every tab."""
        for tab in (self.models, self.data, self.tasks, self.runs):
            tab.refresh()

    def wait(self, timeout: float | None = None) -> bool:
        """Join every tab's one-shot background jobs (not the runs they started)."""
        return all([tab.wait(timeout) for tab in (self.models, self.data, self.tasks,
                                                  self.runs)])

    def close(self) -> None:
        """Stop the runs poller and close every tab."""
        for tab in (self.models, self.data, self.tasks, self.runs):
            tab.close()
        super().close()
