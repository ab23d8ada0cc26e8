"""TokenizerSpec: a model's byte-level BPE tokenizer as data, and the pre-tokenizer families.

Every checkpoint format fills a TokenizerSpec (formats/gguf_tokenizer.py from GGUF
metadata, formats/hf_tokenizer.py from tokenizer.json) and `tokenizer.Tokenizer` builds
an encoder from it. `TokenizerSpec.pre` names a pre-tokenizer family; PRE_PATTERNS maps
each family name to its split regex, so a format can recognise a family and the
tokenizer can split by it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class TokenizerSpec:
    """Everything needed to rebuild a model's byte-level BPE tokenizer exactly.

    `tokens[i]` is token i in the GPT-2 byte-to-unicode alphabet (as in GGUF
    `tokenizer.ggml.tokens` and HF tokenizer.json); `merges` are "left right" strings
    in rank order; `pre` names the pre-tokenizer family ("smollm", "gpt2", "llama3",
    "qwen2", ...) which picks the split regex; `token_types` follow GGUF (1 normal,
    3 control, 4 user-defined, ...), control/user-defined tokens are special.
    """

    tokens: list[str]
    merges: list[str]
    pre: str = "gpt2"
    token_types: list[int] | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    # Prepend BOS when encoding a prompt for generation (GGUF tokenizer.ggml.add_bos_token).
    add_bos: bool = False
    chat_template: str | None = None


# ---- pre-tokenizer split patterns (tiktoken's regex dialect: Rust fancy-regex) -----------
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# HF SmolLM: Sequence[Digits(individual_digits=True), ByteLevel] = every digit is its own
# piece, then GPT-2's regex runs on the text between digits. In one regex: `\p{N}` alone
# replaces ` ?\p{N}+`, and the whitespace lookahead treats a digit like the end of the
# text, so "a  1" splits "a", "  ", "1" (plain GPT-2 would give "a", " ", " 1").
SMOLLM_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+"""
)
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
GPT4O_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""", r"""\s+""",
])
# Names as GGUF `tokenizer.ggml.pre` spells them. Not here on purpose: deepseek-llm,
# deepseek-coder, falcon, bloom, chatglm... llama.cpp applies several regexes one after
# another (later ones see only earlier fragments, with `$` anchored at fragment ends and
# explicit CJK code-point ranges); that is not one tiktoken regex in general, so they fall
# back to GPT-2 with a warning and are not exact.
PRE_PATTERNS: dict[str, str] = {
    **dict.fromkeys(("gpt2", "gpt-2", "default", "mpt", "olmo", "jais"), GPT2_PATTERN),
    **dict.fromkeys(("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                     "minerva"), SMOLLM_PATTERN),
    **dict.fromkeys(("llama-bpe", "llama3", "dbrx", "smaug-bpe"), LLAMA3_PATTERN),
    **dict.fromkeys(("qwen2", "stablelm2", "deepseek-r1-qwen"), QWEN2_PATTERN),
    **dict.fromkeys(("gpt-4o", "o200k"), GPT4O_PATTERN),
}
# Families whose original tokenizer returns a whole piece that is a token without merging
# (HF `ignore_merges`, llama.cpp LLAMA3) -- exactly tiktoken's shortcut.
IGNORE_MERGES_PRE = frozenset({"llama-bpe", "llama3", "dbrx", "smaug-bpe"})


def split_pattern(pre: str) -> str:
    """The split regex of pre-tokenizer family `pre` (unknown names: GPT-2, with a warning)."""
    pattern = PRE_PATTERNS.get(pre.lower())
    if pattern is None:
        log.warning("unknown pre-tokenizer %r: using GPT-2's split, token ids may differ", pre)
        return GPT2_PATTERN
    return pattern
