"""Build a TokenizerSpec from a GGUF file's `tokenizer.ggml.*` metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmos_jupyter.errors import CheckpointError
from llmos_jupyter.formats.checkpoint import TokenizerSpec


def tokenizer_from_fields(fields: dict[str, Any], path: str | Path) -> TokenizerSpec | None:
    """The byte-level BPE tokenizer stored in GGUF metadata, or None if the file has none.

    Only `tokenizer.ggml.model == "gpt2"` (byte-level BPE, used by SmolLM2, Llama 3,
    Qwen2, GPT-2) is supported: SentencePiece vocabularies ("llama") raise
    CheckpointError, since tiktoken cannot reproduce them.
    """
    model = fields.get("tokenizer.ggml.model")
    if model is None:
        return None
    if model != "gpt2":
        raise CheckpointError(
            f"{path}: tokenizer model {model!r} is not supported; LLMOS reads byte-level BPE "
            "('gpt2') vocabularies only"
        )
    tokens = fields.get("tokenizer.ggml.tokens")
    merges = fields.get("tokenizer.ggml.merges")
    if not tokens or merges is None:
        raise CheckpointError(
            f"{path}: BPE tokenizer metadata lacks tokenizer.ggml.tokens or merges"
        )
    token_types = fields.get("tokenizer.ggml.token_type")
    if token_types is not None and len(token_types) != len(tokens):
        raise CheckpointError(
            f"{path}: {len(token_types)} token types for {len(tokens)} tokens; the file is corrupt"
        )

    def token_id(key: str) -> int | None:
        value = fields.get(f"tokenizer.ggml.{key}_token_id")
        if value is None:
            return None
        if not 0 <= value < len(tokens):
            raise CheckpointError(
                f"{path}: {key} token id {value} is outside the {len(tokens)}-token vocabulary"
            )
        return int(value)

    return TokenizerSpec(
        tokens=list(tokens),
        merges=list(merges),
        pre=fields.get("tokenizer.ggml.pre", "gpt2"),
        token_types=list(token_types) if token_types is not None else None,
        bos_id=token_id("bos"),
        eos_id=token_id("eos"),
        pad_id=token_id("padding"),
        add_bos=bool(fields.get("tokenizer.ggml.add_bos_token", False)),
        chat_template=fields.get("tokenizer.chat_template"),
    )
