"""Hugging Face tokenizer.json (+ tokenizer_config.json) read into a TokenizerSpec.

Only byte-level BPE is supported; the pre-tokenizer is recognised by its steps (or its
split regex, matched against PRE_PATTERNS) and named by family, as GGUF names it.
"""

from __future__ import annotations

import logging
from typing import Any

from llmos_jupyter.core.tokenizer_spec import PRE_PATTERNS, TokenizerSpec
from llmos_jupyter.errors import CheckpointError

log = logging.getLogger(__name__)


def _pre_from_hf(pre_tokenizer: dict | None) -> str:
    """Name the pre-tokenizer family of a tokenizer.json `pre_tokenizer` object."""
    if not pre_tokenizer:
        log.warning("tokenizer.json has no pre_tokenizer: assuming GPT-2's split")
        return "gpt2"
    steps = pre_tokenizer.get("pretokenizers", [pre_tokenizer])
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = steps[0].get("pattern", {}).get("Regex")
        for name in ("llama3", "qwen2", "gpt-4o"):
            if regex == PRE_PATTERNS[name]:
                return name
    log.warning("unrecognized pre_tokenizer %s: assuming GPT-2's split, ids may differ", kinds)
    return "gpt2"


def _token_content(value: Any) -> str | None:
    # tokenizer_config.json spells tokens as strings or as {"content": ...} objects.
    return value.get("content") if isinstance(value, dict) else value


def spec_from_tokenizer_json(obj: dict, tokenizer_config: dict | None = None) -> TokenizerSpec:
    """A TokenizerSpec from a parsed HF tokenizer.json (byte-level BPE only).

    `tokenizer_config` (parsed tokenizer_config.json) supplies bos/eos/pad tokens, the
    chat template and add_bos_token. Raises CheckpointError for other tokenizer kinds.
    """
    model = obj.get("model") or {}
    if model.get("type") != "BPE":
        raise CheckpointError(
            f"tokenizer.json has a {model.get('type')!r} model; only byte-level BPE is supported")
    added = obj.get("added_tokens") or []
    size = 1 + max([*model["vocab"].values(), *(t["id"] for t in added)], default=-1)
    tokens = [f"[PAD{i}]" for i in range(size)]  # holes: unused ids, as llama.cpp fills them
    types = [5] * size
    for text, i in model["vocab"].items():
        tokens[i], types[i] = text, 1
    for t in added:
        tokens[t["id"]], types[t["id"]] = t["content"], 3 if t.get("special") else 4
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    config = tokenizer_config or {}
    index = {t: i for i, t in enumerate(tokens)}

    def token_id(key: str) -> int | None:
        text = _token_content(config.get(key))
        return index.get(text) if text is not None else None

    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}]
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default", next(iter(named.values()), None))
    return TokenizerSpec(
        tokens=tokens, merges=merges, pre=_pre_from_hf(obj.get("pre_tokenizer")),
        token_types=types, bos_id=token_id("bos_token"), eos_id=token_id("eos_token"),
        pad_id=token_id("pad_token"), add_bos=bool(config.get("add_bos_token", False)),
        chat_template=template)
