"""The model catalog row (ModelRecord) and the facts ModelStore reads off a checkpoint.

Kept apart from models.py so that module stays about the order of writes that keeps the
store consistent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import CheckpointError, ConfigError, LLMOSError, SpecError
from llmos_jupyter.store import sources


@dataclass
class ModelRecord:
    """One row of the models table (JSON fields decoded).

    `format` is the format the model arrived in (gguf | hf | native); its files under
    `path` are always native. `path` is relative to LLMOS_HOME and None for presets.
    """

    name: str
    kind: str  # "model" | "preset"
    base: str | None = None
    path: str | None = None
    format: str | None = None
    arch: str | None = None
    params: int | None = None
    quantization: str | None = None
    context_length: int | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    source: str | None = None
    license: str | None = None
    system: str | None = None
    default_params: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] | None = None
    chat_template: str | None = None
    created_at: str = ""

    COLUMNS = (
        "name", "kind", "base", "path", "format", "arch", "params", "quantization",
        "context_length", "size_bytes", "sha256", "source", "license", "system",
        "default_params", "tokenizer", "chat_template", "created_at",
    )

    @classmethod
    def from_row(cls, row: Any) -> ModelRecord:
        d = {k: row[k] for k in cls.COLUMNS}
        d["default_params"] = json.loads(d["default_params"]) if d["default_params"] else {}
        d["tokenizer"] = json.loads(d["tokenizer"]) if d["tokenizer"] else None
        return cls(**d)

    def to_row(self) -> tuple[Any, ...]:
        d = asdict(self)
        d["default_params"] = json.dumps(self.default_params, sort_keys=True)
        d["tokenizer"] = json.dumps(self.tokenizer, sort_keys=True) if self.tokenizer else None
        return tuple(d[k] for k in self.COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        """Stable keys (the table's columns) for --json output."""
        return asdict(self)


def tokenizer_summary(tok: Any) -> dict[str, Any] | None:
    if tok is None:
        return None

    def token(i: int | None) -> str | None:
        return tok.tokens[i] if i is not None and 0 <= i < len(tok.tokens) else None

    return {
        "kind": "byte-level BPE", "pre": tok.pre, "vocab_size": len(tok.tokens),
        "merges": len(tok.merges), "bos_id": tok.bos_id, "bos": token(tok.bos_id),
        "eos_id": tok.eos_id, "eos": token(tok.eos_id), "add_bos": bool(tok.add_bos),
    }


# Where each format keeps its tokenizer, for the error when a checkpoint has none.
_TOKENIZER_HINTS = {
    "gguf": "tokenizer.ggml.* metadata",
    "hf": "tokenizer.json, or vocab.json + merges.txt",
    "native": "tokenizer.json",
}


def check_loadable(ckpt: Any, path: Path) -> None:
    """Raise CheckpointError naming `path` unless everything a load needs beyond the
    tensors holds: a tokenizer that builds (the same `Tokenizer.from_spec` a load runs),
    ids that fit the embedding, weight block types the model can compute with, and
    finite weights (see formats/finite.py).

    Run at import, so a model that cannot load (or can only answer NaN) is never registered.
    """
    # torch, numpy: imported on first use, not with this module
    from llmos_jupyter.formats.finite import nonfinite_tensors
    from llmos_jupyter.formats.gguf import QUANT_TYPES
    from llmos_jupyter.tokenizer import Tokenizer

    spec = ckpt.tokenizer
    if spec is None:
        where = _TOKENIZER_HINTS.get(str(ckpt.metadata.get("format")), "a tokenizer")
        raise CheckpointError(f"{path}: has no tokenizer (expected {where}); LLMOS needs the "
                              "model's own tokenizer to run it")
    try:
        Tokenizer.from_spec(spec)
    except LLMOSError as exc:
        raise CheckpointError(f"{path}: its tokenizer cannot be built: {exc}") from exc
    except Exception as exc:  # a spec of the wrong shape (native tokenizer.json edited)
        raise CheckpointError(f"{path}: its tokenizer cannot be built "
                              f"({type(exc).__name__}: {exc})") from exc
    vocab = ckpt.config.vocab_size
    if len(spec.tokens) > vocab:
        raise CheckpointError(f"{path}: the tokenizer has {len(spec.tokens)} tokens but the "
                              f"embedding only {vocab} rows; the checkpoint is inconsistent")
    for key in ("bos_id", "eos_id", "pad_id"):
        value = getattr(spec, key)
        if value is not None and not (type(value) is int and 0 <= value < len(spec.tokens)):
            raise CheckpointError(f"{path}: tokenizer {key} {value!r} is not a token id")
    for name, t in ckpt.tensors.items():
        if hasattr(t, "ggml_type") and t.ggml_type not in QUANT_TYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has block type {t.ggml_type}, "
                                  "which LLMOS cannot compute with")
    bad = nonfinite_tensors(ckpt.tensors)
    if bad:
        raise CheckpointError(f"{path}: tensors {bad[:3]} hold NaN or infinite values; the "
                              "file is corrupt — download or convert it again")


def n_params(tensors: dict[str, Any]) -> int:
    n = 0
    for t in tensors.values():
        n += t.numel() if hasattr(t, "numel") else int(t.shape[0]) * int(t.shape[1])
    return n


def quantization_of(ckpt: Any) -> str:
    """The checkpoint's own summary if it has one, else the type of most weight elements."""
    if ckpt.metadata.get("quantization"):
        return str(ckpt.metadata["quantization"])
    counts: dict[str, int] = {}
    for t in ckpt.tensors.values():
        if hasattr(t, "ggml_type"):
            kind, n = t.ggml_type, int(t.shape[0]) * int(t.shape[1])
        else:
            kind, n = str(t.dtype).removeprefix("torch.").upper(), t.numel()
        counts[kind] = counts.get(kind, 0) + n
    return max(counts, key=counts.__getitem__) if counts else "unknown"


def checkpoint_sha256(path: Path) -> str:
    """sha256 of a checkpoint file, or of a directory's (relative path, content) pairs."""
    path = Path(path)
    if path.is_file():
        return sources.sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0")
        h.update(sources.sha256_file(p).encode())
    return h.hexdigest()


def validate_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Check a preset's sampling parameters with the same rules as a task spec's `params`.

    The one list of settings and ranges (core.params.SETTINGS) keeps presets, tasks
    and every interface from drifting apart. Raises ConfigError naming the parameter.
    """
    # yaml: imported on first use, not with this module
    from llmos_jupyter.tasks.taskspec import check_params

    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ConfigError(f"preset params must be a dict, not {type(params).__name__}")
    try:
        return check_params(params)
    except SpecError as exc:
        raise ConfigError(f"preset {str(exc).removeprefix('field ')}") from None
