"""GenerationParams: every knob of one generation request, with its allowed range.

The defaults follow what chat front-ends (llama.cpp, Ollama, OpenAI) use, so a notebook
user who sets nothing gets familiar behaviour. This module is the one list of sampling
settings: each field carries its help and its range, the CLI and magic flags, task and
preset params and the REST bodies are all built from `SETTINGS`, and `check_setting` /
`validate()` are the one place that checks ranges, so every interface rejects the same
inputs with the same message.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmos_jupyter.errors import ConfigError, excerpt, suggest


def _setting(default: Any = dataclasses.MISSING, *, help: str, allowed: str,  # noqa: A002
             ok: Callable[[Any], bool] | None = None, kind: str,
             default_factory: Any = dataclasses.MISSING) -> Any:
    """A field with what interfaces need to offer it: help, kind and allowed range."""
    meta = {"help": help, "allowed": allowed, "ok": ok, "kind": kind}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class GenerationParams:
    """The settings of one generation request; `validate()` checks them all."""

    # Upper bound on new tokens per prompt; 256 is a paragraph or two, enough for a chat
    # turn without letting a runaway sample fill the whole context.
    max_tokens: int = _setting(256, kind="int", help="most tokens to generate",
                               allowed="an integer >= 1", ok=lambda v: v >= 1)
    # Softmax temperature. 0 means greedy (argmax); 0.8 is llama.cpp's and Ollama's default,
    # a little sharper than the raw distribution.
    temperature: float = _setting(0.8, kind="float", help="0 = greedy",
                                  allowed=">= 0 (0 means greedy)", ok=lambda v: v >= 0)
    # Keep only the k most likely tokens; 0 turns the filter off.
    top_k: int = _setting(0, kind="int", help="keep the k most likely tokens (0: off)",
                          allowed="an integer >= 0 (0 turns it off)", ok=lambda v: v >= 0)
    # Nucleus sampling: keep the smallest set of tokens whose mass reaches top_p; 1.0 is off.
    top_p: float = _setting(1.0, kind="float", help="nucleus sampling mass (1: off)",
                            allowed="in (0, 1] (1 turns it off)", ok=lambda v: 0 < v <= 1)
    # Drop tokens whose probability is below min_p times the top token's; 0.0 is off.
    min_p: float = _setting(0.0, kind="float", help="drop tokens below min_p x the top one's",
                            allowed="in [0, 1] (0 turns it off)", ok=lambda v: 0 <= v <= 1)
    # Hugging Face semantics: logits of tokens already seen (prompt and completion) are
    # divided by this when positive and multiplied when negative; 1.0 is off.
    repetition_penalty: float = _setting(
        1.0, kind="float", help="penalize tokens already seen (1: off)",
        allowed="> 0 (1 turns it off)", ok=lambda v: v > 0)
    # OpenAI semantics: subtracted from the logit of every token the completion already
    # holds (presence, once) or per occurrence (frequency); 0.0 is off, the range -2..2.
    presence_penalty: float = _setting(
        0.0, kind="float", help="penalize tokens the answer holds, once (0: off)",
        allowed="in [-2, 2] (0 turns it off)", ok=lambda v: -2 <= v <= 2)
    frequency_penalty: float = _setting(
        0.0, kind="float", help="penalize tokens per occurrence in the answer (0: off)",
        allowed="in [-2, 2] (0 turns it off)", ok=lambda v: -2 <= v <= 2)
    # Strings that end generation; the returned and streamed text stops just before them.
    stop: list[str] = _setting(kind="list", help="stop string (repeatable)",
                               allowed="a list of non-empty strings", default_factory=list)
    # Seeds the per-row random generators (row b uses seed + b) so sampled output is
    # reproducible; None draws a seed from torch's global generator (torch.manual_seed).
    # torch seeds are 64-bit: past 2**63 - 1 sampling would fail deep with a traceback.
    seed: int | None = _setting(None, kind="int", help="random seed, for reproducible samples",
                                allowed="an integer in [0, 2**63 - 1]",
                                ok=lambda v: 0 <= v < 2**63)
    # Keep generating past the tokenizer's end-of-sequence tokens (benchmarks want this).
    ignore_eos: bool = _setting(False, kind="bool", help="generate past end-of-sequence",
                                allowed="True or False")

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
        for name in SETTINGS:
            value = getattr(self, name)
            if name == "seed" and value is None:
                continue
            _check(name, value)
        return self

    def replace(self, **changes: Any) -> GenerationParams:
        """A copy with some fields changed; unknown names raise ConfigError."""
        for name in changes:
            _known(name)
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Setting:
    """One sampling setting as interfaces offer it (a flag, a body field, a task param)."""

    name: str
    kind: str  # "int", "float", "list" (of strings) or "bool"
    help: str
    allowed: str
    default: Any


SETTINGS: dict[str, Setting] = {
    f.name: Setting(f.name, f.metadata["kind"], f.metadata["help"], f.metadata["allowed"],
                    None if f.default is dataclasses.MISSING else f.default)
    for f in dataclasses.fields(GenerationParams)
}
PARAM_NAMES: tuple[str, ...] = tuple(SETTINGS)
_OK = {f.name: f.metadata["ok"] for f in dataclasses.fields(GenerationParams)}


def _known(name: str) -> None:
    if name not in SETTINGS:
        known = f"{suggest(name, SETTINGS)}; known: {', '.join(SETTINGS)}"
        raise SettingError(name, None, f"unknown sampling parameter{known}",
                           f"unknown generation parameter {name!r}{known}", got=False)


def check_setting(name: str, value: Any) -> Any:
    """`value` checked for setting `name`, normalized (a bare stop string -> [string]).

    Raises ConfigError naming the parameter, the value and the allowed range, or the
    unknown name with a did-you-mean. None is returned unchanged (unset).
    """
    _known(name)
    if value is None:
        return None
    if name == "stop" and isinstance(value, str):
        value = [value]
    if SETTINGS[name].kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    _check(name, value)
    return list(value) if name == "stop" else value


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Every entry checked by `check_setting`; unset (None) entries are dropped."""
    out = {k: check_setting(k, v) for k, v in settings.items()}
    return {k: v for k, v in out.items() if v is not None}


class SettingError(ConfigError):
    """A sampling setting out of its range; `reason` says so without the name."""

    def __init__(self, name: str, value: Any, reason: str, message: str | None = None,
                 got: bool = True):
        super().__init__(message or f"{name}={excerpt(value)} is out of range; {name} {reason}")
        self.name = name
        self.reason = f"{reason}, got {excerpt(value)}" if got else reason


def _check(name: str, value: Any) -> None:
    setting = SETTINGS[name]
    if setting.kind == "list":
        if isinstance(value, str):
            # A bare string would otherwise be treated as a list of one-character stops.
            raise SettingError(name, value, "must be a list of strings",
                               f"{name}={value!r} must be a list of strings, e.g. [{value!r}]")
        if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s
                                                           for s in value):
            raise SettingError(name, value, "must be a list of non-empty strings",
                               f"{name}={excerpt(value)} must be a list of non-empty strings")
        return
    if setting.kind == "bool":
        if not isinstance(value, bool):
            raise SettingError(name, value, "must be true or false",
                               f"{name}={value!r} must be True or False")
        return
    numbers = (int,) if setting.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, numbers):
        what = "an integer" if setting.kind == "int" else "a number"
        raise SettingError(name, value, f"must be {what}",
                           f"{name}={excerpt(value)} must be {what}")
    if not (math.isfinite(value) and _OK[name](value)):
        raise SettingError(name, value, f"must be {setting.allowed}")
