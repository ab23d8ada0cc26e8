"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions.

Model ids are catalog names, presets included: a preset's system prompt and sampling
defaults apply, and the request's fields override them. Each choice (`n`, or each prompt
of a completion request) is one row of the model's continuous batch.
"""

from __future__ import annotations

import json
from typing import Any

from llmos_jupyter.core.params import GenerationParams
from llmos_jupyter.engine.continuous import TokenLogprob
from llmos_jupyter.runtime.scheduler import Event, Request
from llmos_jupyter.runtime.services import services
from llmos_jupyter.server import protocol as p
from llmos_jupyter.server.base import LLMOSHandler
from llmos_jupyter.server.json_schema import schema_errors
from llmos_jupyter.server.protocol import APIError


def choice_params(base: GenerationParams, n: int) -> list[GenerationParams]:
    """n copies of `base`; with a seed, choice i samples with seed + i (distinct answers
    that are each reproducible), as a batch's row i would."""
    if base.seed is None:
        return [base] * n
    return [base.replace(seed=base.seed + i) for i in range(n)]


class ModelsHandler(LLMOSHandler):
    """GET /v1/models: every model and preset in the store."""

    async def get(self) -> None:
        records = await self.in_thread(lambda: services().models.list())
        self.send_json({"object": "list", "data": [
            {"id": r.name, "object": "model", "created": _epoch(r.created_at),
             "owned_by": "llmos"} for r in records]})


class ChatCompletionsHandler(LLMOSHandler):
    """POST /v1/chat/completions, streamed (SSE) or not."""

    async def post(self) -> None:
        req = p.ChatRequest.parse(self.body_json())
        scheduler = await self.in_thread(self.serving.scheduler, req.model)
        loaded = scheduler.loaded
        ids = await self.in_thread(loaded.encode_chat, req.messages)
        params = loaded.params(req.sampling.overrides())
        n, top = req.sampling.n, req.sampling.top_logprobs
        tb = loaded.tokenizer.token_bytes
        logprobs = None if top is None else (lambda entries: p.chat_logprobs(entries, tb))
        rid, created = p.new_id("chatcmpl"), p.now()
        fmt = req.sampling
        if not req.sampling.stream:
            done = await self.generate(scheduler, [ids] * n, choice_params(params, n),
                                       top_logprobs=top, json_object=fmt.json_object)
            if fmt.json_schema is not None:
                check_schema(done, fmt.json_schema)
            self.send_json({
                "id": rid, "object": "chat.completion", "created": created,
                "model": req.model, "system_fingerprint": None,
                "choices": [{"index": i, "message": {"role": "assistant",
                                                     "content": r.result.text},
                             "logprobs": logprobs and logprobs(_text_logprobs(r)),
                             "finish_reason": p.finish_reason(r.result.finish_reason)}
                            for i, r in enumerate(done)],
                "usage": _usage(len(ids), done)})
            return
        self.sse_start()
        for i in range(n):
            await self.sse_send(p.chat_chunk(rid, req.model, created, i,
                                             {"role": "assistant", "content": ""}))

        async def piece(i: int, ev: Event) -> None:
            entries = _text_logprobs(self._inflight[i], ev.logprobs, ev.result is not None)
            if not ev.piece and not entries:
                return
            await self.sse_send(p.chat_chunk(rid, req.model, created, i,
                                             {"content": ev.piece} if ev.piece else {},
                                             logprobs=logprobs and logprobs(entries)))

        done = await self.generate(scheduler, [ids] * n, choice_params(params, n), piece, top,
                                   fmt.json_object)
        await self.end_stream(
            done, lambda i, reason: p.chat_chunk(rid, req.model, created, i, {}, reason),
            {"id": rid, "object": "chat.completion.chunk", "created": created,
             "model": req.model, "choices": [], "usage": _usage(len(ids), done)}
            if fmt.include_usage else None)


class CompletionsHandler(LLMOSHandler):
    """POST /v1/completions: plain continuation of each prompt, streamed or not."""

    async def post(self) -> None:
        req = p.CompletionRequest.parse(self.body_json())
        scheduler = await self.in_thread(self.serving.scheduler, req.model)
        loaded = scheduler.loaded
        encoded = await self.in_thread(lambda: [loaded.encode_prompt(t) for t in req.prompts])
        params = choice_params(loaded.params(req.sampling.overrides()), req.sampling.n)
        # Choice index = prompt index * n + j, as OpenAI numbers them.
        prompts = [ids for ids in encoded for _ in range(req.sampling.n)]
        all_params = params * len(encoded)
        n_prompt = sum(len(ids) for ids in encoded)
        top, tb = req.sampling.top_logprobs, loaded.tokenizer.token_bytes
        rid, created = p.new_id("cmpl"), p.now()
        json_object = req.sampling.json_object
        if not req.sampling.stream:
            done = await self.generate(scheduler, prompts, all_params, top_logprobs=top,
                                       json_object=json_object)
            if req.sampling.json_schema is not None:
                check_schema(done, req.sampling.json_schema)
            self.send_json({
                "id": rid, "object": "text_completion", "created": created, "model": req.model,
                "choices": [{"index": i, "text": r.result.text,
                             "logprobs": None if top is None else
                             p.completion_logprobs(_text_logprobs(r), tb),
                             "finish_reason": p.finish_reason(r.result.finish_reason)}
                            for i, r in enumerate(done)],
                "usage": _usage(n_prompt, done)})
            return
        self.sse_start()
        offsets = [0] * len(prompts)

        async def piece(i: int, ev: Event) -> None:
            entries = _text_logprobs(self._inflight[i], ev.logprobs, ev.result is not None)
            if not ev.piece and not entries:
                return
            lp = None
            if top is not None:
                lp = p.completion_logprobs(entries, tb, offsets[i])
                offsets[i] += sum(len(t) for t in lp["tokens"])
            await self.sse_send(p.completion_chunk(rid, req.model, created, i, ev.piece,
                                                   logprobs=lp))

        done = await self.generate(scheduler, prompts, all_params, piece, top, json_object)
        await self.end_stream(
            done, lambda i, reason: p.completion_chunk(rid, req.model, created, i, "", reason),
            {"id": rid, "object": "text_completion", "created": created, "model": req.model,
             "choices": [], "usage": _usage(n_prompt, done)}
            if req.sampling.include_usage else None)


def check_schema(done: list[Request], schema: dict[str, Any]) -> None:
    """APIError 422 naming the first problem when a complete answer misses the schema
    (constrained decoding guarantees the JSON; the schema's shape is checked after)."""
    for i, r in enumerate(done):
        if r.seq is None or r.seq.constraint is None or not r.seq.constraint.done:
            continue  # cut (max_tokens, a stop string) before the object closed: no shape yet
        problems = schema_errors(json.loads(r.result.text), schema)
        if problems:
            raise APIError(422, f"choice {i}: the model's JSON does not match the schema: "
                           f"{'; '.join(problems[:5])}; answer: {r.result.text[:200]!r}",
                           param="response_format", code="schema_mismatch")


def _text_logprobs(req: Request, entries: list[TokenLogprob] | None = None,
                   last: bool = True) -> list[TokenLogprob]:
    """The logprobs of the tokens that make the answer (all of req's, or `entries`, the
    latest of them): a final stop token, which adds no text, is left out."""
    if entries is None:
        entries = req.seq.logprobs if req.seq is not None else []
    if (last and entries and req.result is not None and req.result.finish_reason == "stop"
            and entries[-1].token in req.seq.stop_ids):
        return entries[:-1]
    return entries


def _usage(prompt_tokens: int, done: list[Request]) -> dict[str, Any]:
    """Usage as OpenAI counts it: the prompt once (chat) or each distinct prompt
    (completions), plus every choice's completion tokens; prompt tokens taken from the
    KV cache (a chat's next turn continuing the last one) in prompt_tokens_details."""
    cached = sum(r.result.usage.get("cached_tokens", 0) for r in done)
    return p.usage(prompt_tokens, sum(len(r.result.token_ids) for r in done), cached)


def _epoch(iso: str | None) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(iso).timestamp()) if iso else 0
    except ValueError:
        return 0
