"""Autograd functions for the training pass: the same math as the plain torch ops, with a
backward that does less.

On CPU, torch's autograd runs RMSNorm's and SwiGLU's backward as a dozen elementwise
kernels each and keeps every intermediate alive until the backward; these save only
what the backward reads and fold its steps:

  rms_norm   saves x and the per-row 1/rms. On CPU in float32 the forward and the
             backward are each one pass over the rows (the native training kernels,
             csrc/llmos_train.cpp); elsewhere torch's ops, 4 passes over x.
  swiglu     the gate and up projections are ONE matmul over the fused [gate | up]
             weight, and so is the input gradient of the two halves. On CPU in float32
             silu(gate) * up and its backward are one pass each (native) and only the
             [gate | up] product is kept; elsewhere torch's ops, keeping silu(gate) too.
  add_rms_norm
             a residual add and the RMSNorm after it: h = x + a and its norm in one
             pass; the backward adds h's own gradient inside the norm's backward pass.
  causal_attention
             from the fused qkv projection to the heads' outputs side by side: RoPE on
             q and k, the attention itself, and the backward writes the q, k (RoPE
             undone) and v gradients straight into one [..., qkv] tensor - where
             autograd would zero-fill a qkv-sized tensor per slice and add them up.
             Three paths, chosen by shape and machine, never by a timing (resumed and
             distributed runs rely on computing alike):
               native  rows up to NATIVE_ATTENTION_T tokens on CPU in float32: one
                       kernel each way (csrc/train_attention.h) over kept probabilities;
                       at 4 x 128 tokens, SmolLM2's heads, 2.3 ms a layer forward and
                       backward (AVX2 build: 2.7) against 6.5 for torch's flash attention.
               short   the same kept probabilities as torch's batched matmuls, where the
                       native kernels do not run and torch's CPU kernels use AVX-512
                       (4.5 ms there); on AVX2 they measured 1.6x slower than flash.
               flash   otherwise: torch's CPU flash attention and its backward, called
                       directly (nothing T x T kept).

The model uses them only when a gradient is wanted and autocast is off (see
transformer.py); inference runs the plain ops. Weight gradients are computed too, so a
full fine-tune takes the same path.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from llmos_jupyter.model import native


def wants_training_ops(x: torch.Tensor, *weights: torch.Tensor) -> bool:
    """True when autograd will differentiate through an op on x and weights (and autocast,
    whose casts these functions do not replay in their backward, is off)."""
    if not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
        return False
    return x.requires_grad or any(w.requires_grad for w in weights)


def _native_lib(*tensors: torch.Tensor):
    """The native training kernels (csrc/llmos_train.cpp) when every tensor is a contiguous
    float32 CPU tensor and the kernels load here; None otherwise (the torch ops run)."""
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
               for t in tensors):
        return None
    return native.train_lib()


class RMSNormFunction(torch.autograd.Function):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last dim (float32 x)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        K = x.shape[-1]
        so = _native_lib(x, weight)
        if so is not None:  # one pass per row (csrc/llmos_train.cpp)
            y = torch.empty_like(x)
            rstd = x.new_empty(*x.shape[:-1], 1)
            so.llmos_rms_norm_train(x.data_ptr(), weight.data_ptr(), x.numel() // K, K, eps,
                                    y.data_ptr(), rstd.data_ptr(), torch.get_num_threads())
        else:
            rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # (..., 1)
            y = x * rstd
            y.mul_(weight)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, rstd = ctx.saved_tensors
        want_x, want_w = ctx.needs_input_grad[:2]
        grad_x, grad_w = _rms_norm_backward(x, weight, rstd, grad_y, None, want_x, want_w)
        return grad_x, grad_w, None


def _rms_norm_backward(x, weight, rstd, grad_y, grad_res, want_x, want_w):
    """(d x, d weight) of y = rms_norm(x) * weight from grad_y (d x plus grad_res, the
    gradient x gets from elsewhere, when that is not None); None where not wanted."""
    K = x.shape[-1]
    grad_x = grad_w = None
    if grad_y is None:  # only the residual stream's own gradient reached us
        return grad_res, None
    if want_x:
        grad_y = grad_y.contiguous()
        so = _native_lib(x, weight, grad_y, *(() if grad_res is None else (grad_res,)))
        if so is not None:
            grad_x = torch.empty_like(x)
            so.llmos_rms_norm_backward(x.data_ptr(), weight.data_ptr(), rstd.data_ptr(),
                                       grad_y.data_ptr(),
                                       0 if grad_res is None else grad_res.data_ptr(),
                                       x.numel() // K, K, grad_x.data_ptr(),
                                       torch.get_num_threads())
        else:
            # d/dx of x * r * w with r = (mean(x^2) + eps)^-1/2:
            #   r * (g w) - x * r^3 * mean(g w x)
            gw = grad_y * weight
            coef = (gw * x).sum(-1, keepdim=True).mul_(rstd.pow(3) / K)
            grad_x = gw.mul_(rstd)
            grad_x.sub_(x * coef)
            if grad_res is not None:
                grad_x.add_(grad_res)
    if want_w:
        grad_w = (grad_y * x * rstd).reshape(-1, K).sum(0)
    return grad_x, grad_w


class AddRMSNormFunction(torch.autograd.Function):
    """(h, y) = (x + a, rms_norm(x + a) * weight): a residual add and the norm after it
    in one pass each way (float32). The backward returns h's gradient plus the norm's
    for both x and a, where autograd would add the two in a pass of its own."""

    @staticmethod
    def forward(ctx, x, a, weight, eps):
        K = x.shape[-1]
        so = _native_lib(x, a, weight)
        if so is not None:
            h, y = torch.empty_like(x), torch.empty_like(x)
            rstd = x.new_empty(*x.shape[:-1], 1)
            so.llmos_add_rms_norm(x.data_ptr(), a.data_ptr(), weight.data_ptr(), x.numel() // K,
                                  K, eps, h.data_ptr(), y.data_ptr(), rstd.data_ptr(),
                                  torch.get_num_threads())
        else:
            h = x + a
            rstd = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
            y = (h * rstd).mul_(weight)
        ctx.save_for_backward(h, weight, rstd)
        return h, y

    @staticmethod
    def backward(ctx, grad_h, grad_y):
        h, weight, rstd = ctx.saved_tensors
        if grad_h is not None:
            grad_h = grad_h.contiguous()
        want_x, want_a, want_w = ctx.needs_input_grad[:3]
        grad, grad_w = _rms_norm_backward(h, weight, rstd, grad_y, grad_h, want_x or want_a,
                                          want_w)
        return grad if want_x else None, grad if want_a else None, grad_w, None


def add_rms_norm(x: torch.Tensor, a: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + a, RMSNorm of x + a with `weight`) for same-shaped x, a [..., dim];
    differentiable in all three (see AddRMSNormFunction)."""
    return AddRMSNormFunction.apply(x, a, weight, eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of x [..., dim] with `weight` [dim], differentiable (see RMSNormFunction)."""
    return RMSNormFunction.apply(x, weight, eps)


class SwiGLUFunction(torch.autograd.Function):
    """out = (silu(x W_gate^T) * x W_up^T) W_out^T, W_in = [W_gate; W_up] (no biases)."""

    @staticmethod
    def forward(ctx, x, w_in, w_out):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])  # (N, dim)
        ffn = w_in.shape[0] // 2
        gate_up = x2 @ w_in.t()  # one product over the fused weight (MKL runs it faster)
        so = _native_lib(gate_up)
        if so is not None:  # silu(gate) * up in one pass (csrc/llmos_train.cpp)
            act = None  # the backward recomputes silu(gate) in its own single pass
            h = gate_up.new_empty(gate_up.shape[0], ffn)
            so.llmos_swiglu(gate_up.data_ptr(), h.shape[0], ffn, h.data_ptr(),
                            torch.get_num_threads())
        else:
            # kept: recomputing it in torch's backward costs a pass over gate
            act = F.silu(gate_up[:, :ffn])
            h = act * gate_up[:, ffn:]
        out = h @ w_out.t()  # (N, dim)
        ctx.save_for_backward(x2 if ctx.needs_input_grad[1] else None, w_in, w_out, gate_up,
                              act)
        ctx.shape = shape
        return out.view(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, w_in, w_out, gate_up, act = ctx.saved_tensors
        g2 = grad_out.reshape(-1, grad_out.shape[-1])  # (N, dim)
        N, ffn = gate_up.shape[0], gate_up.shape[1] // 2
        grad_h = g2 @ w_out  # (N, ffn)
        # [d gate | d up] side by side, so one matmul with W_in gives the input gradient.
        grad_in = grad_h.new_empty(N, 2 * ffn)
        h = None  # silu(gate) * up, wanted for W_out's gradient
        so = _native_lib(gate_up, grad_h)
        if act is None and so is not None:
            if ctx.needs_input_grad[2]:
                h = grad_h.new_empty(N, ffn)
            so.llmos_swiglu_backward(gate_up.data_ptr(), grad_h.data_ptr(), N, ffn,
                                     grad_in.data_ptr(), 0 if h is None else h.data_ptr(),
                                     torch.get_num_threads())
        else:
            gate, up = gate_up[:, :ffn], gate_up[:, ffn:]
            act = F.silu(gate) if act is None else act
            torch.mul(grad_h, act, out=grad_in[:, ffn:])  # d up = grad_h * silu(gate)
            if ctx.needs_input_grad[2]:
                h = act * up
            torch.ops.aten.silu_backward.grad_input(grad_h.mul_(up), gate,
                                                    grad_input=grad_in[:, :ffn])
        grad_x = grad_w_in = grad_w_out = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_in @ w_in).view(ctx.shape)
        if ctx.needs_input_grad[1]:
            grad_w_in = grad_in.t() @ x2
        if ctx.needs_input_grad[2]:
            grad_w_out = g2.t() @ h
        return grad_x, grad_w_in, grad_w_out


def swiglu(x: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """The SwiGLU MLP of x [..., dim]: w_in [2 * ffn, dim] (gate rows, then up rows),
    w_out [dim, ffn]; differentiable in all three (see SwiGLUFunction)."""
    return SwiGLUFunction.apply(x, w_in, w_out)


def _rope_into(out: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor,
               transpose: bool = False) -> torch.Tensor:
    """out = x rotated by RoPE (rope.apply_rope's formula x * cos + swap_halves(x) *
    sin_signed), or with transpose=True by its transpose (the backward: g * cos +
    swap_halves(g * sin_signed)); each half updated in place instead of a flipped copy."""
    h = x.shape[-1] // 2
    torch.mul(x, cos, out=out)
    sin_lo, sin_hi = sin_signed[..., :h], sin_signed[..., h:]
    if transpose:
        sin_lo, sin_hi = sin_hi, sin_lo
    out[..., :h].addcmul_(x[..., h:], sin_lo)
    out[..., h:].addcmul_(x[..., :h], sin_hi)
    return out


# Longest sequence whose attention probabilities the training pass keeps (B x Hq x T x T
# floats a layer: at 256 tokens, for SmolLM2's shapes, about half what the layer's MLP
# keeps per token); 0 where the batched matmuls lose to flash attention. Chosen by the
# CPU, never by a timing, so two runs on one machine compute alike (resumed and
# distributed runs rely on that).
SHORT_ATTENTION_T = 256 if torch.backends.cpu.get_cpu_capability() == "AVX512" else 0


@functools.lru_cache(maxsize=8)
def _causal_bias(T: int, G: int, device: torch.device) -> torch.Tensor:
    """[G T, T]: 0 where row t (of each of G stacked heads) may attend, -inf after t."""
    future = torch.ones(T, T, dtype=torch.bool, device=device).triu_(1)
    bias = torch.zeros(T, T, device=device).masked_fill_(future, float("-inf"))
    return bias.repeat(G, 1)


def _short_attention(q, k, v):
    """Causal attention of q [B, Hq, T, D] over k, v [B, Hkv, T, D] (query head h reads kv
    head h // (Hq / Hkv)) as batched matmuls: (out [B, Hq, T, D], probabilities
    [B, Hkv, G T, T]), G = Hq / Hkv query heads stacked per kv head."""
    B, Hq, T, D = q.shape
    Hkv = k.shape[1]
    G = Hq // Hkv
    # scale * q k^T + (0 on and below the diagonal, -inf above) in one batched product
    s = torch.baddbmm(_causal_bias(T, G, q.device), q.reshape(B * Hkv, G * T, D),
                      k.reshape(B * Hkv, T, D).transpose(1, 2), alpha=D ** -0.5)
    p = torch.softmax(s, dim=-1).view(B, Hkv, G * T, T)
    return torch.matmul(p, v).view(B, Hq, T, D), p


def _short_attention_backward(grad_out, q, k, v, out, p):
    """Gradients (dq, dk, dv) of _short_attention from its saved probabilities p."""
    B, Hq, T, D = q.shape
    Hkv = k.shape[1]
    rows = (B, Hkv, Hq // Hkv * T, D)  # query heads stacked per kv head, as in p
    go = grad_out.reshape(rows)
    dv = torch.matmul(p.transpose(-1, -2), go)
    # softmax backward: p * (dp - rowsum(dout * out)), then the scale of the scores
    ds = torch.matmul(go, v.transpose(-1, -2))
    ds.sub_((go * out.reshape(rows)).sum(-1, keepdim=True)).mul_(p).mul_(D ** -0.5)
    dq = torch.matmul(ds, k).view(B, Hq, T, D)
    dk = torch.matmul(ds.transpose(-1, -2), q.reshape(rows))
    return dq, dk, dv


# Longest row the native attention kernels take (csrc/train_attention.h: each head's
# T x T probabilities are kept, as on the short path).
NATIVE_ATTENTION_T = 256


def _native_attention(qkv: torch.Tensor, n_heads: int, n_kv_heads: int):
    """The training kernels when they take this attention: rows of at most
    NATIVE_ATTENTION_T tokens, head_dim a multiple of 16 (their vectors); else None."""
    T, D = qkv.shape[1], qkv.shape[-1] // (n_heads + 2 * n_kv_heads)
    if T > NATIVE_ATTENTION_T or D % 16 or n_heads % n_kv_heads:
        return None
    return _native_lib(qkv)


class CausalAttentionFunction(torch.autograd.Function):
    """y = causal softmax attention of RoPE(q), RoPE(k), v, from qkv [B, T, (Hq + 2 Hkv) D]
    (rows q heads, k heads, v heads) -> [B, T, Hq D]; cos / sin_signed [T, 1, D]."""

    @staticmethod
    def forward(ctx, qkv, cos, sin, n_heads, n_kv_heads):
        B, T, _ = qkv.shape
        Hq, Hqk = n_heads, n_heads + n_kv_heads
        ctx.heads = (Hq, Hqk)
        so = _native_attention(qkv, n_heads, n_kv_heads)
        if so is not None:
            ctx.path = "native"
            return _native_forward(ctx, so, qkv, cos, sin, Hq, n_kv_heads)
        x = qkv.view(B, T, Hqk + n_kv_heads, -1)  # (B, T, H, D)
        qk = _rope_into(x.new_empty(B, T, Hqk, x.shape[-1]), x[:, :, :Hqk], cos, sin)
        q, k = qk[:, :, :Hq].transpose(1, 2), qk[:, :, Hq:].transpose(1, 2)  # (B, H, T, D)
        v = x[:, :, Hqk:].transpose(1, 2)
        ctx.path = "short" if T <= SHORT_ATTENTION_T else "flash"
        if ctx.path == "short":
            out, kept = _short_attention(q, k, v)  # kept: the probabilities
        else:
            out, kept = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q, k, v, 0.0, True)  # kept: the rows' log-sum-exp
        ctx.save_for_backward(q, k, v, out, kept, cos, sin)
        return out.transpose(1, 2).reshape(B, T, -1)

    @staticmethod
    def backward(ctx, grad_y):
        if ctx.path == "native":
            return _native_backward(ctx, grad_y), None, None, None, None
        q, k, v, out, kept, cos, sin = ctx.saved_tensors
        Hq, Hqk = ctx.heads
        B, _, T, D = q.shape
        grad_out = grad_y.reshape(B, T, Hq, D).transpose(1, 2)  # (B, Hq, T, D)
        if ctx.path == "short":
            dq, dk, dv = _short_attention_backward(grad_out, q, k, v, out, kept)
        else:
            dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
                grad_out, q, k, v, out, kept, 0.0, True)
        grad = grad_y.new_empty(B, T, Hqk + v.shape[1], D)  # [q | k | v] heads, like qkv
        _rope_into(grad[:, :, :Hq], dq.transpose(1, 2), cos, sin, transpose=True)
        _rope_into(grad[:, :, Hq:Hqk], dk.transpose(1, 2), cos, sin, transpose=True)
        grad[:, :, Hqk:] = dv.transpose(1, 2)
        return grad.view(B, T, -1), None, None, None, None


def _native_forward(ctx, so, qkv, cos, sin, Hq, Hkv):
    """CausalAttentionFunction.forward on the training kernels: y [B, T, Hq D], keeping
    the RoPE'd q and k and the probabilities (csrc/train_attention.h has the layouts)."""
    B, T, _ = qkv.shape
    D = qkv.shape[-1] // (Hq + 2 * Hkv)
    G, cols = Hq // Hkv, so.llmos_attention_cols()
    cos, sin = cos.reshape(T, D).contiguous(), sin.reshape(T, D).contiguous()
    y = qkv.new_empty(B, T, Hq * D)
    qr, kr = qkv.new_empty(B, Hkv, G * T, D), qkv.new_empty(B, Hkv, T, D)
    p = qkv.new_empty(B, Hkv, G * T, -(-T // cols) * cols)
    so.llmos_attention_train(qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), B, T, Hq, Hkv, D,
                             D ** -0.5, y.data_ptr(), qr.data_ptr(), kr.data_ptr(),
                             p.data_ptr(), torch.get_num_threads())
    ctx.save_for_backward(qkv, cos, sin, y, qr, kr, p)
    return y


def _native_backward(ctx, grad_y):
    """The qkv gradient [B, T, (Hq + 2 Hkv) D] of _native_forward's y."""
    qkv, cos, sin, y, qr, kr, p = ctx.saved_tensors
    Hq, Hqk = ctx.heads
    B, T, _ = qkv.shape
    Hkv, D = Hqk - Hq, qr.shape[-1]
    gy = grad_y.contiguous()
    gx = torch.empty_like(qkv)
    native.train_lib().llmos_attention_train_backward(
        qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), B, T, Hq, Hkv, D, D ** -0.5,
        y.data_ptr(), qr.data_ptr(), kr.data_ptr(), p.data_ptr(), gy.data_ptr(), gx.data_ptr(),
        torch.get_num_threads())
    return gx


def flash_attention_applies(qkv: torch.Tensor) -> bool:
    """Whether causal_attention can take qkv: float32 on CPU, where torch's CPU flash
    attention (whose ops it calls) runs."""
    return (qkv.device.type == "cpu" and qkv.dtype == torch.float32
            and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward"))


def causal_attention(qkv: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor,
                     n_heads: int, n_kv_heads: int) -> torch.Tensor:
    """Causal self-attention with RoPE from the fused projection qkv [B, T, (Hq + 2 Hkv) D]
    to the heads' outputs [B, T, Hq D], with the scale 1/sqrt(D); cos / sin_signed
    [T, 1, D] (rope.rope_tables). Differentiable in qkv (see CausalAttentionFunction)."""
    return CausalAttentionFunction.apply(qkv, cos, sin_signed, n_heads, n_kv_heads)
