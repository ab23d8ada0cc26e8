"""Weight-only quantized linear layers for CPU inference.

Both compute `y = x W^T (+ b)` with W stored compactly; activations enter the torch
kernel as bfloat16 (the only fast path for these torch kernels on CPU) and the result is returned in
the caller's dtype, so a model can keep its residual stream in float32.

  Int4Linear  torch's int4 group-32 layout (`_weight_int4pack_mm_for_cpu`): per group of
              32 input columns, w = (q - 8) * scale + zero. GGUF Q4_1 (w = d*q + m) maps
              exactly onto it with scale = d, zero = m + 8d; Q4_0 (w = d*(q-8)) with zero 0.
              So the model runs on the checkpoint's own 4-bit weights.
  Int8Linear  per-output-channel symmetric int8 (`_weight_int8pack_mm`), for dense weights.
  CastLinear  a dense weight in a chosen dtype, casting activations in and out.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GROUP = 32  # GGML's block size for Q4_0 / Q4_1 and torch's int4 group size here


def q4_blocks_to_int4(ggml_type: str, blocks: np.ndarray, shape: tuple[int, int]):
    """Split GGML Q4_0 / Q4_1 blocks into (q int32 [N, K] in 0..15, scale, zero float32
    [N, K/32]) such that w = (q - 8) * scale + zero exactly (in float32)."""
    N, K = shape
    nb = K // GROUP
    size = {"Q4_0": 18, "Q4_1": 20}[ggml_type]
    b = np.ascontiguousarray(blocks).reshape(N, nb, size)  # (N, groups, bytes per block)
    d = b[:, :, 0:2].copy().view(np.float16)[..., 0].astype(np.float32)  # (N, groups)
    if ggml_type == "Q4_1":
        m = b[:, :, 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        qs = b[:, :, 4:]
        zero = m + 8.0 * d
    else:
        qs = b[:, :, 2:]
        zero = np.zeros_like(d)
    # Byte j of a block holds element j (low nibble) and element j + 16 (high nibble).
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # (N, groups, 32)
    q = torch.from_numpy(q.reshape(N, K).astype(np.int32))
    return q, torch.from_numpy(d), torch.from_numpy(zero)


def quantize_int4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric group-32 min/max quantization of a dense [N, K] weight (lossy)."""
    N, K = w.shape
    g = w.float().reshape(N, K // GROUP, GROUP)  # (N, groups, 32)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo) / 15).clamp_min(1e-8)
    q = ((g - lo[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32)
    return q.reshape(N, K), scale, lo + 8 * scale


class Int4Linear(nn.Module):
    """Linear layer on int4 group-32 weights with bfloat16 activations."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                 bias: torch.Tensor | None = None) -> None:
        super().__init__()
        N, K = q.shape
        if K % GROUP:
            raise ValueError(f"int4 needs in_features divisible by {GROUP}, got {K}")
        self.in_features, self.out_features = K, N
        # Torch's CPU packing: two 4-bit values per byte, (N, K/2) uint8.
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        sz = torch.stack([scale, zero], dim=-1).transpose(0, 1)  # (K/32, N, 2)
        self.register_buffer("scales_and_zeros", sz.to(torch.bfloat16).contiguous())
        self.register_buffer("bias", None if bias is None else bias.to(torch.bfloat16))

    @classmethod
    def from_ggml(cls, ggml_type: str, blocks: np.ndarray, shape, bias=None) -> Int4Linear:
        return cls(*q4_blocks_to_int4(ggml_type, blocks, shape), bias)

    @classmethod
    def from_dense(cls, w: torch.Tensor, bias: torch.Tensor | None = None) -> Int4Linear:
        return cls(*quantize_int4(w), bias)

    def dequantized(self) -> torch.Tensor:
        """The float32 weight [N, K] this layer multiplies by (for checking)."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        # Multiplying the identity reproduces W^T through the kernel itself.
        w_t = torch.ops.aten._weight_int4pack_mm_for_cpu(
            eye, self.packed, GROUP, self.scales_and_zeros
        )
        return w_t.float().t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (M, K)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x2, self.packed, GROUP, self.scales_and_zeros
        )  # (M, N)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class Int8Linear(nn.Module):
    """Linear layer on per-channel symmetric int8 weights with bfloat16 activations."""

    def __init__(self, w: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = w.shape
        w = w.float()
        scale = (w.abs().amax(dim=1) / 127).clamp_min(1e-8)  # (N,)
        q = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", q)
        self.register_buffer("scales", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.to(torch.bfloat16))

    def dequantized(self) -> torch.Tensor:
        return self.weight_int8.float() * self.scales.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).to(torch.bfloat16)  # (M, K)
        y = torch.ops.aten._weight_int8pack_mm(x2, self.weight_int8, self.scales)  # (M, N)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)


class CastLinear(nn.Module):
    """A dense linear layer whose weight dtype differs from the activations'."""

    def __init__(self, w: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> None:
        super().__init__()
        self.out_features, self.in_features = w.shape
        self.register_buffer("weight", w.to(dtype).contiguous())
        self.register_buffer("bias", None if bias is None else bias.to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)
