"""LoadedModel: a model in memory with its tokenizer, ready to answer.

This is what `llmos.load(...)` returns. It owns the one lock that serializes use of the
model's KV cache, turns text into ids (keeping control-token text in user content
inert), and calls the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from llmos_jupyter.core.params import PARAM_NAMES, GenerationParams
from llmos_jupyter.engine.generate import GenerationResult, generate, stream
from llmos_jupyter.errors import ConfigError, PromptError
from llmos_jupyter.tokenizer import Tokenizer


class LoadedModel:
    """A Transformer in memory with its tokenizer and the defaults of its preset."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        tokenizer: Tokenizer,
        *,
        mode: str,
        system: str | None = None,
        defaults: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ):
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.config = model.config
        self.mode = mode  # the weight mode chosen by build_model: "float32", "int4", ...
        self.system = system
        self.defaults = dict(defaults or {})
        self.info = dict(info or {})
        # One generation at a time: the static KV cache belongs to the model.
        self.lock = threading.RLock()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def __repr__(self) -> str:
        return (f"<LoadedModel {self.name!r} {self.config.arch} mode={self.mode} "
                f"device={self.device}>")

    # ----------------------------------------------------------------- logits
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits of every position: ids LongTensor [B, T] -> float32 [B, T, vocab].

        Raises ValueError for a wrong rank or dtype, ids outside the vocabulary, or a
        sequence longer than the model's context.
        """
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 2:
            raise ValueError("logits: ids must be a LongTensor of shape [batch, time]")
        if ids.numel() == 0:
            raise PromptError("logits: ids is empty")
        vocab = self.config.vocab_size
        if int(ids.min()) < 0 or int(ids.max()) >= vocab:
            raise ValueError(f"logits: ids must lie in [0, {vocab}) for {self.name}")
        if ids.shape[1] > self.config.max_seq_len:
            raise PromptError(
                f"logits: {ids.shape[1]} tokens exceed {self.name}'s context of "
                f"{self.config.max_seq_len}"
            )
        with self.lock, torch.inference_mode():
            return self.model(ids.to(self.device)).float()

    # ----------------------------------------------------------- generation
    def params(self, overrides: dict[str, Any]) -> GenerationParams:
        """Preset defaults, then the caller's non-None overrides; validated."""
        unknown = set(overrides) - set(PARAM_NAMES)
        if unknown:
            raise ConfigError(
                f"unknown generation parameter(s) {sorted(unknown)}; known: {list(PARAM_NAMES)}"
            )
        merged = {**self.defaults, **{k: v for k, v in overrides.items() if v is not None}}
        if isinstance(merged.get("stop"), str):
            merged["stop"] = [merged["stop"]]
        p = GenerationParams(**merged)
        p.validate()
        return p

    def encode_prompt(self, prompt: str) -> list[int]:
        """Ids of a plain-text prompt: user text never becomes control tokens."""
        if not isinstance(prompt, str):
            raise PromptError(f"prompt must be a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise PromptError("the prompt is empty; give some text to continue")
        ids = self.tokenizer.encode(prompt, allow_special=False)
        if self.tokenizer.add_bos and self.tokenizer.bos_id is not None:
            ids = [self.tokenizer.bos_id, *ids]
        return ids

    def encode_chat(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> list[int]:
        """Ids of a conversation rendered with the model's chat template.

        The template's own markup becomes control tokens; text from the messages never
        does, whatever the template does with it (`Tokenizer.encode_chat`), so a message
        cannot forge a turn.
        """
        if not messages:
            raise PromptError("chat: messages is empty; pass [{'role': 'user', 'content': ...}]")
        if self.system and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": self.system}, *messages]
        return self.tokenizer.encode_chat(messages, add_generation_prompt)

    def generate(
        self,
        prompt: str | list[str],
        *,
        stream: bool = False,
        on_piece: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        **params: Any,
    ) -> GenerationResult | list[GenerationResult] | Iterator[str]:
        """Continue `prompt` (or each of a list of prompts, as one batch).

        Keyword parameters: max_tokens, temperature (0 = greedy), top_k, top_p, min_p,
        repetition_penalty, stop, seed, ignore_eos. With stream=True returns an iterator
        of text pieces (single prompt only). Raises PromptError / ConfigError.
        """
        p = self.params(params)
        if isinstance(prompt, list):
            if stream:
                raise ConfigError("stream=True takes a single prompt, not a list")
            ids = [self.encode_prompt(t) for t in prompt]
            return self.generate_ids(ids, p, on_piece, should_stop)
        ids = self.encode_prompt(prompt)
        if stream:
            return self._stream(ids, p)
        return self.generate_ids([ids], p, on_piece, should_stop)[0]

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        stream: bool = False,
        on_piece: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        **params: Any,
    ) -> GenerationResult | Iterator[str]:
        """Answer a conversation; stops at the model's end-of-turn token."""
        p = self.params(params)
        ids = self.encode_chat(messages)
        if stream:
            return self._stream(ids, p)
        return self.generate_ids([ids], p, on_piece, should_stop)[0]

    def generate_ids(
        self,
        prompts: list[list[int]],
        params: GenerationParams,
        on_piece: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[GenerationResult]:
        """Batched generation from token ids (the path task runs use)."""
        with self.lock:
            return generate(self.model, self.tokenizer, prompts, params, on_piece, should_stop)

    def interrupted(self, text: str) -> GenerationResult:
        """The result standing for a generation stopped by an interrupt after `text`
        (finish_reason "cancelled"); the engine re-raises KeyboardInterrupt, so the
        caller that collected the streamed pieces builds it."""
        ids = self.tokenizer.encode(text)
        usage = {"prompt_tokens": 0, "completion_tokens": len(ids), "total_tokens": len(ids)}
        return GenerationResult(text=text, token_ids=ids, finish_reason="cancelled",
                                usage=usage, timings={})

    def _stream(self, ids: list[int], params: GenerationParams) -> Iterator[str]:
        with self.lock:
            yield from stream(self.model, self.tokenizer, ids, params)
