"""Read GGUF checkpoints (llama.cpp's format) into a Checkpoint in OUR naming.

Supported `general.architecture`: "llama" (SmolLM2, Llama 2/3, Mistral as converted by
llama.cpp), "qwen2" (llama plus q/k/v bias) and "gpt2". Quantized 2-D weights stay as
QuantizedTensor with their raw blocks; F32/F16/BF16 become torch tensors; 1-D tensors
(norms, biases) become float32.

llama.cpp's converter reorders the Q and K rows of "llama" models so that each rotary
pair sits in adjacent rows (its interleaved rope); we undo that so Q/K are in the HF
"rotate_half" layout the Transformer expects. Qwen2 GGUFs are not permuted (llama.cpp
uses the NEOX rope for them), and GPT-2 has no rotary at all.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmos_jupyter.core.checkpoint import Checkpoint, QuantizedTensor, Tensor
from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.errors import CheckpointError, ConfigError
from llmos_jupyter.formats.gguf_file import GGUFFile, GGUFTensorInfo
from llmos_jupyter.formats.gguf_tokenizer import tokenizer_from_fields
from llmos_jupyter.formats.shapes import check_shapes

# GGUF architecture -> (our arch, were Q/K rows permuted by llama.cpp's converter?)
ARCHITECTURES: dict[str, tuple[str, bool]] = {
    "llama": ("llama", True),
    "qwen2": ("llama", False),
    "gpt2": ("gpt2", False),
}
DENSE_TYPES = ("F32", "F16", "BF16")
# Block types a weight may have: those gguf-py (0.19) dequantizes, so every mode can load
# them. Integer and double tensors (I8..I64, F64) exist in GGUF but are never weights of
# the models we run; Q8_1 and Q8_K are llama.cpp's internal activation types.
QUANT_TYPES = (
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "TQ1_0", "TQ2_0", "MXFP4", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S",
    "IQ1_M", "IQ4_NL", "IQ4_XS",
)


def unpermute_qk_index(n_rows: int, n_heads: int) -> np.ndarray:
    """Row order that undoes llama.cpp's Q/K permutation.

    Per head of D rows, llama.cpp puts HF row j*D/2 + i (i < D/2, j in {0, 1}) at row
    2*i + j, so rotary pairs (i, i + D/2) become adjacent. Taking rows in the returned
    order restores the HF "rotate_half" layout: result[h*D + j*D/2 + i] = h*D + 2*i + j.
    """
    head_dim = n_rows // n_heads
    if head_dim * n_heads != n_rows or head_dim % 2:
        raise CheckpointError(f"cannot split {n_rows} Q/K rows into {n_heads} heads of even size")
    permuted = np.arange(n_rows).reshape(n_heads, head_dim // 2, 2)  # (H, i, j) -> 2i + j
    return permuted.transpose(0, 2, 1).reshape(-1)  # (H, j, i)


def _field(gf: GGUFFile, key: str, default: Any = None, *, required: bool = False) -> Any:
    if key in gf.fields:
        return gf.fields[key]
    if required:
        raise CheckpointError(
            f"{gf.path}: metadata key {key!r} is missing; the GGUF file is incomplete"
        )
    return default


def _text(gf: GGUFFile, key: str) -> str | None:
    """A free-form string fact (name, license) for `show`; None when absent or not text."""
    value = gf.fields.get(key)
    return value if isinstance(value, str) else None


def _architecture(gf: GGUFFile) -> tuple[str, str, bool]:
    gguf_arch = _field(gf, "general.architecture", required=True)
    if not isinstance(gguf_arch, str) or gguf_arch not in ARCHITECTURES:
        raise CheckpointError(
            f"{gf.path}: architecture {gguf_arch!r} is not supported; LLMOS runs "
            f"{sorted(ARCHITECTURES)} GGUF models"
        )
    arch, permuted = ARCHITECTURES[gguf_arch]
    return gguf_arch, arch, permuted


def _quantization(gf: GGUFFile) -> tuple[str, dict[str, int]]:
    """Per-type tensor counts and the type holding most weight elements (2-D tensors)."""
    counts = Counter(t.ggml_type for t in gf.tensors.values())
    elements: Counter[str] = Counter()
    for t in gf.tensors.values():
        if len(t.shape) >= 2:
            elements[t.ggml_type] += t.n_elements
    dominant = elements.most_common(1)[0][0] if elements else "F32"
    return dominant, dict(sorted(counts.items()))


def _config(gf: GGUFFile, gguf_arch: str, arch: str) -> ModelConfig:
    """Map `{arch}.*` metadata keys (and tensor shapes) to a ModelConfig.

    Values go to ModelConfig as stored, so its checks see them: a float where an integer
    belongs, a NaN epsilon or a context of 2^32 - 1 is refused there, not converted.
    """
    p = gguf_arch + "."
    embd = gf.tensors.get("token_embd.weight")
    if embd is None:
        raise CheckpointError(f"{gf.path}: tensor 'token_embd.weight' is missing")
    n_heads = _field(gf, p + "attention.head_count", required=True)
    fields: dict[str, Any] = dict(
        arch=arch,
        # The embedding's rows, not the token list, size the model (lists may be padded).
        vocab_size=embd.shape[0],
        dim=_field(gf, p + "embedding_length", required=True),
        n_layers=_field(gf, p + "block_count", required=True),
        n_heads=n_heads,
        n_kv_heads=_field(gf, p + "attention.head_count_kv", n_heads),
        head_dim=_field(gf, p + "attention.key_length"),
        ffn_dim=_field(gf, p + "feed_forward_length", required=True),
        max_seq_len=_field(gf, p + "context_length", required=True),
        tie_embeddings="output.weight" not in gf.tensors,
    )
    if arch == "llama":
        fields.update(
            norm_eps=_field(gf, p + "attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta=_field(gf, p + "rope.freq_base", 10000.0),
            qkv_bias="blk.0.attn_q.bias" in gf.tensors,
            activation="silu",
        )
    else:
        fields.update(
            norm_eps=_field(gf, p + "attention.layer_norm_epsilon", 1e-5),
            qkv_bias=True,
            activation="gelu_tanh",
        )
    if isinstance(fields["norm_eps"], float) and np.isfinite(fields["norm_eps"]):
        # Stored as float32: 1e-5 comes back as 9.99999974e-06; keep the intended value.
        fields["norm_eps"] = float(
            np.format_float_positional(np.float32(fields["norm_eps"]), unique=True)
        )
    scaling = _field(gf, p + "rope.scaling.type")
    if scaling == "linear":
        fields["rope_scaling"] = {"type": "linear",
                                  "factor": _field(gf, p + "rope.scaling.factor", 1.0)}
    elif scaling not in (None, "none"):
        # Refused, not ignored: with the wrong frequencies a model loads and answers wrongly.
        raise CheckpointError(f"{gf.path}: RoPE scaling {scaling!r} is not supported "
                              "(supported: linear, and llama3 frequency factors)")
    try:
        cfg = ModelConfig(**fields)
    except ConfigError as exc:
        raise CheckpointError(f"{gf.path}: inconsistent model metadata: {exc}") from exc
    rot = _field(gf, p + "rope.dimension_count")
    if arch == "llama" and rot is not None and rot != cfg.head_dim:
        raise CheckpointError(
            f"{gf.path}: partial rotary ({rot!r} of {cfg.head_dim} dims per head) is not "
            "supported by LLMOS's Transformer"
        )
    return cfg


class _TensorLoader:
    """Turns GGUF tensors into our Tensor kinds, consuming them from the table."""

    def __init__(self, gf: GGUFFile) -> None:
        self.gf = gf
        self.unused = dict(gf.tensors)

    def info(self, name: str) -> GGUFTensorInfo:
        info = self.unused.pop(name, None)
        if info is None:
            raise CheckpointError(
                f"{self.gf.path}: required tensor {name!r} is missing; the file is incomplete "
                "or was converted for a different architecture"
            )
        return info

    def load(self, name: str, rows: np.ndarray | None = None) -> Tensor:
        """Load `name`, optionally taking its rows in the order `rows`."""
        info = self.info(name)
        # A type outside these is a retyped (corrupt) table entry or a model we cannot run;
        # llama.cpp's converters write norms, biases and rope_freqs as F32, never in blocks.
        allowed = DENSE_TYPES if len(info.shape) == 1 else DENSE_TYPES + QUANT_TYPES
        if info.ggml_type not in allowed:
            raise CheckpointError(
                f"{self.gf.path}: tensor {name!r} of shape {info.shape} has type "
                f"{info.ggml_type}, which LLMOS does not accept there (allowed: "
                f"{', '.join(allowed)}); the file is corrupt or of an unsupported kind"
            )
        if len(info.shape) == 1:
            return self._dense(info, rows).float()
        if len(info.shape) != 2:
            raise CheckpointError(
                f"{self.gf.path}: tensor {name!r} has shape {info.shape}, expected 2-D"
            )
        if info.ggml_type in DENSE_TYPES:
            return self._dense(info, rows)
        blocks = self.gf.raw(info)
        # Fancy indexing copies; a plain np.array copy detaches us from the memory map.
        blocks = blocks[rows] if rows is not None else np.array(blocks)
        return QuantizedTensor(info.ggml_type, blocks, (info.shape[0], info.shape[1]))

    def _dense(self, info: GGUFTensorInfo, rows: np.ndarray | None) -> torch.Tensor:
        arr = self.gf.array(info)
        arr = arr[rows] if rows is not None else np.array(arr)
        if info.ggml_type == "BF16":
            return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(arr)


def fuse_rows(parts: list[Tensor]) -> Tensor:
    """Concatenate weights along rows, keeping quantized blocks when all parts share a type.

    Mixed kinds (e.g. Q4_K q/k with a Q6_K v, or F16 beside Q8_0) are dequantized to
    float32 first: a fused matrix must have one representation.
    """
    if all(isinstance(p, QuantizedTensor) for p in parts):
        if len({(p.ggml_type, p.shape[1]) for p in parts}) == 1:
            return QuantizedTensor.cat_rows(parts)  # type: ignore[arg-type]
    elif all(isinstance(p, torch.Tensor) for p in parts):
        if len({p.dtype for p in parts}) == 1:  # type: ignore[union-attr]
            return torch.cat(parts, dim=0)  # type: ignore[arg-type]
    dense = [p.dequantize() if isinstance(p, QuantizedTensor) else p.float() for p in parts]
    return torch.cat(dense, dim=0)


def _llama_tensors(ld: _TensorLoader, cfg: ModelConfig, permuted: bool) -> dict[str, Tensor]:
    q_rows = unpermute_qk_index(cfg.n_heads * cfg.head_dim, cfg.n_heads) if permuted else None
    k_rows = unpermute_qk_index(cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads) if permuted else None
    out: dict[str, Tensor] = {"tok_embeddings.weight": ld.load("token_embd.weight")}
    for i in range(cfg.n_layers):
        b, o = f"blk.{i}.", f"layers.{i}."
        out[o + "attn_norm.weight"] = ld.load(b + "attn_norm.weight")
        out[o + "attn.wqkv.weight"] = fuse_rows(
            [
                ld.load(b + "attn_q.weight", q_rows),
                ld.load(b + "attn_k.weight", k_rows),
                ld.load(b + "attn_v.weight"),
            ]
        )
        if cfg.qkv_bias:
            out[o + "attn.wqkv.bias"] = fuse_rows(
                [
                    ld.load(b + "attn_q.bias", q_rows),
                    ld.load(b + "attn_k.bias", k_rows),
                    ld.load(b + "attn_v.bias"),
                ]
            )
        out[o + "attn.wo.weight"] = ld.load(b + "attn_output.weight")
        out[o + "ffn_norm.weight"] = ld.load(b + "ffn_norm.weight")
        out[o + "ffn.w_in.weight"] = fuse_rows(
            [ld.load(b + "ffn_gate.weight"), ld.load(b + "ffn_up.weight")]
        )
        out[o + "ffn.w_out.weight"] = ld.load(b + "ffn_down.weight")
    out["norm.weight"] = ld.load("output_norm.weight")
    if not cfg.tie_embeddings:
        out["output.weight"] = ld.load("output.weight")
    return out


def _gpt2_tensors(ld: _TensorLoader, cfg: ModelConfig) -> dict[str, Tensor]:
    # llama.cpp already stores GPT-2's Conv1D weights as [out, in], i.e. our layout.
    out: dict[str, Tensor] = {
        "tok_embeddings.weight": ld.load("token_embd.weight"),
        "pos_embeddings.weight": ld.load("position_embd.weight"),
    }
    names = {
        "attn_norm": "attn_norm",
        "attn_qkv": "attn.wqkv",
        "attn_output": "attn.wo",
        "ffn_norm": "ffn_norm",
        "ffn_up": "ffn.w_in",
        "ffn_down": "ffn.w_out",
    }
    for i in range(cfg.n_layers):
        for theirs, ours in names.items():
            for kind in ("weight", "bias"):
                out[f"layers.{i}.{ours}.{kind}"] = ld.load(f"blk.{i}.{theirs}.{kind}")
    for kind in ("weight", "bias"):
        out[f"norm.{kind}"] = ld.load(f"output_norm.{kind}")
    if not cfg.tie_embeddings:
        out["output.weight"] = ld.load("output.weight")
    return out


def _frequency_factors(ld: _TensorLoader, cfg: ModelConfig) -> ModelConfig:
    """cfg with the RoPE frequency divisors of a `rope_freqs.weight` tensor, which llama.cpp
    writes for Llama 3.1+ in place of its llama3 scaling parameters."""
    if "rope_freqs.weight" not in ld.unused:
        return cfg
    if cfg.rope_scaling is not None:
        raise CheckpointError(f"{ld.gf.path}: both rope_freqs and {cfg.rope_scaling['type']} "
                              "RoPE scaling are given; which applies is ambiguous")
    factors = ld.load("rope_freqs.weight").float().flatten().tolist()
    try:
        return dataclasses.replace(cfg, rope_scaling={"type": "factors", "factors": factors})
    except ConfigError as exc:
        raise CheckpointError(f"{ld.gf.path}: rope_freqs.weight: {exc}") from exc


def read_gguf(path: str | Path) -> Checkpoint:
    """Read a GGUF file into a Checkpoint (config, tensors in OUR naming, tokenizer, metadata).

    Raises CheckpointError when the file is not GGUF, is truncated or corrupt, has an
    unsupported architecture, lacks a required tensor, or has tensors we cannot place.
    """
    gf = GGUFFile(path)
    gguf_arch, arch, permuted = _architecture(gf)
    cfg = _config(gf, gguf_arch, arch)
    ld = _TensorLoader(gf)
    cfg = _frequency_factors(ld, cfg)
    try:
        tensors = _llama_tensors(ld, cfg, permuted) if arch == "llama" else _gpt2_tensors(ld, cfg)
    except (ValueError, IndexError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"{gf.path}: tensor shapes do not match the metadata ({exc})"
        ) from exc
    check_shapes(gf.path, cfg, tensors)
    if ld.unused:
        raise CheckpointError(
            f"{gf.path}: unexpected tensors {sorted(ld.unused)[:5]}: this model uses parts "
            "LLMOS's Transformer does not have"
        )
    dominant, counts = _quantization(gf)
    name = _text(gf, "general.name")
    cfg.extra.update(name=name, source_format="gguf", quantization=dominant)
    metadata = {
        "format": "gguf",
        "path": str(gf.path.resolve()),
        "file_size": gf.file_size,
        "gguf_version": gf.version,
        "architecture": gguf_arch,
        "name": name,
        "license": _text(gf, "general.license"),
        "quantization": dominant,
        "quantization_counts": counts,
    }
    return Checkpoint(cfg, tensors, tokenizer_from_fields(gf.fields, gf.path), metadata)


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Cheap facts about a GGUF file for `show`, without loading tensor data.

    Returns a dict with format, path, file_size, architecture, name, license,
    quantization (dominant type), quantization_counts, n_params, context_length,
    n_layers, dim, n_heads, n_kv_heads, vocab_size. Raises CheckpointError like read_gguf.
    """
    gf = GGUFFile(path)
    gguf_arch = _field(gf, "general.architecture", required=True)
    if not isinstance(gguf_arch, str):
        raise CheckpointError(f"{gf.path}: general.architecture is not a string")
    p = gguf_arch + "."
    embd = gf.tensors.get("token_embd.weight")
    dominant, counts = _quantization(gf)
    return {
        "format": "gguf",
        "path": str(gf.path.resolve()),
        "file_size": gf.file_size,
        "architecture": gguf_arch,
        "supported": gguf_arch in ARCHITECTURES,
        "name": _text(gf, "general.name"),
        "license": _text(gf, "general.license"),
        "quantization": dominant,
        "quantization_counts": counts,
        "n_params": sum(t.n_elements for t in gf.tensors.values()),
        "context_length": _field(gf, p + "context_length"),
        "n_layers": _field(gf, p + "block_count"),
        "dim": _field(gf, p + "embedding_length"),
        "n_heads": _field(gf, p + "attention.head_count"),
        "n_kv_heads": _field(gf, p + "attention.head_count_kv"),
        "vocab_size": embd.shape[0] if embd is not None else None,
    }
