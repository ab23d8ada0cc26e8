"""LLMOS public face: `import llmos` and `%load_ext llmos`.

Re-exports live here, and the one piece of wiring between interfaces: `%load_ext llmos`
hands the widgets to the magics (`%llmos dashboard`), so neither imports the other. The
implementation is `llmos_jupyter`. The API is resolved on first attribute access, so
`%load_ext llmos` stays instant (no torch import).
"""

from __future__ import annotations

from typing import Any

from llmos_jupyter import __version__, magics
from llmos_jupyter.magics import unload_ipython_extension

_API_NAMES = [
    "pull", "pullable", "import_model", "list_models", "show", "rm", "cp", "create", "load",
    "unload", "ps", "current_model", "generate", "chat", "run", "datasets", "tasks", "runs",
    "train", "evaluate", "eval_model", "LoadedModel", "RunHandle", "TaskResult", "LLMOSError",
]

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension", "widgets",
           "Client", *_API_NAMES]


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext llmos`: the %llmos magics, with the widgets `%llmos dashboard` shows."""
    magics.load_ipython_extension(ip, show_widget=_new_widget)


def _new_widget(name: str) -> Any:
    # ipywidgets: loaded when a widget is first shown, not by `%load_ext llmos`.
    from llmos_jupyter import widgets

    return getattr(widgets, name)()


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        # The api's stack loads on first use: `%load_ext llmos` stays instant.
        from llmos_jupyter import api

        return getattr(api, name)
    if name == "Client":  # the HTTP client: no torch, so it is importable anywhere
        from llmos_jupyter.client import Client

        return Client
    if name == "widgets":
        # ipywidgets: imported on first use, not with this module
        from llmos_jupyter import widgets

        return widgets
    raise AttributeError(f"module 'llmos' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
