"""What `llmos.Client` reaches through the server's native routes: `client.models`,
`client.datasets`, `client.tasks`, `client.runs`, and `RemoteRun`, the handle of a run the
server executes (the remote twin of `llmos.run(..., data=...)`'s handle)."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import LLMOSError

FINISHED = ("succeeded", "failed", "cancelled", "interrupted")


class ClientError(LLMOSError):
    """The server answered with an error: `status`, `code` and its message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status, self.code = status, code


def _seg(name: str) -> str:
    """A name as one path segment (a '/' in it cannot reach another route)."""
    return urllib.parse.quote(name, safe="")


def _given(body: dict[str, Any]) -> dict[str, Any]:
    """The fields that were given (None means the server's default)."""
    return {k: v for k, v in body.items() if v is not None}


class _Resource:
    def __init__(self, client: Any) -> None:
        self._client = client


class Models(_Resource):
    """Models and presets in the server's store (`llmos list`, `show`, `pull`, ...)."""

    def list(self) -> list[dict[str, Any]]:
        """Every model and preset the server has: [{"id", "created", ...}] (/v1/models)."""
        return self._client._json("GET", "v1/models")["data"]

    def show(self, name: str) -> dict[str, Any]:
        """A model's record: config, template, presets, lineage."""
        return self._client._json("GET", f"api/models/{_seg(name)}")

    def pull(self, name: str,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Download a model into the server's store; `on_progress` gets each progress
        event ({"status", "completed", "total"}). Returns the model's record."""
        for event in self._client._events("POST", "api/models/pull",
                                          {"name": name, "stream": True}):
            if "error" in event:
                err = event["error"]
                raise ClientError(400, err.get("message", "pull failed"), err.get("code"))
            if event.get("status") == "success":
                return event["result"]
            if on_progress is not None:
                on_progress(event)
        raise ConnectionError(f"the server closed the pull of {name!r} before it finished")

    def rm(self, name: str, cascade: bool = False) -> dict[str, Any]:
        """Remove a model or preset (cascade: and the presets based on it)."""
        return self._client._json("DELETE", f"api/models/{_seg(name)}",
                                  query={"cascade": cascade or None})

    def cp(self, src: str, dst: str) -> dict[str, Any]:
        """Copy a model or preset."""
        return self._client._json("POST", "api/models/cp", {"src": src, "dst": dst})

    def create(self, name: str, base: str, system: str | None = None,
               params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A preset: `base` with a system prompt and default sampling settings."""
        return self._client._json("POST", "api/models/create", _given(
            {"name": name, "base": base, "system": system, "param": params}))

    def load(self, name: str) -> dict[str, Any]:
        """Load a model in the server so its first request does not wait."""
        return self._client._json("POST", f"api/models/{_seg(name)}/load")

    def unload(self, name: str) -> dict[str, Any]:
        """Free a model the server holds."""
        return self._client._json("POST", f"api/models/{_seg(name)}/unload")

    def ps(self) -> list[dict[str, Any]]:
        """The models loaded in the server."""
        return self._client._json("GET", "api/ps")


class Datasets(_Resource):
    """Datasets in the server's store (the `data` verbs)."""

    def list(self) -> list[dict[str, Any]]:
        """Every dataset: name, rows, columns, format, sha256."""
        return self._client._json("GET", "api/datasets")

    def show(self, name: str, head: int = 5) -> dict[str, Any]:
        """A dataset's record with its first `head` rows."""
        return self._client._json("GET", f"api/datasets/{_seg(name)}", query={"head": head})

    def add(self, name: str, path: str | Path, format: str | None = None,  # noqa: A002
            replace: bool = False) -> dict[str, Any]:
        """Upload a local file as dataset `name` (format from the extension unless given)."""
        path = Path(path)
        fmt = format or path.suffix.lstrip(".").lower() or None
        with path.open("rb") as f:  # streamed: a big file is never held in memory
            return self._client._json("POST", f"api/datasets/{_seg(name)}",
                                      query={"format": fmt, "replace": replace or None},
                                      raw=f)

    def stats(self, name: str, model: str | None = None) -> dict[str, Any]:
        """Rows, columns, characters (and tokens, with `model`) per row."""
        return self._client._json("GET", f"api/datasets/{_seg(name)}/stats",
                                  query={"model": model})

    def export(self, name: str, path: str | Path,
               format: str | None = None) -> Path:  # noqa: A002
        """Download a dataset into a local file; returns its path."""
        return _download(self._client, f"api/datasets/{_seg(name)}/export", path, format)

    def rm(self, name: str) -> dict[str, Any]:
        """Remove a dataset."""
        return self._client._json("DELETE", f"api/datasets/{_seg(name)}")


class Tasks(_Resource):
    """Tasks in the server's store (the `task` verbs)."""

    def list(self) -> list[dict[str, Any]]:
        """Every task, built-in and added."""
        return self._client._json("GET", "api/tasks")

    def show(self, name: str) -> dict[str, Any]:
        """A task's spec."""
        return self._client._json("GET", f"api/tasks/{_seg(name)}")

    def add(self, name: str, spec: str | Path) -> dict[str, Any]:
        """Add or update task `name` from YAML text (or a local .yaml file's path)."""
        text = Path(spec).read_text(encoding="utf-8") if isinstance(spec, Path) else spec
        return self._client._json("PUT", f"api/tasks/{_seg(name)}", raw=text.encode())

    def rm(self, name: str) -> dict[str, Any]:
        """Remove a task."""
        return self._client._json("DELETE", f"api/tasks/{_seg(name)}")


class Runs(_Resource):
    """Run history (the `runs` verbs)."""

    def list(self, limit: int = 20, status: str | None = None) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        return self._client._json("GET", "api/runs", query={"limit": limit, "status": status})

    def get(self, run_id: str) -> RemoteRun:
        """The handle of run `run_id`."""
        return RemoteRun(self._client, run_id)


class RemoteRun:
    """A run executing in the server: its progress, results, cancel and resume."""

    def __init__(self, client: Any, run_id: str, record: dict[str, Any] | None = None):
        self._client, self.id = client, run_id
        self._record = record

    def __repr__(self) -> str:
        return f"<RemoteRun {self.id} {self.status}>"

    def record(self) -> dict[str, Any]:
        """The run's record now (status, progress, spec, timings)."""
        self._record = self._client._json("GET", f"api/runs/{_seg(self.id)}",
                                          query={"items": 0})
        return self._record

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed, cancelled or interrupted."""
        return self.record()["status"]

    @property
    def progress(self) -> dict[str, Any]:
        """{"done", "total", "fraction", "succeeded", "failed"}."""
        return self.record()["progress"]

    def events(self) -> Iterator[dict[str, Any]]:
        """The run's record each time it changes, until it ends (server-sent events)."""
        yield from self._client._events("GET", f"api/runs/{_seg(self.id)}/events")

    def wait(self, on_progress: Callable[[dict[str, Any]], None] | None = None,
             timeout: float | None = None) -> RemoteRun:
        """Follow the run until it ends; `on_progress` gets each record on the way."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            for rec in self.events():
                self._record = rec
                if on_progress is not None:
                    on_progress(rec)
            if self._record and self._record.get("status") in FINISHED:
                return self
            if end is not None and time.monotonic() > end:
                raise TimeoutError(f"run {self.id} still {self._record.get('status')} "
                                   f"after {timeout} s")

    def cancel(self) -> RemoteRun:
        """Ask the server to stop the run."""
        self._client._json("POST", f"api/runs/{_seg(self.id)}/cancel")
        return self

    def resume(self) -> RemoteRun:
        """Finish an interrupted run (only items without a result)."""
        self._record = self._client._json("POST", f"api/runs/{_seg(self.id)}/resume")
        return self

    def results(self) -> list[dict[str, Any]]:
        """Every item: idx, inputs, output, status, error, tokens."""
        with self._client._request("GET", f"api/runs/{_seg(self.id)}/export",
                                   query={"format": "jsonl"}) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line]


def _download(client: Any, path: str, dest: str | Path, fmt: str | None) -> Path:
    dest = Path(dest)
    fmt = fmt or dest.suffix.lstrip(".").lower() or None
    with client._request("GET", path, query={"format": fmt}) as r, dest.open("wb") as f:
        while piece := r.read(1 << 20):
            f.write(piece)
    return dest
