"""LLMOS widgets for Jupyter: `Dashboard()` (models, data, tasks, runs) and `Playground()`.

    from llmos_jupyter.widgets import Dashboard, Playground   # or: llmos.widgets.Dashboard
    Dashboard()
    Playground(prompt="Write a haiku about the sea")

Widgets keep their state in traitlets and widget values; slow work (pull, load,
generate, runs) happens in background threads that update the widgets.

Imports: `llmos_jupyter.api` and the bottom floor (`errors`, `humanize`), never the
runtime or another interface; ipywidgets and traitlets.
"""

from llmos_jupyter.widgets.dashboard import Dashboard
from llmos_jupyter.widgets.playground import Playground

__all__ = ["Dashboard", "Playground"]
