"""Reuse of the KV cache from one single-prompt generation to the next.

A chat's next turn sends the whole conversation again (the chat of llmos run, the
Playground, `m.chat` in a loop), so without this every turn prefills every earlier turn
too: ~0.7 s per 400 tokens of history on two CPU cores. After a single-prompt generation
the model's cache row 0 still holds the keys and values of the prompt and of every token
fed back while decoding; the next single-prompt generation whose prompt starts with those
tokens prefills only the rest, as Ollama and llama.cpp's server keep a conversation's
cache.

It is reused only when that cannot change a single number of the answer:
  - nothing else wrote the caches since (the model counts its cache writes:
    `cache_writes`), and no weight was replaced or changed in place (their identities and
    version counters are compared);
  - the model's prefill is row-exact (`prefill_rows_exact`: the native fused path, which
    computes every token the same way whether it comes in a prefill or a decode step),
    and so were the prefill and the steps that filled the cache.
Anything else falls back to a full prefill.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Below this many reusable tokens a full prefill costs about as much.
MIN_REUSE = 16
_ATTR = "_llmos_prompt_cache"


@dataclass
class Record:
    """What a cache row holds: the keys and values of `tokens` at positions [0, len)."""

    tokens: list[int]
    writes: int  # the model's cache_writes right after the last of them was written
    weights: tuple  # weights(model) then

    @classmethod
    def of(cls, model: Any, tokens: list[int], fingerprint: tuple | None = None
           ) -> Record | None:
        """A record of `tokens`, just written (`fingerprint`: weights(model), when the
        caller has it); None where the model keeps no count of its cache writes or its
        prefill is not row-exact."""
        if not tracks(model) or not model.prefill_rows_exact(1):
            return None
        return cls(list(tokens), model.cache_writes,
                   weights(model) if fingerprint is None else fingerprint)

    def fed(self, model: Any, token: int) -> None:
        """A decode step just wrote `token` at the next position."""
        self.tokens.append(token)
        self.writes = model.cache_writes

    def reusable(self, model: Any, prompt: list[int], fingerprint: tuple | None = None) -> int:
        """How many leading tokens of `prompt` the row holds, ready to be continued (0
        when none may be reused; always leaves one token to prefill, whose logits start
        the answer). `fingerprint`: weights(model), when the caller has it."""
        if (getattr(model, "cache_writes", None) != self.writes
                or not model.prefill_rows_exact(1)
                or (weights(model) if fingerprint is None else fingerprint) != self.weights):
            return 0
        n = min(common_prefix(self.tokens, prompt), len(prompt) - 1)
        return n if n >= MIN_REUSE else 0


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens a and b share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def tracks(model: Any) -> bool:
    """Whether the model counts its cache writes (Transformer.cache_writes), which reuse
    needs."""
    return getattr(model, "cache_writes", None) is not None


def reusable(model: Any, prompt: list[int], fingerprint: tuple) -> int:
    """How many leading tokens of `prompt` the model's cache row 0 holds from the last
    single-prompt generation (see Record.reusable)."""
    record = getattr(model, _ATTR, None)
    return 0 if record is None else record.reusable(model, prompt, fingerprint)


def forget(model: Any) -> None:
    """Drop the record (before the caches are set up or written for another purpose)."""
    if getattr(model, _ATTR, None) is not None:
        setattr(model, _ATTR, None)


def remember(model: Any, prompt: list[int], fingerprint: tuple) -> Record | None:
    """Start a record after `prompt` was prefilled into row 0 (see Record.of)."""
    record = Record.of(model, prompt, fingerprint)
    setattr(model, _ATTR, record)
    return record


def weights(model: Any) -> tuple:
    """The identity (storage address) and in-place version of every parameter and every
    buffer but the caches, so a weight replaced or changed since is seen (~1 ms for
    SmolLM2's 426 tensors: a generation takes it once). Tensors made in inference mode keep
    no version; their address still counts."""
    out = []
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        if ".cache." in name:
            continue
        out.append((t.data_ptr(), -1 if t.is_inference() else t._version))
    return tuple(out)
