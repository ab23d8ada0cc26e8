"""Linear layers that multiply float32 activations by GGML Q4_0 / Q4_1 / Q8_0 blocks.

This is weight mode "ggml": the checkpoint's own quantized weights, float32 everywhere
else. It matches float32 on the dequantized weights to float32 rounding (greedy decoding
stays identical, see loading.AUTO_MODES) while reading 4-8 bits per weight, so it is the
fastest exact mode on CPU. The kernels are native.py's (csrc/gemv.h): they dequantize in
registers to exactly the dense float32 weights, so "ggml" decodes bit for bit like
"float32" on the fused path; `available()` says whether they build here.

Up to GEMV_MAX_ROWS rows (decode steps, short prompts) use the kernel; more rows (long
prefills) dequantize the weight once into float32 and use the BLAS matmul, which is
faster there.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmos_jupyter.model import backend, native

# The crossover measured on 2 AVX2 cores (benchmarks/bench_batch.py's machine): the kernel
# (dequantizing each block once for all rows) won up to 32 rows and tied at 64 against
# vectorized dequantize + BLAS, on SmolLM2's 3072x576 and 576x1536 Q4_1 matrices.
GEMV_MAX_ROWS = 48


def available() -> bool:
    """Whether the kernels compile and load here (needs a C++ compiler)."""
    return native.available()


def _fp16(b: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(b.copy().view(np.float16)[..., 0].astype(np.float32))


class GGMLLinear(nn.Module):
    """y = x W^T (+ b) with W kept as GGML blocks; float32 in, float32 out."""

    KINDS = ("Q4_0", "Q4_1", "Q8_0")

    def __init__(self, ggml_type: str, blocks: np.ndarray, shape: tuple[int, int],
                 bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if ggml_type not in self.KINDS:
            raise ValueError(f"GGMLLinear supports {self.KINDS}, not {ggml_type}")
        N, K = shape
        G = K // 32
        self.ggml_type, self.in_features, self.out_features = ggml_type, K, N
        size = {"Q4_0": 18, "Q4_1": 20, "Q8_0": 34}[ggml_type]
        b = np.ascontiguousarray(blocks).reshape(N, G, size)  # (N, groups, bytes per block)
        d = _fp16(b[:, :, 0:2])  # (N, G)
        if ggml_type == "Q8_0":
            qs = torch.from_numpy(b[:, :, 2:].copy().view(np.int8).reshape(N, K))  # (N, K)
            mn = None
        else:
            start = 4 if ggml_type == "Q4_1" else 2
            qs = torch.from_numpy(b[:, :, start:].copy())  # (N, G, 16) nibbles
            mn = _fp16(b[:, :, 2:4]) if ggml_type == "Q4_1" else None  # Q4_0: w = d*(q-8)
        self.register_buffer("qs", qs)
        self.register_buffer("d", d)
        self.register_buffer("mn", mn)
        self.register_buffer("bias", None if bias is None else bias.float())

    def mat(self) -> native.Mat:
        """The kernels' view of this weight (valid while the buffers are)."""
        return native.mat(self.ggml_type, self.qs, self.d, self.mn, self.bias, self.panels())

    def panels(self) -> tuple[torch.Tensor, ...]:
        """The weight repacked for the kernels (native.pack), built once per buffer: the
        packed copy costs the quantized weight's size again."""
        key = (self.qs.data_ptr(), self.d.data_ptr())
        cached = getattr(self, "_panels", None)
        if cached is None or cached[0] != key:
            cached = self._panels = (key, native.pack(self.ggml_type, self.qs, self.d, self.mn))
        return cached[1]

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._panels = None  # the buffers were overwritten in place: pack them again

    def dequantized(self) -> torch.Tensor:
        """The float32 weight [N, K], rounded as gguf's dequantizer rounds it:
        Q4_1 (d*q) + mn, Q4_0 d*(q-8), Q8_0 q*d."""
        N, K = self.out_features, self.in_features
        if self.ggml_type == "Q8_0":
            q = self.qs.float().view(N, K // 32, 32)
            return (q * self.d[..., None]).view(N, K)
        q = torch.cat([self.qs & 0x0F, self.qs >> 4], dim=-1).float()  # (N, G, 32)
        if self.mn is None:
            return ((q - 8) * self.d[..., None]).view(N, K)
        return (q * self.d[..., None] + self.mn[..., None]).view(N, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        if x2.shape[0] > GEMV_MAX_ROWS:  # compute-bound: unpack once, then BLAS
            w = self.dequantized() if x.requires_grad else native.dequantize(self.mat())
            return F.linear(x, w, self.bias)
        y = native.gemv(self.mat(), x2.float().contiguous())  # (M, N), bias included
        return y.view(*x.shape[:-1], self.out_features)


class FusedRMSNorm(nn.Module):
    """RMSNorm as one C++ pass for float32 CPU inference; anything else (gradients, other
    dtypes or devices) goes through the backend switch like norms.RMSNorm, whose
    weight it shares."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.eps = norm.eps
        self.weight = norm.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and x.device.type == "cpu" and not x.requires_grad:
            return native.rms_norm(x.contiguous(), self.weight, self.eps)
        return backend.rms_norm(x, self.weight, self.eps)
