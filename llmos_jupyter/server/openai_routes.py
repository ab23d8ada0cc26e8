"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions.

Model ids are catalog names, presets included: a preset's system prompt and sampling
defaults apply, and the request's fields override them. Each choice (`n`, or each prompt
of a completion request) is one row of the model's continuous batch.
"""

from __future__ import annotations

from typing import Any

from llmos_jupyter.engine.generate import GenerationResult
from llmos_jupyter.engine.params import GenerationParams
from llmos_jupyter.runtime.services import services
from llmos_jupyter.server import protocol as p
from llmos_jupyter.server.base import LLMOSHandler


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
        n = req.sampling.n
        rid, created = p.new_id("chatcmpl"), p.now()
        if not req.sampling.stream:
            results = await self.generate(scheduler, [ids] * n, choice_params(params, n))
            self.send_json({
                "id": rid, "object": "chat.completion", "created": created,
                "model": req.model, "system_fingerprint": None,
                "choices": [{"index": i, "message": {"role": "assistant", "content": r.text},
                             "logprobs": None, "finish_reason": p.finish_reason(r.finish_reason)}
                            for i, r in enumerate(results)],
                "usage": _usage(len(ids), results)})
            return
        self.sse_start()
        for i in range(n):
            await self.sse_send(p.chat_chunk(rid, req.model, created, i,
                                             {"role": "assistant", "content": ""}))

        async def piece(i: int, text: str) -> None:
            await self.sse_send(p.chat_chunk(rid, req.model, created, i, {"content": text}))

        results = await self.generate(scheduler, [ids] * n, choice_params(params, n), piece)
        for i, r in enumerate(results):
            await self.sse_send(p.chat_chunk(rid, req.model, created, i, {},
                                             p.finish_reason(r.finish_reason)))
        if req.sampling.include_usage:
            await self.sse_send({"id": rid, "object": "chat.completion.chunk",
                                 "created": created, "model": req.model, "choices": [],
                                 "usage": _usage(len(ids), results)})
        await self.sse_send("[DONE]")
        self.finish()


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
        n_prompt = sum(len(ids) for ids in prompts)
        rid, created = p.new_id("cmpl"), p.now()
        if not req.sampling.stream:
            results = await self.generate(scheduler, prompts, all_params)
            self.send_json({
                "id": rid, "object": "text_completion", "created": created, "model": req.model,
                "choices": [{"index": i, "text": r.text, "logprobs": None,
                             "finish_reason": p.finish_reason(r.finish_reason)}
                            for i, r in enumerate(results)],
                "usage": _usage(n_prompt, results)})
            return
        self.sse_start()

        async def piece(i: int, text: str) -> None:
            await self.sse_send(p.completion_chunk(rid, req.model, created, i, text))

        results = await self.generate(scheduler, prompts, all_params, piece)
        for i, r in enumerate(results):
            await self.sse_send(p.completion_chunk(rid, req.model, created, i, "",
                                                   p.finish_reason(r.finish_reason)))
        if req.sampling.include_usage:
            await self.sse_send({"id": rid, "object": "text_completion", "created": created,
                                 "model": req.model, "choices": [],
                                 "usage": _usage(n_prompt, results)})
        await self.sse_send("[DONE]")
        self.finish()


def _usage(prompt_tokens: int, results: list[GenerationResult]) -> dict[str, Any]:
    """Usage as OpenAI counts it: the prompt once (chat) or every prompt (completions),
    plus every choice's completion tokens."""
    return p.usage(prompt_tokens, sum(len(r.token_ids) for r in results))


def _epoch(iso: str | None) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(iso).timestamp()) if iso else 0
    except ValueError:
        return 0
