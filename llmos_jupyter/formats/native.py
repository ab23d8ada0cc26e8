"""LLMOS's own checkpoint format: a directory that loads in a fraction of a second.

    model.safetensors   every tensor in OUR naming; a QuantizedTensor is stored as its
                        uint8 blocks [rows, bytes_per_row] under the same name
    config.json         {"format_version": 1, "model": ModelConfig.to_dict(),
                         "quantized": {name: {"ggml_type": "Q4_1", "shape": [r, c]}},
                         "metadata": {...}}
    tokenizer.json      the TokenizerSpec's fields (absent when there is no tokenizer)

Why a format of our own: GGUF needs its header parsed and Q/K rows re-ordered on every
load, and HF directories need names mapped and tensors fused; this one stores the
result, so loading is one safetensors read. Writes are atomic (temp dir + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from llmos_jupyter.core.checkpoint import Checkpoint, QuantizedTensor
from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.core.tokenizer_spec import TokenizerSpec
from llmos_jupyter.errors import CheckpointError, ConfigError
from llmos_jupyter.formats.shapes import check_shapes

FORMAT_VERSION = 1
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"


def is_native_dir(path: str | Path) -> bool:
    """True when `path` is a directory holding an LLMOS native config.json."""
    cfg = Path(path) / CONFIG
    if not cfg.is_file():
        return False
    try:
        return "format_version" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _storable(tensors: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors safetensors can save (contiguous, no shared storage) + the quantized table."""
    out: dict[str, torch.Tensor] = {}
    quantized: dict[str, Any] = {}
    seen: set[int] = set()
    for name, t in tensors.items():
        if isinstance(t, QuantizedTensor):
            quantized[name] = {"ggml_type": t.ggml_type, "shape": list(t.shape)}
            t = torch.from_numpy(t.blocks.copy() if not t.blocks.flags.writeable else t.blocks)
        t = t.detach().contiguous()
        # safetensors refuses tensors that share memory (e.g. a tied output aliasing
        # the embedding); a copy is cheap next to a silently wrong file.
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out, quantized


def write_native(ckpt: Checkpoint, directory: str | Path) -> Path:
    """Write `ckpt` as an LLMOS native directory, atomically; return the directory.

    Files are written into a temporary sibling directory that is renamed into place at
    the end, so a crash never leaves a half-written model. An existing native
    checkpoint at `directory` is replaced; any other non-empty directory raises
    CheckpointError (we never delete files we did not write).
    """
    from safetensors.torch import save_file

    target = Path(directory)
    if target.exists() and not (
        target.is_dir() and (is_native_dir(target) or not any(target.iterdir()))
    ):
        raise CheckpointError(
            f"{target}: exists and is not an LLMOS native checkpoint; choose another directory"
        )
    tensors, quantized = _storable(ckpt.tensors)
    meta = dict(ckpt.metadata)
    # Keep where the weights came from; "format" and "path" describe this directory on read.
    if "format" in meta and meta["format"] != "native":
        meta["source_format"] = meta.pop("format")
        meta["source_path"] = meta.pop("path", None)
    config = {
        "format_version": FORMAT_VERSION,
        "model": ckpt.config.to_dict(),
        "quantized": quantized,
        "metadata": meta,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(
            tensors, str(tmp / WEIGHTS), metadata={"format": "pt", "llmos": str(FORMAT_VERSION)}
        )
        # default=str: metadata may carry Paths or other plain values from readers.
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
        if ckpt.tokenizer is not None:
            spec = dataclasses.asdict(ckpt.tokenizer)
            (tmp / TOKENIZER).write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"{path}: missing; the native checkpoint is incomplete — convert it again"
        ) from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: unreadable or not valid JSON ({exc}); convert the model again"
        ) from exc


def read_native(directory: str | Path) -> Checkpoint:
    """Load an LLMOS native directory written by `write_native`.

    Raises CheckpointError when a file is missing or corrupt, the format version is
    newer than this LLMOS, or the quantized table disagrees with the stored tensors.
    """
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    from safetensors.torch import load_file

    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a directory; a native checkpoint is a directory")
    config = _read_json(root / CONFIG)
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{root / CONFIG}: format_version {version!r} is not supported (expected "
            f"{FORMAT_VERSION}); upgrade LLMOS or convert the model again"
        )
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{root / CONFIG}: invalid model config ({exc})") from exc

    weights = root / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(
            f"{weights}: missing; the native checkpoint is incomplete — convert it again"
        )
    try:
        tensors: dict[str, Any] = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
        raise CheckpointError(
            f"{weights}: corrupt or truncated ({exc}); convert the model again"
        ) from exc

    quantized = config.get("quantized", {})
    if not isinstance(quantized, dict):
        raise CheckpointError(f"{root / CONFIG}: 'quantized' must be an object")
    for name, q in quantized.items():
        t = tensors.get(name)
        try:
            block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[q["ggml_type"]]]
            rows, cols = q["shape"]
            if not (type(rows) is int and type(cols) is int and cols % block_size == 0):
                raise ValueError("shape must be two integers, whole blocks per row")
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{root / CONFIG}: bad quantized entry for {name!r}: {str(q)[:200]}"
            ) from exc
        if (
            t is None
            or t.dtype != torch.uint8
            or tuple(t.shape) != (rows, cols // block_size * type_size)
        ):
            raise CheckpointError(
                f"{weights}: tensor {name!r} does not match its {q['ggml_type']} entry in "
                f"{CONFIG}; convert the model again"
            )
        tensors[name] = QuantizedTensor(q["ggml_type"], t.numpy(), (rows, cols))

    check_shapes(weights, cfg, tensors)
    tokenizer = None
    if (root / TOKENIZER).exists():
        try:
            spec = _read_json(root / TOKENIZER)
            if not isinstance(spec, dict):
                raise TypeError("not an object")
            tokenizer = TokenizerSpec(**spec)
        except TypeError as exc:
            raise CheckpointError(f"{root / TOKENIZER}: not a TokenizerSpec ({exc})") from exc
    meta = config.get("metadata")
    # Free-form facts (name, license, source): a malformed block loses them, not the model.
    metadata = {**(meta if isinstance(meta, dict) else {}), "format": "native",
                "path": str(root.resolve())}
    return Checkpoint(cfg, tensors, tokenizer, metadata)
