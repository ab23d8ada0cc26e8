"""Checkpoint -> Transformer in a chosen weight mode and device.

Weight modes (`dtype=`):
  float32 / bfloat16 / float16  dense weights (quantized tensors dequantized), activations
                                in the same dtype.
  int8     projections as per-channel int8 (`Int8Linear`), activations bfloat16 in the
           matmuls only; the residual stream, norms, RoPE and attention stay float32.
  int4     GGUF Q4_0 / Q4_1 projections kept as they are (`Int4Linear`, exact mapping);
           other projections dense bfloat16; same float32 stream as int8.
  ggml     GGUF Q4_0 / Q4_1 / Q8_0 weights kept as blocks and multiplied in float32 by our
           C++ kernel (`GGMLLinear`); everything else float32. Matches float32 to float32
           rounding; other tensor types stay dense float32.
  auto     the fastest mode whose greedy output matches float32 (see AUTO_MODES).
"""

from __future__ import annotations

import torch
from torch import nn

from llmos_jupyter.core.checkpoint import Checkpoint, QuantizedTensor
from llmos_jupyter.errors import CheckpointError, ConfigError
from llmos_jupyter.model import ggml_linear
from llmos_jupyter.model.ggml_linear import FusedRMSNorm, GGMLLinear
from llmos_jupyter.model.norms import RMSNorm
from llmos_jupyter.model.quant import CastLinear, Int4Linear, Int8Linear
from llmos_jupyter.model.transformer import Transformer

DTYPES = ("float32", "bfloat16", "float16", "int8", "int4", "ggml", "auto")
DEVICES = ("cpu", "cuda", "auto")
_DENSE = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# dtype="auto": the fastest mode whose greedy decoding is IDENTICAL to float32's.
#
# CPU decision, measured on SmolLM2-135M-Instruct Q4_1 (2026-11, 6 prompts -- 4 chat, 2
# raw -- x 128 greedy tokens; first position where each mode's argmax leaves float32's):
#   int4 (torch int4 group-32, bf16 activations in the matmuls, float32 stream/norms/
#         attention)                          -> diverges at [-, 12, 5, 96, 58, 48]
#   int8 (per-channel, bf16 activations)      -> diverges at [-, 22, 5, 39, 9, 14]
#   bfloat16 dense                            -> diverges at [-, 12, 5, 117, 61, 30]
#   ggml (Q4_1/Q8_0 blocks x float32 activations, float32 accumulation) -> identical on all
# Torch's fast int4/int8 CPU kernels round activations AND outputs to bfloat16 (2^-9
# relative per matmul); keeping everything else in float32 does not prevent flips. Our
# own kernels (csrc/gemv.h) keep float32 end to end while reading the 4-bit blocks, and
# dequantize in registers to exactly float32's weights with float32's summation order:
# the fused decode step of "ggml" is bit for bit that of "float32" (tests check it), at
# ~1/5 of the bytes per token (the LM head is read as Q8_0).
# So: CPU auto = "ggml" for checkpoints with GGML blocks (float32 when the kernel cannot
# be compiled or nothing is quantized — float32 is then the only mode that is identical).
# CUDA auto = bfloat16 (as specified; the CPU kernel does not run there).
AUTO_MODES = {"cpu": "ggml", "cuda": "bfloat16"}


def resolve_device(device: str) -> torch.device:
    """'cpu' | 'cuda' | 'auto' -> torch.device; ConfigError for anything else."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {list(DEVICES)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; use 'cpu'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device, ckpt: Checkpoint | None = None) -> str:
    """Validate a weight mode name and replace 'auto' by the concrete mode."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {list(DTYPES)}")
    if dtype == "auto":
        dtype = AUTO_MODES.get(device.type, "float32")
        if dtype == "ggml" and not (_has_ggml_blocks(ckpt) and ggml_linear.available()):
            dtype = "float32"
    if dtype in ("int4", "int8", "ggml") and device.type != "cpu":
        raise ConfigError(f"dtype {dtype!r} runs on CPU only for now; use 'bfloat16' on CUDA")
    return dtype


def _has_ggml_blocks(ckpt: Checkpoint | None) -> bool:
    return ckpt is not None and any(
        isinstance(t, QuantizedTensor) and t.ggml_type in GGMLLinear.KINDS
        for t in ckpt.tensors.values()
    )


def _dense(t, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(t, QuantizedTensor):
        return t.dequantize(torch.float32).to(dtype)
    return t.to(dtype)


def _projection(mode: str, weight, bias) -> nn.Module:
    """The module for one projection weight in a quantized mode."""
    bias = None if bias is None else _dense(bias, torch.float32)
    if mode == "ggml":
        if isinstance(weight, QuantizedTensor) and weight.ggml_type in GGMLLinear.KINDS:
            return GGMLLinear(weight.ggml_type, weight.blocks, weight.shape, bias)
        return CastLinear(_dense(weight, torch.float32), bias, torch.float32)
    if mode == "int4" and isinstance(weight, QuantizedTensor) and weight.ggml_type in ("Q4_0",
                                                                                       "Q4_1"):
        return Int4Linear.from_ggml(weight.ggml_type, weight.blocks, weight.shape, bias)
    if mode == "int8":
        return Int8Linear(_dense(weight, torch.float32), bias)
    # Non-4-bit weights in int4 mode: dense bf16 beats requantizing them to 4 bits.
    return CastLinear(_dense(weight, torch.float32), bias, torch.bfloat16)


def _lm_head(mode: str, weight) -> nn.Module:
    """The tied LM head in a quantized mode: V x dim, the largest matmul of a decode step.
    ggml: the embedding's own blocks (Q8_0 for SmolLM2). int4/int8: per-channel int8, ~2x
    faster than dense bf16 (half the bytes)."""
    if mode == "ggml":
        return _projection(mode, weight, None)
    return Int8Linear(_dense(weight, torch.float32))


def build_model(ckpt: Checkpoint, device: str = "cpu", dtype: str = "float32") -> Transformer:
    """Build our Transformer from `ckpt` in weight mode `dtype` on `device`.

    dtype: one of DTYPES; device: 'cpu', 'cuda' or 'auto'. Raises ConfigError for an
    unknown value or an unavailable device, CheckpointError when tensors are missing,
    unexpected or misshapen.
    """
    dev = resolve_device(device)
    mode = resolve_dtype(dtype, dev, ckpt)
    if mode == "ggml" and not ggml_linear.available():
        raise ConfigError("dtype 'ggml' needs a C++ compiler to build its kernel; use 'float32'")
    quantized = mode in ("int4", "int8", "ggml")
    act = torch.float32 if quantized else _DENSE[mode]
    with torch.device("meta"):
        model = Transformer(ckpt.config, dtype=act)
    model.weight_mode = mode
    expected = {name: p for name, p in model.named_parameters()}
    missing = sorted(set(expected) - set(ckpt.tensors))
    unexpected = sorted(set(ckpt.tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not match config {ckpt.config.arch!r}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
        )
    modules = dict(model.named_modules())
    for name, t in ckpt.tensors.items():
        mod_name, _, attr = name.rpartition(".")
        module = modules[mod_name]
        shape = tuple(expected[name].shape)
        if tuple(t.shape) != shape:
            raise CheckpointError(f"tensor {name!r} has shape {tuple(t.shape)}, expected {shape}")
        if quantized and isinstance(module, nn.Linear):
            if attr == "weight":
                bias = ckpt.tensors.get(f"{mod_name}.bias")
                parent, _, child = mod_name.rpartition(".")
                new = _projection(mode, t, bias).to(dev)
                setattr(modules[parent] if parent else model, child, new)
            continue
        # Norm weights, biases, embeddings: dense in the activation dtype.
        setattr(module, attr, nn.Parameter(_dense(t, act).to(dev), requires_grad=False))
    if quantized and ckpt.config.tie_embeddings:
        model.lm_head = _lm_head(mode, ckpt.tensors["tok_embeddings.weight"]).to(dev)
    if mode == "ggml":  # the kernel is built anyway: fuse the norms too (decode overhead)
        for layer in model.layers:
            if isinstance(layer.attn_norm, RMSNorm):
                layer.attn_norm = FusedRMSNorm(layer.attn_norm)
                layer.ffn_norm = FusedRMSNorm(layer.ffn_norm)
        if isinstance(model.norm, RMSNorm):
            model.norm = FusedRMSNorm(model.norm)
    model.init_buffers(dev)
    return model.eval()
