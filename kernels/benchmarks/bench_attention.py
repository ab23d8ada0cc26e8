"""Attention forward and forward+backward TFLOP/s against F.scaled_dot_product_attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from llmos_kernels import attention
from measure import time_ms

B, H = 4, 16
SEQ_LENS = (1024, 4096, 8192)
HEAD_DIMS = (64, 128)


def _flops(T: int, D: int, causal: bool) -> float:
    """Two T x T x D matmuls; causal does about half the work."""
    f = 4.0 * B * H * T * T * D
    return f / 2 if causal else f


def _case(T: int, D: int, causal: bool) -> dict:
    q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    do = torch.randn_like(q)
    ours_fwd = time_ms(lambda: attention(q, k, v, causal=causal))
    sdpa_fwd = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    ours_fb = time_ms(lambda: attention(q, k, v, causal=causal).backward(do),
                      grad_to_none=[q, k, v])
    sdpa_fb = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                      .backward(do), grad_to_none=[q, k, v])
    fwd = _flops(T, D, causal)
    fb = 3.5 * fwd  # the backward does 5 matmuls to the forward's 2
    return dict(
        kernel="attention", B=B, H=H, T=T, D=D, causal=causal, dtype="bf16",
        fwd_tflops=fwd / ours_fwd / 1e9, sdpa_fwd_tflops=fwd / sdpa_fwd / 1e9,
        fwd_ratio=sdpa_fwd / ours_fwd,
        fwdbwd_tflops=fb / ours_fb / 1e9, sdpa_fwdbwd_tflops=fb / sdpa_fb / 1e9,
        fwdbwd_ratio=sdpa_fb / ours_fb,
    )


def run(seq_lens=SEQ_LENS, head_dims=HEAD_DIMS) -> list[dict]:
    rows = []
    for D in head_dims:
        for T in seq_lens:
            for causal in (False, True):
                row = _case(T, D, causal)
                rows.append(row)
                print(f"  attention T={T} D={D} causal={causal}: "
                      f"fwd {row['fwd_tflops']:.0f} TFLOP/s x{row['fwd_ratio']:.2f}, "
                      f"fwd+bwd {row['fwdbwd_tflops']:.0f} TFLOP/s x{row['fwdbwd_ratio']:.2f} "
                      "vs SDPA", flush=True)
    return rows
