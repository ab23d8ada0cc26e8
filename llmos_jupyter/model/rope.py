"""Rotary position embeddings in the Hugging Face "rotate_half" layout.

Each head vector of size D is split into halves (x1, x2) that rotate as pairs
(x1[i], x2[i]) by angle pos * theta^(-2i/D). Our checkpoints store Q/K rows in this
layout (GGUF readers undo llama.cpp's interleaved permutation).
"""

from __future__ import annotations

import math
from typing import Any

import torch


def rope_tables(
    head_dim: int, max_seq_len: int, theta: float, device: torch.device | str | None = None,
    scaling: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (cos, sin_signed), each float32 [max_seq_len, head_dim], with the
    frequencies scaled as `scaling` says (ModelConfig.rope_scaling; None: plain RoPE).

    `sin_signed` is sin with the first half negated, so that
    rotate_half(x) * sin == swap_halves(x) * sin_signed — one flip instead of
    slice + neg + cat on the decode hot path.
    """
    # Computed in float32 exactly as transformers does, so positions match bit for bit.
    # Always on CPU first (then moved): under a meta-device context torch would run these
    # through its Python refs, whose first use imports torch._dynamo (~1.8 s of a load).
    cpu = torch.device("cpu")
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32,
                                             device=cpu) / head_dim))
    if scaling is not None:
        inv_freq = scaled_frequencies(inv_freq, scaling)
    pos = torch.arange(max_seq_len, dtype=torch.float32, device=cpu)
    freqs = torch.outer(pos, inv_freq)  # (S, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (S, D)
    cos, sin = emb.cos(), emb.sin()
    sin_signed = torch.cat([-sin[:, : head_dim // 2], sin[:, head_dim // 2 :]], dim=-1)
    return cos.to(device), sin_signed.to(device)


def scaled_frequencies(inv_freq: torch.Tensor, scaling: dict[str, Any]) -> torch.Tensor:
    """RoPE's inverse frequencies [D/2] under a scaling (see ModelConfig.rope_scaling), in
    float32 and in the order of operations transformers uses, so tables match its bits."""
    kind = scaling["type"]
    if kind == "linear":  # every position squeezed by the factor
        return inv_freq / scaling["factor"]
    if kind == "factors":  # llama.cpp's rope_freqs: one divisor per frequency
        return inv_freq / torch.tensor(scaling["factors"], dtype=torch.float32,
                                       device=inv_freq.device)
    if kind != "llama3":
        raise ValueError(f"unknown RoPE scaling type {kind!r}")
    # Llama 3.1: wavelengths longer than the original context / low_freq_factor are
    # interpolated by the factor, shorter than context / high_freq_factor kept, and the
    # band between blended linearly in context / wavelength.
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    context = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    longest = wavelen > context / low
    shortest = wavelen < context / high
    base = torch.where(longest, inv_freq / factor, inv_freq)
    t = (context / wavelen - low) / (high - low)
    blended = (1 - t) * base / factor + t * base
    return torch.where(~shortest & ~longest, blended, base)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., D] by tables broadcastable to it (fast path: 3 kernels).

    Swapping the halves is a flip over a (2, D/2) view of the last dimension.
    """
    swapped = x.unflatten(-1, (2, -1)).flip(-2).flatten(-2)  # (..., D): [x2, x1]
    return torch.addcmul(x * cos, swapped, sin_signed)


def apply_rope_reference(
    x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor
) -> torch.Tensor:
    """The textbook form: x * cos + rotate_half(x) * sin, for checking `apply_rope`."""
    half = x.shape[-1] // 2
    sin = torch.cat([-sin_signed[..., :half], sin_signed[..., half:]], dim=-1)
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
