"""Threads behind the widgets: one-shot jobs and a periodic poller.

Widget callbacks run on the kernel's main thread; anything that may take more than a
moment (loading a model, generating, reading a dataset) runs in a `Jobs` thread instead,
so the notebook stays responsive. A job never prints: its errors go to an `on_error`
callback that puts them in a widget (printing from a thread would land in whatever cell
happens to be running).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

ErrorSink = Callable[[BaseException], None]


class Jobs:
    """Starts callables in daemon threads and remembers them so `wait()` can join them."""

    def __init__(self, name: str, on_error: ErrorSink):
        self.name = name
        self.on_error = on_error
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self, fn: Callable[..., Any], *args: Any) -> threading.Thread:
        """Run fn(*args) in a new thread; an exception goes to on_error, never to stdout."""

        def body() -> None:
            try:
                fn(*args)
            except BaseException as e:  # noqa: BLE001 - shown in the widget instead
                self.on_error(e)

        t = threading.Thread(target=body, name=f"llmos-{self.name}", daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()
        return t

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float | None = None) -> bool:
        """Join every job started so far (jobs may start more); True if all finished."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return True
            for t in alive:
                left = None if deadline is None else max(deadline - time.monotonic(), 0)
                t.join(left)
            if deadline is not None and time.monotonic() >= deadline:
                return not any(t.is_alive() for t in alive)


class Poller:
    """Calls `tick()` every `interval` seconds in a daemon thread until `stop()`."""

    def __init__(self, tick: Callable[[], None], interval: float, on_error: ErrorSink,
                 name: str = "poller"):
        self.tick = tick
        self.interval = interval
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"llmos-{name}", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:  # a store hiccup must not end live updates
                self.on_error(e)
            self._stop.wait(self.interval)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end and join it (unless called from the poller itself)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
