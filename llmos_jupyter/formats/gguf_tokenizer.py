"""Build a TokenizerSpec from a GGUF file's `tokenizer.ggml.*` metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmos_jupyter.core.tokenizer_spec import TokenizerSpec
from llmos_jupyter.errors import CheckpointError

# llama.cpp's token types: 0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined,
# 5 unused, 6 byte. Anything else is a corrupt table.
TOKEN_TYPES = range(7)


def _typed(fields: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str | Path,
           default: Any = None) -> Any:
    """fields[key] if it has the type the GGUF spec gives it; CheckpointError otherwise."""
    value = fields.get(key, default)
    if value is not None and (not isinstance(value, kind) or
                              (isinstance(value, bool) and bool not in _as_tuple(kind))):
        raise CheckpointError(
            f"{path}: metadata {key!r} is {type(value).__name__} {str(value)[:40]!r}, not "
            f"{' or '.join(k.__name__ for k in _as_tuple(kind))}; the file is corrupt"
        )
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _array(fields: dict[str, Any], key: str, path: str | Path, strings: bool) -> list | None:
    """A metadata array as a list, checking it holds strings (or numbers)."""
    value = fields.get(key)
    if value is None:
        return None
    if not hasattr(value, "tolist") or getattr(value, "is_strings", strings) != strings:
        raise CheckpointError(
            f"{path}: metadata {key!r} is not an array of {'strings' if strings else 'numbers'}"
        )
    return value.tolist()


def tokenizer_from_fields(fields: dict[str, Any], path: str | Path) -> TokenizerSpec | None:
    """The byte-level BPE tokenizer stored in GGUF metadata, or None if the file has none.

    Only `tokenizer.ggml.model == "gpt2"` (byte-level BPE, used by SmolLM2, Llama 3,
    Qwen2, GPT-2) is supported: SentencePiece vocabularies ("llama") raise
    CheckpointError, since tiktoken cannot reproduce them. So does a value of the wrong
    type (a number where the spec has a string, an id outside the vocabulary).
    """
    model = _typed(fields, "tokenizer.ggml.model", str, path)
    if model is None:
        return None
    if model != "gpt2":
        raise CheckpointError(
            f"{path}: tokenizer model {model!r} is not supported; LLMOS reads byte-level BPE "
            "('gpt2') vocabularies only"
        )
    tokens = _array(fields, "tokenizer.ggml.tokens", path, strings=True)
    merges = _array(fields, "tokenizer.ggml.merges", path, strings=True)
    if not tokens or merges is None:
        raise CheckpointError(
            f"{path}: BPE tokenizer metadata lacks tokenizer.ggml.tokens or merges"
        )
    token_types = _array(fields, "tokenizer.ggml.token_type", path, strings=False)
    if token_types is not None and len(token_types) != len(tokens):
        raise CheckpointError(
            f"{path}: {len(token_types)} token types for {len(tokens)} tokens; the file is corrupt"
        )
    bad = next((i for i, t in enumerate(token_types or ()) if t not in TOKEN_TYPES), None)
    if bad is not None:
        raise CheckpointError(
            f"{path}: token {bad} has type {token_types[bad]!r}, not one of GGUF's token types "
            f"{list(TOKEN_TYPES)}; the file is corrupt"
        )

    def token_id(key: str) -> int | None:
        value = _typed(fields, f"tokenizer.ggml.{key}_token_id", int, path)
        if value is None:
            return None
        if not 0 <= value < len(tokens):
            raise CheckpointError(
                f"{path}: {key} token id {value} is outside the {len(tokens)}-token vocabulary"
            )
        return int(value)

    return TokenizerSpec(
        tokens=tokens,
        merges=merges,
        pre=_typed(fields, "tokenizer.ggml.pre", str, path, "gpt2"),
        token_types=[int(t) for t in token_types] if token_types is not None else None,
        bos_id=token_id("bos"),
        eos_id=token_id("eos"),
        pad_id=token_id("padding"),
        add_bos=_typed(fields, "tokenizer.ggml.add_bos_token", bool, path, False),
        chat_template=_typed(fields, "tokenizer.chat_template", str, path),
    )
