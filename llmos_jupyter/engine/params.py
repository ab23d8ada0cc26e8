"""GenerationParams: every knob of one generation request, with its allowed range.

The defaults follow what chat front-ends (llama.cpp, Ollama, OpenAI) use, so a notebook
user who sets nothing gets familiar behaviour. `validate()` is the single place that
checks ranges: every interface (magics, CLI, REST) builds a GenerationParams and calls it,
so they all reject the same inputs with the same message.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from llmos_jupyter.errors import ConfigError, excerpt, suggest


@dataclass
class GenerationParams:
    # Upper bound on new tokens per prompt; 256 is a paragraph or two, enough for a chat
    # turn without letting a runaway sample fill the whole context.
    max_tokens: int = 256
    # Softmax temperature. 0 means greedy (argmax); 0.8 is llama.cpp's and Ollama's default,
    # a little sharper than the raw distribution.
    temperature: float = 0.8
    # Keep only the k most likely tokens; 0 turns the filter off.
    top_k: int = 0
    # Nucleus sampling: keep the smallest set of tokens whose mass reaches top_p; 1.0 is off.
    top_p: float = 1.0
    # Drop tokens whose probability is below min_p times the top token's; 0.0 is off.
    min_p: float = 0.0
    # Hugging Face semantics: logits of tokens already seen (prompt and completion) are
    # divided by this when positive and multiplied when negative; 1.0 is off.
    repetition_penalty: float = 1.0
    # OpenAI semantics: subtracted from the logit of every token the completion already
    # holds (presence, once) or per occurrence (frequency); 0.0 is off, the range -2..2.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # Strings that end generation; the returned and streamed text stops just before them.
    stop: list[str] = field(default_factory=list)
    # Seeds the per-row random generators (row b uses seed + b) so sampled output is
    # reproducible; None draws a seed from torch's global generator (torch.manual_seed).
    seed: int | None = None
    # Keep generating past the tokenizer's end-of-sequence tokens (benchmarks want this).
    ignore_eos: bool = False

    @property
    def counts_tokens(self) -> bool:
        """True when sampling needs the completion's token counts (presence/frequency)."""
        return self.presence_penalty != 0 or self.frequency_penalty != 0

    @property
    def greedy(self) -> bool:
        """True when sampling reduces to argmax (temperature 0)."""
        return self.temperature == 0

    def validate(self) -> GenerationParams:
        """Check every field's type and range; return self so calls can chain.

        Raises ConfigError naming the parameter, the value and the allowed range.
        """
        _check_int("max_tokens", self.max_tokens, "an integer >= 1", lambda v: v >= 1)
        _check_float("temperature", self.temperature, ">= 0 (0 means greedy)", lambda v: v >= 0)
        _check_int("top_k", self.top_k, "an integer >= 0 (0 turns it off)", lambda v: v >= 0)
        _check_float("top_p", self.top_p, "in (0, 1] (1 turns it off)", lambda v: 0 < v <= 1)
        _check_float("min_p", self.min_p, "in [0, 1] (0 turns it off)", lambda v: 0 <= v <= 1)
        _check_float(
            "repetition_penalty", self.repetition_penalty, "> 0 (1 turns it off)", lambda v: v > 0
        )
        for name in ("presence_penalty", "frequency_penalty"):
            _check_float(name, getattr(self, name), "in [-2, 2] (0 turns it off)",
                         lambda v: -2 <= v <= 2)
        if isinstance(self.stop, str):
            # A bare string would otherwise be treated as a list of one-character stops.
            raise ConfigError(f"stop={self.stop!r} must be a list of strings, e.g. [{self.stop!r}]")
        if not isinstance(self.stop, (list, tuple)) or not all(
            isinstance(s, str) and s for s in self.stop
        ):
            raise ConfigError(f"stop={self.stop!r} must be a list of non-empty strings")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ConfigError(f"seed={self.seed!r} must be an integer or None")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            # torch seeds are 64-bit; a bigger one fails deep in sampling with a traceback.
            raise ConfigError(f"seed={excerpt(self.seed)} must be in [0, 2**63 - 1]")
        if not isinstance(self.ignore_eos, bool):
            raise ConfigError(f"ignore_eos={self.ignore_eos!r} must be True or False")
        return self

    def replace(self, **changes: Any) -> GenerationParams:
        """A copy with some fields changed; unknown names raise ConfigError."""
        names = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in names:
                raise ConfigError(
                    f"unknown generation parameter {name!r}{suggest(name, names)}; "
                    f"known: {sorted(names)}"
                )
        return dataclasses.replace(self, **changes)


def _check_int(name: str, value: Any, allowed: str, ok: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not ok(value):
        raise ConfigError(f"{name}={value!r} is out of range; {name} must be {allowed}")


def _check_float(name: str, value: Any, allowed: str, ok: Any) -> None:
    valid = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and ok(value)
    )
    if not valid:
        raise ConfigError(f"{name}={value!r} is out of range; {name} must be {allowed}")
