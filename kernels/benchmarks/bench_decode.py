"""Decode attention (one query per sequence, batch 16, cache 8192) against SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from llmos_kernels import decode_attention
from measure import time_ms

BATCH, HEADS, CACHE = 16, 16, 8192


def _case(D: int, hkv: int) -> dict:
    q = torch.randn(BATCH, HEADS, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(BATCH, hkv, CACHE, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    lens = torch.full((BATCH,), CACHE, device="cuda", dtype=torch.int32)
    q4 = q.unsqueeze(2)  # (B, H, 1, D) for SDPA
    ours = time_ms(lambda: decode_attention(q, k, v, lens))
    ref = time_ms(lambda: F.scaled_dot_product_attention(q4, k, v, enable_gqa=hkv != HEADS))
    n_bytes = 2 * k.numel() * k.element_size()  # the whole K and V cache
    return dict(
        kernel="decode_attention", B=BATCH, Hq=HEADS, Hkv=hkv, S=CACHE, D=D, dtype="bf16",
        us=ours * 1e3, sdpa_us=ref * 1e3, ratio=ref / ours, gbs=n_bytes / ours / 1e6,
    )


def run(head_dims=(64, 128), kv_heads=(16, 4)) -> list[dict]:
    rows = []
    for D in head_dims:
        for hkv in kv_heads:
            r = _case(D, hkv)
            rows.append(r)
            print(f"  decode D={D} Hkv={hkv}: {r['us']:.0f} us, x{r['ratio']:.2f} vs SDPA, "
                  f"{r['gbs']:.0f} GB/s", flush=True)
    return rows
