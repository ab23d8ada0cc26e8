"""OpenAI-compatible request and response shapes, with their defaults and limits.

Handlers stay thin: they parse a body with `ChatRequest.parse` / `CompletionRequest.parse`
(which raise `APIError` naming the bad field, in OpenAI's error body), hand the prompt and
`GenerationParams` to a scheduler, and build replies with the `*_chunk` / `*_response`
helpers here. Unknown fields are ignored, as OpenAI clients send extras (`user`, ...).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmos_jupyter.errors import LLMOSError

MAX_N = 16  # choices per request: each is a row of the batch
MAX_STOP = 4  # OpenAI's limit on stop strings
MAX_TOP_LOGPROBS = 20  # chat's top_logprobs
MAX_COMPLETION_LOGPROBS = 5  # completions' logprobs


class APIError(LLMOSError):
    """An HTTP error with OpenAI's body: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, err_type: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code
        self.type = err_type or _ERROR_TYPES.get(status, "server_error")

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": {"message": str(self), "type": self.type, "param": self.param,
                          "code": self.code}}


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "invalid_request_error",
                429: "rate_limit_error", 503: "server_error"}


def _get(body: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any = None) -> Any:
    """body[name] if it is one of `kinds` (bool is never an int here), else APIError 400."""
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in kinds:
        value = object()  # fall through to the type error
    if not isinstance(value, kinds):
        names = " or ".join("number" if k is float else k.__name__ for k in kinds)
        raise APIError(400, f"'{name}' must be {names}, got {value!r:.60}", param=name)
    return value


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = _get(body, name, (int, float))
    if value is not None and not lo <= value <= hi:
        raise APIError(400, f"'{name}' must be between {lo} and {hi}, got {value}", param=name)
    return value


def _count(body: dict[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    value = _get(body, name, (int,))
    if value is not None and (value < lo or (hi is not None and value > hi)):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise APIError(400, f"'{name}' must be {bound}, got {value}", param=name)
    return value


@dataclass
class Sampling:
    """The sampling fields shared by chat and completion requests."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    stream: bool = False
    include_usage: bool = False
    ignore_eos: bool = False  # vLLM's extra field: generate max_tokens whatever comes
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    top_logprobs: int | None = None  # None: no logprobs; k: each token's and the top k
    json_object: bool = False  # response_format json_object / json_schema: constrained
    json_schema: dict[str, Any] | None = None  # json_schema: the shape answers must have

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Sampling:
        """Read and check the sampling fields of a request body."""
        max_tokens = _count(body, "max_completion_tokens", 1)
        if max_tokens is None:
            max_tokens = _count(body, "max_tokens", 1)
        stop = _get(body, "stop", (str, list), [])
        stop = [stop] if isinstance(stop, str) else stop
        if len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
            raise APIError(400, f"'stop' must be a string or a list of at most {MAX_STOP} "
                           "non-empty strings", param="stop")
        seed = _get(body, "seed", (int,))
        if seed is not None and not -2**63 <= seed < 2**63:
            raise APIError(400, "'seed' must fit in 64 bits", param="seed")
        options = _get(body, "stream_options", (dict,), {})
        return cls(
            max_tokens=max_tokens,
            temperature=_number(body, "temperature", 0.0, 2.0),
            top_p=_number(body, "top_p", 0.0, 1.0),
            stop=stop, seed=seed,
            n=_count(body, "n", 1, MAX_N) or 1,
            stream=bool(_get(body, "stream", (bool,), False)),
            include_usage=bool(_get(options, "include_usage", (bool,), False)),
            ignore_eos=bool(_get(body, "ignore_eos", (bool,), False)),
            presence_penalty=_number(body, "presence_penalty", -2.0, 2.0),
            frequency_penalty=_number(body, "frequency_penalty", -2.0, 2.0),
            **_response_format(body),
        )

    def read_chat_logprobs(self, body: dict[str, Any]) -> None:
        """Chat's `logprobs: bool` + `top_logprobs: 0..20` (which needs logprobs)."""
        top = _count(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
        if _get(body, "logprobs", (bool,), False):
            self.top_logprobs = top or 0
        elif top is not None:
            raise APIError(400, "'top_logprobs' needs 'logprobs': true", param="top_logprobs")

    def read_completion_logprobs(self, body: dict[str, Any]) -> None:
        """Completions' `logprobs: 0..5` (the number of top tokens per position)."""
        self.top_logprobs = _count(body, "logprobs", 0, MAX_COMPLETION_LOGPROBS)

    def overrides(self) -> dict[str, Any]:
        """The settings to lay over the model's (preset's) defaults; None = keep default."""
        top_p = self.top_p
        if top_p == 0.0:  # OpenAI accepts 0; the nearest meaning is "only the top token"
            top_p = 1e-9
        return {"max_tokens": self.max_tokens, "temperature": self.temperature,
                "top_p": top_p, "stop": self.stop or None, "seed": self.seed,
                "ignore_eos": self.ignore_eos or None,
                "presence_penalty": self.presence_penalty,
                "frequency_penalty": self.frequency_penalty}


def _response_format(body: dict[str, Any]) -> dict[str, Any]:
    """response_format: {"type": "text" | "json_object" | "json_schema", "json_schema":
    {"name", "schema", "strict"}} as Sampling fields."""
    fmt = _get(body, "response_format", (dict,), {"type": "text"})
    kind = fmt.get("type", "text")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"json_object": True}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise APIError(400, "response_format json_schema needs "
                           '{"json_schema": {"name": ..., "schema": {...}}}',
                           param="response_format")
        if schema.get("type", "object") != "object":
            raise APIError(400, "response_format json_schema: the top-level schema must "
                           "describe an object", param="response_format")
        return {"json_object": True, "json_schema": schema}
    raise APIError(400, f"response_format type {kind!r} is not one of text, json_object, "
                   "json_schema", param="response_format")


@dataclass
class ChatRequest:
    """POST /v1/chat/completions."""

    model: str
    messages: list[dict[str, str]]
    sampling: Sampling

    @classmethod
    def parse(cls, body: Any) -> ChatRequest:
        """Check a decoded JSON body; raise APIError 400 naming the field at fault."""
        body = _object(body)
        model = _model(body)
        messages = _get(body, "messages", (list,))
        if not messages:
            raise APIError(400, "'messages' must be a non-empty list of "
                           "{role, content} objects", param="messages")
        sampling = Sampling.parse(body)
        sampling.read_chat_logprobs(body)
        return cls(model, [_message(m, i) for i, m in enumerate(messages)], sampling)


@dataclass
class CompletionRequest:
    """POST /v1/completions (one prompt string, or a list of them)."""

    model: str
    prompts: list[str]
    sampling: Sampling

    @classmethod
    def parse(cls, body: Any) -> CompletionRequest:
        """Check a decoded JSON body; raise APIError 400 naming the field at fault."""
        body = _object(body)
        model = _model(body)
        prompt = _get(body, "prompt", (str, list))
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not prompts or not all(isinstance(p, str) and p for p in prompts):
            raise APIError(400, "'prompt' must be a non-empty string or a list of them",
                           param="prompt")
        sampling = Sampling.parse(body)
        sampling.read_completion_logprobs(body)
        if len(prompts) * sampling.n > MAX_N:
            raise APIError(400, f"at most {MAX_N} completions per request "
                           f"(prompts x n = {len(prompts) * sampling.n})", param="n")
        return cls(model, prompts, sampling)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def _model(body: dict[str, Any]) -> str:
    model = _get(body, "model", (str,))
    if not model:
        raise APIError(400, "'model' is required: a model or preset name from GET /v1/models",
                       param="model")
    return model


def _message(m: Any, i: int) -> dict[str, str]:
    """One chat message as {role, content: str}; content parts of type text are joined."""
    param = f"messages[{i}]"
    if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant",
                                                        "developer"):
        raise APIError(400, f"{param} must be an object with a role of system, user, "
                       "assistant or developer", param=param)
    content = m.get("content")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text"
                   and isinstance(p.get("text"), str) for p in content):
            raise APIError(400, f"{param}.content: only text parts are supported",
                           param=f"{param}.content")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise APIError(400, f"{param}.content must be a string", param=f"{param}.content")
    role = "system" if m["role"] == "developer" else m["role"]
    return {"role": role, "content": content}


# --- replies ------------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    """A response id like OpenAI's ("chatcmpl-...", "cmpl-...")."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
          ) -> dict[str, Any]:
    """OpenAI's usage object (cached_tokens: prompt tokens whose prefill was skipped)."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


def chat_chunk(rid: str, model: str, created: int, index: int, delta: dict[str, Any],
               finish_reason: str | None = None,
               logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """One `chat.completion.chunk` of a stream."""
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                         "finish_reason": finish_reason}]}


def completion_chunk(rid: str, model: str, created: int, index: int, text: str,
                     finish_reason: str | None = None,
                     logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    """One streamed `text_completion` object."""
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "logprobs": logprobs,
                         "finish_reason": finish_reason}]}


TokenBytes = Callable[[int], bytes]


def _token(token_bytes: TokenBytes, token: int) -> tuple[str, list[int]]:
    raw = token_bytes(token)
    return raw.decode("utf-8", errors="replace"), list(raw)


def chat_logprobs(entries: list[Any], token_bytes: TokenBytes) -> dict[str, Any]:
    """Chat's `logprobs` object for TokenLogprob entries: {"content": [...]}."""
    content = []
    for e in entries:
        text, raw = _token(token_bytes, e.token)
        top = []
        for tid, lp in e.top:
            t_text, t_raw = _token(token_bytes, tid)
            top.append({"token": t_text, "logprob": lp, "bytes": t_raw})
        content.append({"token": text, "logprob": e.logprob, "bytes": raw,
                        "top_logprobs": top})
    return {"content": content}


def completion_logprobs(entries: list[Any], token_bytes: TokenBytes,
                        offset: int = 0) -> dict[str, Any]:
    """Completions' `logprobs` object: tokens, token_logprobs, top_logprobs, text_offset
    (offsets count characters from `offset`)."""
    out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                           "text_offset": []}
    for e in entries:
        text, _ = _token(token_bytes, e.token)
        out["tokens"].append(text)
        out["token_logprobs"].append(e.logprob)
        out["top_logprobs"].append({_token(token_bytes, t)[0]: lp for t, lp in e.top})
        out["text_offset"].append(offset)
        offset += len(text)
    return out


def finish_reason(ours: str) -> str:
    """OpenAI's finish_reason for ours ("cancelled" never reaches a client that stayed)."""
    return {"stop": "stop", "length": "length"}.get(ours, "stop")


def now() -> int:
    """`created`: seconds since the epoch."""
    return int(time.time())
