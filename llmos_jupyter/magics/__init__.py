"""magics interface of LLMOS: the %llmos line magic and the %%llmos cell magic.

    llmos_magic.py   parse a line with the shared verb table (commands/), then dispatch
    cells.py         the cell verbs: generate, chat, task NAME, train
    verbs.py         the notebook-only line verbs: load, unload, dashboard, playground, help

Imports: `llmos_jupyter.api`, the verb table `llmos_jupyter.commands` and the bottom floor
(`errors`, `core`), never another interface: the widgets that `%llmos dashboard` shows
come in as `show_widget` from whoever loads the magics (the public face, `llmos`).
Registering is cheap: IPython's magic machinery and torch load on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def load_ipython_extension(ip: Any, show_widget: Callable[[str], Any] | None = None) -> None:
    """Register the magics on an IPython shell (cheap: torch loads on first real use).

    `show_widget(name)` returns a new widget ("Dashboard", "Playground") for the
    notebook verbs that show one; without it those verbs say how to load LLMOS instead.
    """
    # IPython's magic classes: loaded when the extension is, not when `llmos` is imported.
    from llmos_jupyter.magics.llmos_magic import LLMOSMagics

    ip.register_magics(LLMOSMagics(ip, show_widget))


def unload_ipython_extension(ip: Any) -> None:
    """Nothing to undo beyond IPython's own bookkeeping; kept for symmetry."""
