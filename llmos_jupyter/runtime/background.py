"""Runs (task runs, training) executing in background threads of this process.

The thread of each run id is kept so a handle can wait for it; its failure is already
recorded in the run's row by the code it runs, so the thread itself never raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

THREADS: dict[str, threading.Thread] = {}  # run id -> the thread executing it here


def run_or_spawn(run_id: str, target: Callable[..., Any], args: tuple, background: bool,
           name: str) -> None:
    """Call target(*args) now (background False) or in a daemon thread named `name`."""
    if not background:
        target(*args)
        return

    def logged() -> None:
        try:
            target(*args)
        except Exception:  # recorded as the run's error by `target`; don't crash the thread
            pass

    thread = threading.Thread(target=logged, name=name, daemon=True)
    THREADS[run_id] = thread
    thread.start()
