"""FlashAttention-2 (Dao, 2023): tiled attention with online softmax, forward and backward.

Layout: q [B, Hq, T, D], k and v [B, Hkv, S, D], Hq a multiple of Hkv. Grouped-query
attention reads the shared K/V head in place: query head h uses kv head h // (Hq // Hkv),
so K/V are never repeated in memory. Causal masking is aligned to the end: with
S > T (queries that continue a cached prefix) query i sees keys j <= i + S - T.

Forward, per (query block, batch*head): stream key/value blocks, keep the running row
max `m_i`, the running softmax denominator `l_i` and the unnormalised output `acc`,
rescaling both when the max grows. Scores are kept in base 2 (scaled by log2(e)) so the
kernel uses exp2. The log-sum-exp of each row is saved for the backward.

Backward (FA2's split): `delta = rowsum(dO * O)` first; then one kernel owns a key block
and loops over all query blocks of every query head in its group, accumulating dk and
dv in registers (so the GQA sum over the group needs no atomics); another owns a query
block and accumulates dq. Probabilities are recomputed from q, k and the saved LSE.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from llmos_kernels._checks import check_float, check_runnable, check_same, check_tensor
from llmos_kernels._runtime import dot_precision, interpreting

HEAD_DIMS = (16, 32, 64, 128)
LOG2E = 1.4426950408889634


def attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Plain attention in float32 (K/V repeated per group), returned in q's dtype.

    Rows that see no key at all (causal with S < T) come out as zeros, as in the kernel.
    """
    B, Hq, T, D = q.shape
    S = k.shape[2]
    scale = 1.0 / math.sqrt(D) if sm_scale is None else sm_scale
    group = Hq // k.shape[1]
    kf = k.float().repeat_interleave(group, dim=1)  # (B, Hq, S, D)
    vf = v.float().repeat_interleave(group, dim=1)  # (B, Hq, S, D)
    scores = (q.float() @ kf.transpose(-1, -2)) * scale  # (B, Hq, T, S)
    if causal:
        i = torch.arange(T, device=q.device)[:, None]
        j = torch.arange(S, device=q.device)[None, :]
        scores = scores.masked_fill(j > i + (S - T), float("-inf"))
    p = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # empty rows: NaN -> 0
    return (p @ vf).to(q.dtype)


def _configs(interpreted_block_m: int, interpreted_block_n: int, gpu: list[tuple]) -> list:
    """One config under the interpreter (no tuning there); a small H100/H200 sweep on CUDA."""
    if interpreting():
        return [triton.Config({"BLOCK_M": interpreted_block_m, "BLOCK_N": interpreted_block_n},
                              num_warps=4, num_stages=1)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
            for m, n, w, s in gpu]


# (BLOCK_M, BLOCK_N, num_warps, num_stages) for Hopper: big query tiles for the forward
# and dq, big key tiles for dk/dv; configs that run out of shared memory are skipped.
_FWD_CONFIGS = _configs(32, 16, [(128, 64, 4, 3), (128, 128, 8, 3), (128, 64, 8, 4),
                                 (64, 64, 4, 3)])
_BWD_DQ_CONFIGS = _configs(32, 16, [(128, 64, 8, 2), (64, 64, 4, 3), (128, 32, 8, 3)])
_BWD_DKDV_CONFIGS = _configs(16, 32, [(64, 128, 8, 2), (32, 128, 4, 3), (64, 64, 4, 3)])


@triton.jit
def _attn_fwd_inner(
    acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m, offs_n, offs_d,
    lo, hi, S, causal_offset, qk_scale,
    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
):
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        cols = start_n + offs_n
        k_ptrs = k_base + cols[None, :] * stride_kn + offs_d[:, None]  # (D, BLOCK_N)
        v_ptrs = v_base + cols[:, None] * stride_vn + offs_d[None, :]  # (BLOCK_N, D)
        if MASKED:
            k = tl.load(k_ptrs, mask=cols[None, :] < S, other=0.0)
        else:
            k = tl.load(k_ptrs)
        # s_ij = q k^T * sm_scale * log2(e): base-2 logits.
        s = tl.dot(q, k, input_precision=INPUT_PRECISION) * qk_scale
        if MASKED:
            valid = cols[None, :] < S
            if CAUSAL:
                valid = valid & (cols[None, :] <= offs_m[:, None] + causal_offset)
            s = tl.where(valid, s, -float("inf"))
        # Online softmax: new max, rescale the old sum and output by exp2(m_old - m_new).
        m_ij = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_ij[:, None])
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        if MASKED:
            v = tl.load(v_ptrs, mask=cols[:, None] < S, other=0.0)
        else:
            v = tl.load(v_ptrs)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=INPUT_PRECISION)
        m_i = m_ij
    return acc, l_i, m_i


@triton.autotune(configs=_FWD_CONFIGS, key=["SEQ_BUCKET", "HEAD_DIM", "CAUSAL"])
@triton.jit
def _attn_fwd_kernel(
    q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr,
    stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_ot,
    H_Q, GROUP, T, S, qk_scale, SEQ_BUCKET,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1)
    off_b = (off_bh // H_Q).to(tl.int64)
    off_h = (off_bh % H_Q).to(tl.int64)
    off_kvh = off_h // GROUP  # GQA: the kv head this query head shares
    q_base = q_ptr + off_b * stride_qb + off_h * stride_qh
    k_base = k_ptr + off_b * stride_kb + off_kvh * stride_kh
    v_base = v_ptr + off_b * stride_vb + off_kvh * stride_vh

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + offs_m[:, None] * stride_qt + offs_d[None, :],
                mask=offs_m[:, None] < T, other=0.0)

    # m_i starts finite so a row whose first blocks are fully masked rescales by
    # exp2(0) rather than exp2(-inf - -inf) = NaN.
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    causal_offset = S - T
    if CAUSAL:
        # Keys every row of this block sees (no mask needed), then the diagonal band.
        hi = tl.minimum(S, start_m + BLOCK_M + causal_offset)
        full_end = tl.maximum(tl.minimum(start_m + causal_offset + 1, S), 0)
        full_end = full_end // BLOCK_N * BLOCK_N
    else:
        # Every key is visible; only the ragged tail block needs a mask.
        hi = S
        full_end = S // BLOCK_N * BLOCK_N
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m, offs_n, offs_d,
        0, full_end, S, causal_offset, qk_scale,
        BLOCK_N, False, CAUSAL, INPUT_PRECISION)
    acc, l_i, m_i = _attn_fwd_inner(
        acc, l_i, m_i, q, k_base, v_base, stride_kn, stride_vn, offs_m, offs_n, offs_d,
        full_end, hi, S, causal_offset, qk_scale,
        BLOCK_N, True, CAUSAL, INPUT_PRECISION)

    # A row that saw no key (causal, S < T) outputs 0; its LSE is +inf so the backward's
    # exp2(s - lse) is 0 there too.
    has_keys = l_i > 0.0
    o = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    lse = tl.where(has_keys, m_i + tl.math.log2(tl.where(has_keys, l_i, 1.0)), float("inf"))
    row_mask = offs_m < T
    o_base = o_ptr + off_b * stride_ob + off_h * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_ot + offs_d[None, :],
             o.to(o_ptr.dtype.element_ty), mask=row_mask[:, None])
    tl.store(lse_ptr + off_bh.to(tl.int64) * T + offs_m, lse, mask=row_mask)


@triton.jit
def _attn_bwd_delta_kernel(
    o_ptr, do_ptr, delta_ptr, stride_ob, stride_oh, stride_ot, H_Q, T,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
):
    # delta_i = sum_d dO_id * O_id  (= sum_j P_ij dP_ij), the softmax-backward row term.
    off_bh = tl.program_id(1)
    off_b = (off_bh // H_Q).to(tl.int64)
    off_h = (off_bh % H_Q).to(tl.int64)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    mask = offs_m[:, None] < T
    o = tl.load(o_ptr + off_b * stride_ob + off_h * stride_oh + offs_m[:, None] * stride_ot
                + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    # dO is made contiguous by the launcher: (B, Hq, T, D).
    do = tl.load(do_ptr + off_bh.to(tl.int64) * T * HEAD_DIM + offs_m[:, None] * HEAD_DIM
                 + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    tl.store(delta_ptr + off_bh.to(tl.int64) * T + offs_m, tl.sum(o * do, 1), mask=offs_m < T)


@triton.autotune(configs=_BWD_DKDV_CONFIGS, key=["SEQ_BUCKET", "HEAD_DIM", "CAUSAL"])
@triton.jit
def _attn_bwd_dkdv_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
    stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    H_Q, H_KV, GROUP, T, S, sm_scale, qk_scale, SEQ_BUCKET,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_n = tl.program_id(0) * BLOCK_N
    off_bkv = tl.program_id(1)
    off_b = (off_bkv // H_KV).to(tl.int64)
    off_kvh = (off_bkv % H_KV).to(tl.int64)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    key_mask = offs_n < S
    k = tl.load(k_ptr + off_b * stride_kb + off_kvh * stride_kh + offs_n[:, None] * stride_kn
                + offs_d[None, :], mask=key_mask[:, None], other=0.0)
    v = tl.load(v_ptr + off_b * stride_vb + off_kvh * stride_vh + offs_n[:, None] * stride_vn
                + offs_d[None, :], mask=key_mask[:, None], other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)

    causal_offset = S - T
    lo = 0
    if CAUSAL:
        # Queries before start_n - (S - T) see none of these keys.
        lo = tl.maximum(start_n - causal_offset, 0) // BLOCK_M * BLOCK_M
    # Sum over every query head sharing this kv head (GQA) and every query block.
    for g in range(0, GROUP):
        off_h = off_kvh * GROUP + g
        off_bh = off_b * H_Q + off_h
        q_base = q_ptr + off_b * stride_qb + off_h * stride_qh
        do_base = do_ptr + off_bh * T * HEAD_DIM  # dO is contiguous (B, Hq, T, D)
        for start_m in range(lo, T, BLOCK_M):
            offs_m = start_m + offs_m0
            row_mask = offs_m < T
            q_t = tl.load(q_base + offs_m[None, :] * stride_qt + offs_d[:, None],
                          mask=row_mask[None, :], other=0.0)  # (D, BLOCK_M)
            do = tl.load(do_base + offs_m[:, None] * HEAD_DIM + offs_d[None, :],
                         mask=row_mask[:, None], other=0.0)  # (BLOCK_M, D)
            lse = tl.load(lse_ptr + off_bh * T + offs_m, mask=row_mask, other=0.0)
            delta = tl.load(delta_ptr + off_bh * T + offs_m, mask=row_mask, other=0.0)
            # P^T recomputed from the saved LSE: p_ji = exp2(s_ji - lse_i).
            s_t = tl.dot(k, q_t, input_precision=INPUT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
            valid = row_mask[None, :] & key_mask[:, None]
            if CAUSAL:
                valid = valid & (offs_n[:, None] <= offs_m[None, :] + causal_offset)
            p_t = tl.where(valid, tl.math.exp2(s_t - lse[None, :]), 0.0)
            # dV += P^T dO ;  dP^T = V dO^T ;  dS^T = P^T * (dP^T - delta) ;  dK += dS^T Q
            dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=INPUT_PRECISION)
            dp_t = tl.dot(v, tl.trans(do), input_precision=INPUT_PRECISION)
            ds_t = p_t * (dp_t - delta[None, :])
            dk = tl.dot(ds_t.to(q_t.dtype), tl.trans(q_t), dk, input_precision=INPUT_PRECISION)
    # Scores were q.k * sm_scale, so dK picks up sm_scale once.
    dk = dk * sm_scale
    out = off_bkv.to(tl.int64) * S * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(dk_ptr + out, dk.to(dk_ptr.dtype.element_ty), mask=key_mask[:, None])
    tl.store(dv_ptr + out, dv.to(dv_ptr.dtype.element_ty), mask=key_mask[:, None])


@triton.autotune(configs=_BWD_DQ_CONFIGS, key=["SEQ_BUCKET", "HEAD_DIM", "CAUSAL"])
@triton.jit
def _attn_bwd_dq_kernel(
    q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
    stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    H_Q, GROUP, T, S, sm_scale, qk_scale, SEQ_BUCKET,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1).to(tl.int64)
    off_b = off_bh // H_Q
    off_h = off_bh % H_Q
    off_kvh = off_h // GROUP
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    row_mask = offs_m < T
    q = tl.load(q_ptr + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_qt
                + offs_d[None, :], mask=row_mask[:, None], other=0.0)
    do = tl.load(do_ptr + off_bh * T * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :],
                 mask=row_mask[:, None], other=0.0)
    lse = tl.load(lse_ptr + off_bh * T + offs_m, mask=row_mask, other=0.0)
    delta = tl.load(delta_ptr + off_bh * T + offs_m, mask=row_mask, other=0.0)
    k_base = k_ptr + off_b * stride_kb + off_kvh * stride_kh
    v_base = v_ptr + off_b * stride_vb + off_kvh * stride_vh
    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)

    causal_offset = S - T
    hi = S
    if CAUSAL:
        hi = tl.minimum(S, start_m + BLOCK_M + causal_offset)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        key_mask = offs_n < S
        k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :],
                    mask=key_mask[:, None], other=0.0)  # (BLOCK_N, D)
        v_t = tl.load(v_base + offs_n[None, :] * stride_vn + offs_d[:, None],
                      mask=key_mask[None, :], other=0.0)  # (D, BLOCK_N)
        s = tl.dot(q, tl.trans(k), input_precision=INPUT_PRECISION) * qk_scale
        valid = row_mask[:, None] & key_mask[None, :]
        if CAUSAL:
            valid = valid & (offs_n[None, :] <= offs_m[:, None] + causal_offset)
        p = tl.where(valid, tl.math.exp2(s - lse[:, None]), 0.0)
        # dP = dO V^T ;  dS = P * (dP - delta) ;  dQ += dS K
        dp = tl.dot(do, v_t, input_precision=INPUT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=INPUT_PRECISION)
    dq = dq * sm_scale
    tl.store(dq_ptr + off_bh * T * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :],
             dq.to(dq_ptr.dtype.element_ty), mask=row_mask[:, None])


def _unit_last(t: torch.Tensor) -> torch.Tensor:
    """Kernels take any batch/head/seq strides but need unit stride along D."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _seq_bucket(n: int) -> int:
    """Autotune key: tune once per power-of-two length, not once per exact length."""
    return triton.next_power_of_2(max(n, 1))


def attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, sm_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output [B, Hq, T, D] (q's dtype) and base-2 log-sum-exp [B, Hq, T] (float32)."""
    B, Hq, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    o = torch.empty((B, Hq, T, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, Hq, T), dtype=torch.float32, device=q.device)
    if o.numel() == 0:
        return o, lse

    def grid(meta):
        return (triton.cdiv(T, meta["BLOCK_M"]), B * Hq)

    _attn_fwd_kernel[grid](
        q, k, v, o, lse,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
        Hq, Hq // Hkv, T, S, sm_scale * LOG2E, _seq_bucket(max(T, S)),
        HEAD_DIM=D, CAUSAL=causal, INPUT_PRECISION=dot_precision(q.dtype),
    )
    return o, lse


def attention_backward(
    q, k, v, o, lse, do, causal: bool, sm_scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq like q; dk, dv like k and v (summed over each GQA group), all contiguous."""
    B, Hq, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    do = do.contiguous()
    dq = torch.empty((B, Hq, T, D), dtype=q.dtype, device=q.device)
    dk = torch.empty((B, Hkv, S, D), dtype=k.dtype, device=k.device)
    dv = torch.empty((B, Hkv, S, D), dtype=v.dtype, device=v.device)
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    delta = torch.empty((B, Hq, T), dtype=torch.float32, device=q.device)
    delta_block = 32 if interpreting() else 64
    _attn_bwd_delta_kernel[(triton.cdiv(T, delta_block), B * Hq)](
        o, do, delta, o.stride(0), o.stride(1), o.stride(2), Hq, T,
        HEAD_DIM=D, BLOCK_M=delta_block,
    )
    common = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
              v.stride(0), v.stride(1), v.stride(2))
    precision = dot_precision(q.dtype)
    bucket = _seq_bucket(max(T, S))

    def grid_kv(meta):
        return (triton.cdiv(S, meta["BLOCK_N"]), B * Hkv)

    _attn_bwd_dkdv_kernel[grid_kv](
        q, k, v, do, lse, delta, dk, dv, *common,
        Hq, Hkv, Hq // Hkv, T, S, sm_scale, sm_scale * LOG2E, bucket,
        HEAD_DIM=D, CAUSAL=causal, INPUT_PRECISION=precision,
    )

    def grid_q(meta):
        return (triton.cdiv(T, meta["BLOCK_M"]), B * Hq)

    _attn_bwd_dq_kernel[grid_q](
        q, k, v, do, lse, delta, dq, *common,
        Hq, Hq // Hkv, T, S, sm_scale, sm_scale * LOG2E, bucket,
        HEAD_DIM=D, CAUSAL=causal, INPUT_PRECISION=precision,
    )
    return dq, dk, dv


class AttentionFunction(torch.autograd.Function):
    """FlashAttention-2; saves q, k, v, the output and its log-sum-exp (not P)."""

    @staticmethod
    def forward(ctx, q, k, v, causal: bool, sm_scale: float):
        o, lse = attention_forward(q, k, v, causal, sm_scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal = causal
        ctx.sm_scale = sm_scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = attention_backward(q, k, v, o, lse, do, ctx.causal, ctx.sm_scale)
        return dq, dk, dv, None, None


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention, differentiable, with grouped-query heads.

    q: [B, Hq, T, D]; k, v: [B, Hkv, S, D] with Hq % Hkv == 0 and D in {16, 32, 64, 128};
    one dtype (float32, float16, bfloat16) and device for all three. causal masks
    query i from keys j > i + S - T (aligned to the end); rows that then see no key
    output 0. sm_scale defaults to 1/sqrt(D). Returns [B, Hq, T, D] in q's dtype.
    Raises ValueError naming the argument for wrong ranks, batch/length/head-dim
    mismatches, Hq not a multiple of Hkv, unsupported D, mixed dtypes or devices.
    """
    fn = "attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(fn, name, t, 4)
    check_float(fn, "q", q)
    check_same(fn, "q", q, k=k, v=v)
    check_runnable(fn, "q", q)
    B, Hq, T, D = q.shape
    if k.shape != v.shape:
        raise ValueError(f"{fn}: k has shape {tuple(k.shape)} but v has {tuple(v.shape)}")
    if k.shape[0] != B:
        raise ValueError(f"{fn}: k has batch {k.shape[0]} but q has {B}")
    if k.shape[3] != D:
        raise ValueError(f"{fn}: k has head dim {k.shape[3]} but q has {D}")
    if D not in HEAD_DIMS:
        raise ValueError(f"{fn}: q has head dim {D}; supported head dims are {HEAD_DIMS}")
    Hkv = k.shape[1]
    if Hkv == 0 or Hq % Hkv != 0:
        raise ValueError(
            f"{fn}: k has {Hkv} heads but q has {Hq}; q heads must be a multiple of k heads"
        )
    scale = 1.0 / math.sqrt(D) if sm_scale is None else float(sm_scale)
    return AttentionFunction.apply(_unit_last(q), _unit_last(k), _unit_last(v),
                                   bool(causal), scale)
