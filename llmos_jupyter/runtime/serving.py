"""The models a server serves: one continuous-batching scheduler per loaded model.

A scheduler is made on a model's first request (loading the model through the
loaded-model cache, so a notebook in the same process shares the weights) and lives until
`close`, which lets admitted requests finish and refuses new ones.
"""

from __future__ import annotations

import threading

from llmos_jupyter.runtime.cache import MODELS
from llmos_jupyter.runtime.scheduler import Scheduler
from llmos_jupyter.runtime.services import services


class Serving:
    """Schedulers by model name for one server (thread-safe)."""

    def __init__(self, max_rows: int = 32, max_queue: int = 64) -> None:
        self.max_rows, self.max_queue = max_rows, max_queue
        self._schedulers: dict[str, Scheduler] = {}
        self._lock = threading.Lock()

    def scheduler(self, name: str) -> Scheduler:
        """The scheduler of model or preset `name`, loading it on first use (slow: call it
        off an event loop). Raises NotFoundError for a name not in the store."""
        with self._lock:
            found = self._schedulers.get(name)
        if found is not None:
            return found
        loaded = MODELS.get(services(), name)
        with self._lock:
            if name not in self._schedulers:
                self._schedulers[name] = Scheduler(loaded, self.max_rows, self.max_queue)
            return self._schedulers[name]

    def loaded(self) -> dict[str, Scheduler]:
        """The schedulers made so far, by model name."""
        with self._lock:
            return dict(self._schedulers)

    def unload(self, name: str | None = None) -> list[str]:
        """Stop serving model `name` (None: every model) once its admitted requests
        finish, and free it from the loaded-model cache. Returns the names unloaded."""
        with self._lock:
            names = [name] if name is not None else list(self._schedulers)
            gone = [self._schedulers.pop(n) for n in names if n in self._schedulers]
        for s in gone:
            s.close()
        freed = MODELS.unload(name)
        return sorted(set(names if gone else []) | set(freed))

    def close(self, timeout: float | None = None) -> None:
        """Let every admitted request finish, then stop the scheduler threads."""
        for s in self.loaded().values():
            s.close(timeout)
