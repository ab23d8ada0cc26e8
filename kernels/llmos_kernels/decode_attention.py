"""Decode attention (flash-decoding): one new query token per sequence against a KV cache.

With one query row per head there is little parallelism along the query, so the cache
is split into chunks and each (batch, kv head, split) program produces a partial result
for its chunk: the normalised output `acc / l_i` and its base-2 log-sum-exp. A second
kernel merges the splits of each head, weighting each by exp2(lse_split - lse_max).
All query heads of a GQA group are processed together by the program that holds their
shared K/V tile, so each cache row is read once per group, not once per query head.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from llmos_kernels._checks import (
    check_float,
    check_runnable,
    check_same,
    check_same_device,
    check_tensor,
)
from llmos_kernels._runtime import dot_precision, interpreting, num_sms

HEAD_DIMS = (16, 32, 64, 128)
LOG2E = 1.4426950408889634


def decode_attention_reference(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    cache_seqlens: torch.Tensor, sm_scale: float | None = None,
) -> torch.Tensor:
    """Attention of q [B, Hq, D] over each sequence's first cache_seqlens[b] cache rows,
    in float32, returned in q's dtype; an empty sequence outputs zeros."""
    B, Hq, D = q.shape
    Hkv, S_max = k_cache.shape[1], k_cache.shape[2]
    scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    group = Hq // Hkv
    kf = k_cache.float().repeat_interleave(group, dim=1)  # (B, Hq, S_max, D)
    vf = v_cache.float().repeat_interleave(group, dim=1)  # (B, Hq, S_max, D)
    scores = torch.einsum("bhd,bhsd->bhs", q.float(), kf) * scale  # (B, Hq, S_max)
    pos = torch.arange(S_max, device=q.device)[None, :]  # (1, S_max)
    visible = pos < cache_seqlens.to(q.device).long()[:, None]  # (B, S_max)
    scores = scores.masked_fill(~visible[:, None, :], float("-inf"))
    p = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.einsum("bhs,bhsd->bhd", p, vf).to(q.dtype)


@triton.jit
def _decode_split_kernel(
    q_ptr, k_ptr, v_ptr, seqlens_ptr, mid_o_ptr, mid_lse_ptr,
    stride_qb, stride_qh, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    H_Q, GROUP, S_MAX, NUM_SPLITS, split_len, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    off_b = tl.program_id(0).to(tl.int64)
    off_kvh = tl.program_id(1).to(tl.int64)
    split = tl.program_id(2)
    # Lengths outside [0, S_MAX] are clamped rather than read out of bounds.
    seqlen = tl.minimum(tl.maximum(tl.load(seqlens_ptr + off_b).to(tl.int32), 0), S_MAX)
    start = split * split_len
    end = tl.minimum(start + split_len, seqlen)

    # The query heads of this kv head's group, padded to BLOCK_H rows for tl.dot.
    offs_g = tl.arange(0, BLOCK_H)
    head_mask = offs_g < GROUP
    offs_h = off_kvh * GROUP + offs_g
    offs_d = tl.arange(0, HEAD_DIM)
    offs_n0 = tl.arange(0, BLOCK_N)
    q = tl.load(q_ptr + off_b * stride_qb + offs_h[:, None] * stride_qh + offs_d[None, :],
                mask=head_mask[:, None], other=0.0)
    k_base = k_ptr + off_b * stride_kb + off_kvh * stride_kh
    v_base = v_ptr + off_b * stride_vb + off_kvh * stride_vh

    m_i = tl.full([BLOCK_H], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, HEAD_DIM], tl.float32)
    for start_n in range(start, end, BLOCK_N):
        offs_n = start_n + offs_n0
        key_mask = offs_n < end
        k_t = tl.load(k_base + offs_n[None, :] * stride_kn + offs_d[:, None],
                      mask=key_mask[None, :], other=0.0)  # (D, BLOCK_N)
        s = tl.dot(q, k_t, input_precision=INPUT_PRECISION) * qk_scale  # base-2 logits
        s = tl.where(key_mask[None, :], s, -float("inf"))
        m_ij = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_ij[:, None])
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :],
                    mask=key_mask[:, None], other=0.0)  # (BLOCK_N, D)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_ij

    # An empty split (past the sequence's end) gets lse = -inf: weight 0 in the merge.
    has_keys = l_i > 0.0
    o = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    lse = tl.where(has_keys, m_i + tl.math.log2(tl.where(has_keys, l_i, 1.0)), -float("inf"))
    row = (off_b * H_Q + offs_h) * NUM_SPLITS + split  # mid_* are (B, Hq, NUM_SPLITS, ...)
    tl.store(mid_o_ptr + row[:, None] * HEAD_DIM + offs_d[None, :], o, mask=head_mask[:, None])
    tl.store(mid_lse_ptr + row, lse, mask=head_mask)


@triton.jit
def _decode_reduce_kernel(
    mid_o_ptr, mid_lse_ptr, o_ptr, stride_ob, stride_oh, H_Q, NUM_SPLITS,
    HEAD_DIM: tl.constexpr, BLOCK_SPLITS: tl.constexpr,
):
    off_b = tl.program_id(0).to(tl.int64)
    off_h = tl.program_id(1).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_SPLITS)
    offs_d = tl.arange(0, HEAD_DIM)
    split_mask = offs_s < NUM_SPLITS
    row = (off_b * H_Q + off_h) * NUM_SPLITS + offs_s
    lse = tl.load(mid_lse_ptr + row, mask=split_mask, other=-float("inf"))
    o_s = tl.load(mid_o_ptr + row[:, None] * HEAD_DIM + offs_d[None, :],
                  mask=split_mask[:, None], other=0.0)
    # o = sum_s w_s o_s / sum_s w_s with w_s = exp2(lse_s - max lse); an all-empty
    # sequence (every lse -inf) has no weight at all and outputs 0.
    m = tl.max(lse, 0)
    w = tl.math.exp2(lse - tl.where(m == -float("inf"), 0.0, m))
    denom = tl.sum(w, 0)
    o = tl.sum(w[:, None] * o_s, 0) / tl.where(denom > 0.0, denom, 1.0)
    tl.store(o_ptr + off_b * stride_ob + off_h * stride_oh + offs_d, o.to(o_ptr.dtype.element_ty))


def _num_splits(batch: int, kv_heads: int, s_max: int, block_n: int, device: torch.device) -> int:
    """Enough splits that batch * kv_heads * splits programs fill the GPU about twice over,
    but never more splits than cache blocks."""
    if interpreting() or device.type != "cuda":
        target_programs = 8  # small, but still exercises several splits in tests
    else:
        target_programs = 2 * num_sms(device.index or 0)
    splits = triton.cdiv(target_programs, max(batch * kv_heads, 1))
    return max(1, min(splits, triton.cdiv(s_max, block_n), 128))


def decode_attention_forward(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    cache_seqlens: torch.Tensor, sm_scale: float,
) -> torch.Tensor:
    """Split + reduce launch; returns [B, Hq, D] in q's dtype."""
    B, Hq, D = q.shape
    Hkv, S_max = k_cache.shape[1], k_cache.shape[2]
    group = Hq // Hkv
    o = torch.empty((B, Hq, D), dtype=q.dtype, device=q.device)
    if o.numel() == 0:
        return o
    block_n = 32 if interpreting() else 64
    n_splits = _num_splits(B, Hkv, S_max, block_n, q.device)
    # Each split covers whole blocks so only the sequence's last block is ragged.
    split_len = triton.cdiv(triton.cdiv(max(S_max, 1), n_splits), block_n) * block_n
    mid_o = torch.empty((B, Hq, n_splits, D), dtype=torch.float32, device=q.device)
    mid_lse = torch.empty((B, Hq, n_splits), dtype=torch.float32, device=q.device)
    _decode_split_kernel[(B, Hkv, n_splits)](
        q, k_cache, v_cache, cache_seqlens, mid_o, mid_lse,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        Hq, group, S_max, n_splits, split_len, sm_scale * LOG2E,
        HEAD_DIM=D, BLOCK_H=max(16, triton.next_power_of_2(group)), BLOCK_N=block_n,
        INPUT_PRECISION=dot_precision(q.dtype), num_warps=4, num_stages=1 if interpreting() else 3,
    )
    _decode_reduce_kernel[(B, Hq)](
        mid_o, mid_lse, o, o.stride(0), o.stride(1), Hq, n_splits,
        HEAD_DIM=D, BLOCK_SPLITS=triton.next_power_of_2(n_splits), num_warps=1 if D <= 32 else 2,
    )
    return o


def decode_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
    cache_seqlens: torch.Tensor, sm_scale: float | None = None,
) -> torch.Tensor:
    """Attention of one new query token per sequence over its KV cache (forward only).

    q: [B, Hq, D]; k_cache, v_cache: [B, Hkv, S_max, D] with Hq % Hkv == 0 and D in
    {16, 32, 64, 128}; cache_seqlens: [B] integer tensor on the same device, sequence b
    attending to its first cache_seqlens[b] rows (values are clamped to [0, S_max]; an
    empty sequence outputs zeros). sm_scale defaults to 1/sqrt(D). Returns [B, Hq, D] in
    q's dtype. Raises ValueError naming the argument for wrong ranks or shapes, head
    mismatches, unsupported D, mixed dtypes or devices.
    """
    fn = "decode_attention"
    check_tensor(fn, "q", q, 3)
    check_tensor(fn, "k_cache", k_cache, 4)
    check_tensor(fn, "v_cache", v_cache, 4)
    check_tensor(fn, "cache_seqlens", cache_seqlens, 1)
    check_float(fn, "q", q)
    check_same(fn, "q", q, k_cache=k_cache, v_cache=v_cache)
    check_same_device(fn, "q", q, cache_seqlens=cache_seqlens)
    check_runnable(fn, "q", q)
    B, Hq, D = q.shape
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"{fn}: k_cache has shape {tuple(k_cache.shape)} "
                         f"but v_cache has {tuple(v_cache.shape)}")
    if k_cache.shape[0] != B:
        raise ValueError(f"{fn}: k_cache has batch {k_cache.shape[0]} but q has {B}")
    if k_cache.shape[3] != D:
        raise ValueError(f"{fn}: k_cache has head dim {k_cache.shape[3]} but q has {D}")
    if D not in HEAD_DIMS:
        raise ValueError(f"{fn}: q has head dim {D}; supported head dims are {HEAD_DIMS}")
    Hkv = k_cache.shape[1]
    if Hkv == 0 or Hq % Hkv != 0:
        raise ValueError(f"{fn}: k_cache has {Hkv} heads but q has {Hq}; "
                         "q heads must be a multiple of k_cache heads")
    if cache_seqlens.shape[0] != B:
        raise ValueError(f"{fn}: cache_seqlens has {cache_seqlens.shape[0]} entries "
                         f"but q has batch {B}")
    if cache_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{fn}: cache_seqlens must be int32 or int64, got {cache_seqlens.dtype}")
    q = q if q.stride(-1) == 1 else q.contiguous()
    k_cache = k_cache if k_cache.stride(-1) == 1 else k_cache.contiguous()
    v_cache = v_cache if v_cache.stride(-1) == 1 else v_cache.contiguous()
    scale = 1.0 / math.sqrt(D) if sm_scale is None else float(sm_scale)
    return decode_attention_forward(q, k_cache, v_cache, cache_seqlens.contiguous(), scale)
