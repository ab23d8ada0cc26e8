"""`llmos.Client`: the LLMOS server from Python, with the in-process API's names.

A thin HTTP client (standard library only: no torch, no third-party packages), for a
script on another machine or a process that should not load models itself:

    client = llmos.Client("http://127.0.0.1:8765", api_key="KEY")
    client.models.list()
    client.chat("smollm2-135m-instruct", [{"role": "user", "content": "Hi!"}]).text
    for piece in client.generate("smollm2-135m-instruct", "Once upon a time", stream=True):
        print(piece, end="")
    client.invoke("summarize", text="...").output
    client.datasets.add("reviews", "reviews.jsonl")
    run = client.run("classify", data="reviews", map={"text": "body"},
                     labels="positive, negative")
    run.wait(); run.results()

Inside Jupyter the routes live under {base_url}llmos/: pass that as the base URL and the
server's token as api_key. Errors are `ClientError`s carrying the server's status and
message.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from llmos_jupyter.client_resources import (
    ClientError,
    Datasets,
    Models,
    RemoteRun,
    Runs,
    Tasks,
    _given,
    _seg,
)
from llmos_jupyter.core.params import SETTINGS


@dataclass
class Completion:
    """A finished generation: text, finish_reason, usage (as GenerationResult has)."""

    text: str
    finish_reason: str
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class TaskOutput:
    """What `invoke` returns: the task's parsed output, its text, the run id and usage."""

    output: Any
    text: str | None
    run_id: str
    usage: dict[str, int] | None = None




class Client:
    """An LLMOS server at `base_url` (`llmos serve`, or Jupyter's `{base_url}llmos/`)."""

    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float = 600.0) -> None:
        parts = urllib.parse.urlsplit(base_url if isinstance(base_url, str) else "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"llmos.Client: base_url {base_url!r} is not an http(s) URL; "
                             "give the server's address, e.g. http://127.0.0.1:8765 (or "
                             "http://HOST:8888/llmos/ for a Jupyter server)")
        self.base_url = base_url.rstrip("/") + "/"
        self.api_key = api_key
        self.timeout = timeout
        self.models = Models(self)
        self.datasets = Datasets(self)
        self.tasks = Tasks(self)
        self.runs = Runs(self)

    def __repr__(self) -> str:
        return f"<llmos.Client {self.base_url}>"

    # --- generation --------------------------------------------------------------------

    def generate(self, model: str, prompt: str, *, stream: bool = False,
                 **params: Any) -> Completion | Iterator[str]:
        """Continue `prompt` (POST /v1/completions). Keyword params: max_tokens,
        temperature, top_p, stop, seed, presence_penalty, frequency_penalty. With
        stream=True returns an iterator of text pieces."""
        body = {"model": model, "prompt": prompt, **params}
        if stream:
            return self._pieces("v1/completions", body, lambda c: c.get("text") or "")
        out = self._json("POST", "v1/completions", body)
        choice = out["choices"][0]
        return Completion(choice["text"], choice["finish_reason"], out.get("usage", {}))

    def chat(self, model: str, messages: list[dict[str, str]], *, stream: bool = False,
             **params: Any) -> Completion | Iterator[str]:
        """Answer a conversation (POST /v1/chat/completions); same params as generate."""
        body = {"model": model, "messages": messages, **params}
        if stream:
            return self._pieces("v1/chat/completions", body,
                                lambda c: (c.get("delta") or {}).get("content") or "")
        out = self._json("POST", "v1/chat/completions", body)
        choice = out["choices"][0]
        return Completion(choice["message"]["content"], choice["finish_reason"],
                          out.get("usage", {}))

    def invoke(self, task: str, *, model: str | None = None,
               params: dict[str, Any] | None = None, **inputs: Any) -> TaskOutput:
        """Run a task on one set of inputs (POST /api/tasks/{task}/invoke)."""
        body: dict[str, Any] = {"inputs": inputs}
        if model is not None:
            body["model"] = model
        if params is not None:
            body["params"] = params
        out = self._json("POST", f"api/tasks/{urllib.request.quote(task, safe='')}/invoke",
                         body)
        return TaskOutput(out["output"], out.get("text"), out["run_id"], out.get("usage"))

    def run(self, task: str, *, data: str | None = None, map: dict[str, str] | None = None,  # noqa: A002
            model: str | None = None, limit: int | None = None,
            **inputs_and_params: Any) -> RemoteRun | dict[str, Any]:
        """Run a task (POST /api/tasks/{task}/run): over every row of dataset `data`, it
        returns a `RemoteRun` at once (the server runs it); on one set of inputs, the
        finished result {"run_id", "status", "output"}. Keywords that are sampling
        settings (temperature, max_tokens, ...) set those; the others are task inputs."""
        body: dict[str, Any] = {"data": data, "map": map, "model": model, "limit": limit}
        inputs = {k: v for k, v in inputs_and_params.items() if k not in SETTINGS}
        body.update({k: v for k, v in inputs_and_params.items() if k in SETTINGS})
        if inputs:
            body["input"] = {k: v if isinstance(v, str) else json.dumps(v)
                             for k, v in inputs.items()}
        out = self._json("POST", f"api/tasks/{_seg(task)}/run", _given(body))
        return RemoteRun(self, out["id"], out) if data is not None else out

    def train(self, model: str, *, data: str, **options: Any) -> RemoteRun:
        """Fine-tune `model` on dataset `data` in the server (POST /api/train); options as
        `llmos.train`'s (output, method, steps, batch_size, seq_len, lr, ...)."""
        out = self._json("POST", "api/train", {"model": model, "data": data, **options})
        return RemoteRun(self, out.get("run_id") or out["id"], out)

    def evaluate(self, task: str, *, data: str, label: str, model: str | None = None,
                 map: dict[str, str] | None = None,  # noqa: A002
                 limit: int | None = None) -> dict[str, Any]:
        """Score a task against labelled data (POST /api/tasks/{task}/eval): accuracy,
        per label, failures."""
        return self._json("POST", f"api/tasks/{_seg(task)}/eval", _given(
            {"data": data, "label": label, "model": model, "map": map, "limit": limit}))

    def health(self) -> dict[str, Any]:
        """GET /health: {"status": "ok", "models": [...]}."""
        return self._json("GET", "health")

    # --- HTTP ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None,
                 query: dict[str, Any] | None = None, raw: bytes | BinaryIO | None = None,
                 ) -> Any:
        headers = {"Content-Type": "application/octet-stream" if raw is not None
                   else "application/json"}
        if raw is not None and not isinstance(raw, bytes):  # a file: sent as it is read
            headers["Content-Length"] = str(os.fstat(raw.fileno()).st_size - raw.tell())
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if query:
            given = {k: str(v).lower() if isinstance(v, bool) else v
                     for k, v in query.items() if v is not None}
            path += "?" + urllib.parse.urlencode(given)
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310 - our URL
        except urllib.error.HTTPError as e:
            raise _client_error(e) from None
        except urllib.error.URLError as e:
            raise ClientError(0, f"cannot reach the LLMOS server at {self.base_url}: "
                              f"{e.reason}; is `llmos serve` running?") from None

    def _json(self, method: str, path: str, body: Any = None,
              query: dict[str, Any] | None = None, raw: bytes | BinaryIO | None = None,
              ) -> Any:
        with self._request(method, path, body, query, raw) as r:
            return json.loads(r.read())

    def _events(self, method: str, path: str, body: Any = None) -> Iterator[Any]:
        """The JSON of each `data:` event of a server-sent event stream, until its end
        (OpenAI's `data: [DONE]`, or the server closing it); closing the iterator closes
        the connection."""
        with self._request(method, path, body) as r:
            for raw in r:
                line = raw.decode().strip()
                if line == "data: [DONE]":
                    return
                if line.startswith("data: "):
                    yield json.loads(line[6:])

    def _pieces(self, path: str, body: dict[str, Any], text_of) -> Iterator[str]:  # noqa: ANN001
        """Text pieces of a streamed (SSE) answer; closing the iterator closes the
        connection, which stops the generation on the server."""
        for chunk in self._events("POST", path, {**body, "stream": True}):
            for choice in chunk.get("choices", []):
                piece = text_of(choice)
                if piece:
                    yield piece


def _client_error(e: urllib.error.HTTPError) -> ClientError:
    try:
        err = json.loads(e.read()).get("error", {})
        return ClientError(e.code, err.get("message") or e.reason, err.get("code"))
    except (ValueError, AttributeError):
        return ClientError(e.code, str(e.reason))
