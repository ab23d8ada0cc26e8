"""What every LLMOS handler does, whichever host serves it: JSON in and out, errors as
OpenAI's error body, server-sent events, slow work off the event loop, and generation
through a model's scheduler with the client's disconnect freeing its rows.

Handlers are written once as mixins over this class; `routes.build` combines each with a
host's base class (Jupyter's authenticated APIHandler, or the standalone server's
bearer-key handler), so both hosts serve the same code.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.iostream import StreamClosedError

from llmos_jupyter.core.params import GenerationParams
from llmos_jupyter.errors import LLMOSError, NotFoundError
from llmos_jupyter.runtime.scheduler import Event, QueueFullError, Request, Scheduler
from llmos_jupyter.runtime.serving import Serving
from llmos_jupyter.server.protocol import APIError, finish_reason

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 2**20  # a request body larger than this is refused (413)
RETRY_AFTER_S = 1  # what a 429 asks the client to wait


class ClientGone(Exception):
    """The client closed the connection; its requests were cancelled."""


def as_api_error(e: BaseException) -> APIError:
    """The HTTP error a client sees for exception `e` (500 without details for bugs)."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, QueueFullError):
        return APIError(429, str(e), code="queue_full")
    if isinstance(e, NotFoundError):
        return APIError(404, str(e), code=f"{e.kind}_not_found")
    if isinstance(e, LLMOSError):
        return APIError(400, str(e))
    return APIError(500, "internal server error; the server log has the details")


class LLMOSHandler:
    """Mixin of every LLMOS handler (tornado.web.RequestHandler methods are on the host)."""

    request: Any
    settings: dict[str, Any]
    _inflight: list[Request]

    @property
    def serving(self) -> Serving:
        """The host's schedulers (one per served model)."""
        return self.settings["llmos_serving"]

    # --- JSON ---------------------------------------------------------------------------

    def body_json(self) -> Any:
        """The request body decoded; APIError 400/413 for a malformed or huge body."""
        raw = self.request.body or b""
        if len(raw) > MAX_BODY_BYTES:
            raise APIError(413, f"request body of {len(raw)} bytes is over the limit of "
                           f"{MAX_BODY_BYTES} bytes")
        try:
            return json.loads(raw or b"null")
        except (ValueError, RecursionError) as e:
            raise APIError(400, f"the request body is not valid JSON: {e}") from None

    def send_json(self, obj: Any, status: int = 200) -> None:
        """Finish with `obj` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as OpenAI's body; a QueueFullError adds Retry-After."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if exc is None or getattr(exc, "status_code", None) is not None:
            err = APIError(status_code, getattr(exc, "log_message", None)
                           or self._reason or "error")
        else:
            err = as_api_error(exc)
        if err.status == 429:
            self.set_header("Retry-After", str(RETRY_AFTER_S))
        self.clear_header("Content-Type")
        self.set_status(err.status)
        self.send_json(err.body(), err.status)

    def log_exception(self, typ, value, tb) -> None:  # noqa: ANN001 - tornado's signature
        """Bugs get a traceback in the log; errors a client caused get one line."""
        if isinstance(value, (LLMOSError, ClientGone)) or getattr(value, "status_code", 0):
            log.info("%s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)  # type: ignore[misc]

    # --- work off the loop ----------------------------------------------------------------

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a slow call (model load, tokenization, store I/O) in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # --- server-sent events ---------------------------------------------------------------

    def sse_start(self) -> None:
        """Headers of an event stream."""
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

    async def sse_send(self, obj: Any) -> None:
        """One `data:` event; ClientGone when the client has left."""
        try:
            self.write(f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n")
            await self.flush()
        except StreamClosedError:
            self._cancel_inflight()
            raise ClientGone() from None

    async def sse_comment(self, text: str) -> None:
        """An SSE comment line (clients ignore it); ClientGone when the client has left."""
        try:
            self.write(f": {text}\n\n")
            await self.flush()
        except StreamClosedError:
            raise ClientGone() from None

    async def end_stream(self, done: list[Request],
                         finish_chunk: Callable[[int, str], dict[str, Any]],
                         usage_chunk: dict[str, Any] | None) -> None:
        """Close an OpenAI stream: each choice's finish_reason, the usage chunk when asked
        for, `data: [DONE]`."""
        for i, r in enumerate(done):
            await self.sse_send(finish_chunk(i, finish_reason(r.result.finish_reason)))
        if usage_chunk is not None:
            await self.sse_send(usage_chunk)
        await self.sse_send("[DONE]")
        self.finish()

    # --- generation -------------------------------------------------------------------------

    async def generate(
        self, scheduler: Scheduler, prompts: list[list[int]], params: list[GenerationParams],
        on_piece: Callable[[int, Event], Awaitable[None]] | None = None,
        top_logprobs: int | None = None, json_object: bool = False,
    ) -> list[Request]:
        """Run prompts[i] with params[i] through the scheduler as choices 0..n-1; await
        on_piece(i, event) for each text piece; return the finished requests (`.result`,
        `.seq.logprobs`). A client that leaves cancels every choice (its rows are freed at
        the next step)."""
        context = scheduler.loaded.config.max_seq_len
        for ids in prompts:
            if len(ids) >= context:
                raise APIError(400, f"the prompt has {len(ids)} tokens but the model's context "
                               f"is {context}; shorten it to at most {context - 1} tokens",
                               param="messages", code="context_length_exceeded")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        self._inflight = []
        try:
            for i, (p, prm) in enumerate(zip(prompts, params, strict=True)):
                self._inflight.append(scheduler.submit(
                    p, prm, lambda ev, i=i: loop.call_soon_threadsafe(events.put_nowait, (i, ev)),
                    top_logprobs, json_object))
        except BaseException:
            self._cancel_inflight()
            raise
        pending = len(prompts)
        try:
            while pending:
                i, ev = await events.get()
                if ev.error is not None:
                    raise ev.error
                if ev.result is not None:
                    pending -= 1
                if on_piece is not None and (ev.piece or ev.logprobs):
                    await on_piece(i, ev)
        except BaseException:
            self._cancel_inflight()
            raise
        return list(self._inflight)

    def _cancel_inflight(self) -> None:
        for req in getattr(self, "_inflight", []):
            req.cancel()

    def on_connection_close(self) -> None:
        """The client left: free its rows now rather than at the next write."""
        self._cancel_inflight()
        super().on_connection_close()  # type: ignore[misc]  # the host's RequestHandler
