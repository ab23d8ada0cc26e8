"""The torch backends of the switch in backend.py: `reference` (the formula) and `sdpa`.

Both run attention only; RMSNorm and cross-entropy under them are torch's own (see
backend.rms_norm, backend.cross_entropy). Shapes are those of backend.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# --- reference: the formula, nothing clever -------------------------------------------


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    # (B, Hkv, S, D) -> (B, Hkv * n_rep, S, D); query head h reads KV head h // n_rep.
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def causal_mask(T: int, S: int, device: torch.device) -> torch.Tensor:
    """[T, S] bool, True where query i may see key j: causal aligned to the end, so with
    S > T (queries continuing a cached prefix of S - T keys) query i sits at S - T + i."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def reference_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The reference causal attention: the formula, in float32."""
    T, D, S = q.shape[-2], q.shape[-1], k.shape[-2]
    n_rep = q.shape[1] // k.shape[1]
    k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(D)  # (B, Hq, T, S)
    causal = causal_mask(T, S, q.device)
    scores = scores.masked_fill(~causal, float("-inf"))
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


def reference_decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor
) -> torch.Tensor:
    """The reference decode attention over each row's cache prefix."""
    D, S = q.shape[-1], k_cache.shape[2]
    n_rep = q.shape[1] // k_cache.shape[1]
    k, v = _repeat_kv(k_cache, n_rep).float(), _repeat_kv(v_cache, n_rep).float()
    scores = (q.float().unsqueeze(2) @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(D)  # (B,Hq,S)
    valid = torch.arange(S, device=q.device) < cache_seqlens[:, None]  # (B, S)
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    out = (scores.softmax(dim=-1).unsqueeze(2) @ v).squeeze(2)  # (B, Hq, D)
    return out.to(q.dtype)


# --- sdpa: torch's fused kernels ------------------------------------------------------


def sdpa_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention by torch's scaled_dot_product_attention."""
    gqa = q.shape[1] != k.shape[1]
    T, S = q.shape[2], k.shape[2]
    if S == T:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    # is_causal aligns to the top-left; a continued prefix needs the end-aligned mask.
    mask = causal_mask(T, S, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


def sdpa_decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor
) -> torch.Tensor:
    """Decode attention by torch's scaled_dot_product_attention, GQA without copies."""
    B, Hq, D = q.shape
    Hkv = k_cache.shape[1]
    # Only the filled prefix: one host sync for the length (free on CPU).
    L = int(cache_seqlens.max())
    k, v = k_cache[:, :, :L], v_cache[:, :, :L]  # (B, Hkv, L, D) views
    # GQA without repeating K/V: the n_rep query heads sharing a KV head become that
    # head's n_rep "query positions" (head h = kv * n_rep + r, as in _repeat_kv).
    qg = q.view(B, Hkv, Hq // Hkv, D)  # (B, Hkv, n_rep, D)
    mask = None
    if B > 1:  # rows shorter than L must not see the tail of the buffer
        mask = (torch.arange(L, device=q.device) < cache_seqlens[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask)  # (B, Hkv, n_rep, D)
    return out.reshape(B, Hq, D)  # CUDA SDPA may return a non-contiguous layout
