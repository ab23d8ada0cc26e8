"""One scheduler thread per loaded model: requests from any thread share its decode steps.

Callers (server handlers, SDK calls in one process) `submit` token ids with their
settings and get a `Request` back at once; the scheduler thread forms the batch every
step (`engine.continuous.InflightBatch`): newcomers join at the next step, finished or
cancelled requests leave at once, and nobody waits for anybody else's answer. Events
(text pieces, then the final result) go to each request's listener from the scheduler
thread, so an asyncio server hands them to its loop with `call_soon_threadsafe` and the
loop never blocks on the model.

Admission is bounded: at most `max_rows` decode together and `max_queue` more wait;
past that `submit` raises QueueFullError (an HTTP server answers 429 with Retry-After).
While it has work the thread holds the model's lock, so in-process callers of the same
model (a notebook's `generate`) wait for the batch to drain rather than clobber its KV
cache; when idle it holds nothing.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llmos_jupyter.core.params import GenerationParams
from llmos_jupyter.engine.continuous import InflightBatch, Sequence, TokenLogprob
from llmos_jupyter.engine.generate import GenerationResult
from llmos_jupyter.errors import LLMOSError


class QueueFullError(LLMOSError):
    """The scheduler already holds as many requests as it may; retry after a moment."""


@dataclass
class Event:
    """What a request's listener receives: a text piece, or (last) the whole result.
    `logprobs` holds the tokens sampled since the previous event (when asked for)."""

    piece: str = ""
    result: GenerationResult | None = None
    error: BaseException | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)


Listener = Callable[[Event], None]


@dataclass(eq=False)
class Request:
    """One submitted generation. `events()` iterates its pieces in the caller's thread
    (when no listener was given); `cancel()` ends it at the next step."""

    scheduler: Scheduler
    prompt: list[int]
    params: GenerationParams
    listener: Listener
    top_logprobs: int | None = None
    json_object: bool = False
    logprobs_sent: int = 0  # how many of seq.logprobs earlier events carried
    submitted: float = field(default_factory=time.perf_counter)
    last_piece: float | None = None  # when the latest piece came (latency stats)
    seq: Sequence | None = None
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None
    error: BaseException | None = None
    _queue: queue.SimpleQueue | None = None

    def cancel(self) -> None:
        """Stop generating (a client went away); the result says "cancelled"."""
        self.cancelled = True
        self.scheduler._wake.set()

    def events(self) -> Iterator[Event]:
        """Pieces as they come, then the final Event (blocking; own-queue requests only)."""
        if self._queue is None:
            raise RuntimeError("this request delivers its events to a listener")
        while True:
            ev = self._queue.get()
            yield ev
            if ev.result is not None or ev.error is not None:
                return

    def wait(self, timeout: float | None = None) -> GenerationResult:
        """Block until the request is finished; return its result (re-raising its error)."""
        if not self.done.wait(timeout):
            raise TimeoutError("generation still running")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


RECENT = 10_000  # latency samples kept for the histograms


@dataclass
class Stats:
    """Counters the server exports at /metrics (read without a lock: ints, and deques
    copied whole by sorted() under the GIL)."""

    requests: int = 0
    rejected: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cancelled: int = 0  # requests ended by cancel() (clients that left)
    steps: int = 0
    rows_stepped: int = 0  # sum over steps of the rows decoded: occupancy = rows / steps
    ttft_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    inter_token_s: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))



class Scheduler:
    """Continuous batching for one LoadedModel-like object (model, tokenizer, lock)."""

    def __init__(self, loaded: Any, max_rows: int = 32, max_queue: int = 64) -> None:
        self.loaded = loaded
        self.max_rows, self.max_queue = max_rows, max_queue
        self.batch = InflightBatch(loaded.model, loaded.tokenizer, max_rows=max_rows)
        self.stats = Stats()
        self._inbox: list[Request] = []
        self._active: dict[int, Request] = {}  # Sequence.id -> request
        self._mutex = threading.Lock()  # guards _inbox and the admission count
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"llmos-scheduler-{loaded.name}",
                                        daemon=True)
        self._thread.start()

    # --- callers' side -----------------------------------------------------------------

    @property
    def load(self) -> int:
        """Requests admitted and not finished (waiting or decoding)."""
        with self._mutex:
            return len(self._inbox) + len(self._active)

    def submit(self, prompt: list[int], params: GenerationParams,
               listener: Listener | None = None, top_logprobs: int | None = None,
               json_object: bool = False) -> Request:
        """Queue a generation; returns at once. Raises QueueFullError when the scheduler
        is full, ConfigError / PromptError for bad settings or a prompt that cannot fit.
        top_logprobs, json_object: see InflightBatch.add."""
        params.validate()
        req = Request(self, list(prompt), params, listener or (lambda ev: None), top_logprobs,
                      json_object)
        if listener is None:
            req._queue = queue.SimpleQueue()
            req.listener = req._queue.put
        with self._mutex:
            if self._stopping:
                raise QueueFullError("the server is shutting down; retry elsewhere")
            if len(self._inbox) + len(self._active) >= self.max_rows + self.max_queue:
                self.stats.rejected += 1
                raise QueueFullError(
                    f"model {self.loaded.name} is busy ({self.max_rows} requests decoding, "
                    f"{self.max_queue} waiting); retry in a moment")
            self._inbox.append(req)
            self.stats.requests += 1
        self._wake.set()
        return req

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, let the admitted ones finish, stop the thread."""
        with self._mutex:
            self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    # --- the scheduler thread -------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._mutex:
                if self._stopping and not self._inbox and not self._active:
                    return
            if not self._inbox and not self._active:
                continue
            with self.loaded.lock:  # the KV cache is ours until the batch drains
                while self._admit_inbox() or self._active:
                    self._step()
            if self._stopping:
                self._wake.set()

    def _admit_inbox(self) -> bool:
        """Move submitted requests into the batch; True when any came in."""
        with self._mutex:
            new, self._inbox = self._inbox, []
        for req in new:
            try:
                req.seq = self.batch.add(req.prompt, req.params, req.top_logprobs,
                                         req.json_object)
            except Exception as e:  # a bad prompt fails that request alone
                self._end(req, error=e)
                continue
            self._active[req.seq.id] = req
            self.stats.prompt_tokens += len(req.prompt)
        return bool(new)

    def _step(self) -> None:
        for req in self._active.values():
            if req.cancelled and req.seq is not None:
                self.batch.cancel(req.seq)
        try:
            rows = len(self.batch.running)
            out = self.batch.step()
        except Exception as e:  # the model failed: every request in flight learns why
            for req in list(self._active.values()):
                self._end(req, error=e)
            self._active.clear()
            self.batch = InflightBatch(self.loaded.model, self.loaded.tokenizer,
                                       max_rows=self.max_rows)
            return
        now = time.perf_counter()
        self.stats.steps += 1
        self.stats.rows_stepped += rows
        for seq, piece in out:
            req = self._active[seq.id]
            self._record_latency(req, now)
            req.listener(Event(piece=piece, logprobs=self._new_logprobs(req)))
        for sid, req in list(self._active.items()):
            if req.seq is not None and req.seq.finished:
                del self._active[sid]
                self.stats.completion_tokens += len(req.seq.result.token_ids)
                self.stats.cancelled += req.seq.result.finish_reason == "cancelled"
                self._end(req, result=req.seq.result)

    def _record_latency(self, req: Request, now: float) -> None:
        if req.last_piece is None:
            self.stats.ttft_s.append(now - req.submitted)
        else:
            self.stats.inter_token_s.append(now - req.last_piece)
        req.last_piece = now

    @staticmethod
    def _new_logprobs(req: Request) -> list[TokenLogprob]:
        if req.seq is None or not req.seq.logprobs:
            return []
        new = req.seq.logprobs[req.logprobs_sent:]
        req.logprobs_sent = len(req.seq.logprobs)
        return new

    def _end(self, req: Request, result: GenerationResult | None = None,
             error: BaseException | None = None) -> None:
        req.result, req.error = result, error
        req.done.set()
        req.listener(Event(result=result, error=error, logprobs=self._new_logprobs(req)))

