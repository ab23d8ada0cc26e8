"""Autograd functions for the training pass: the same math as the plain torch ops, with a
backward that does less.

On CPU, torch's autograd runs RMSNorm's and SwiGLU's backward as a dozen elementwise
kernels each and keeps every intermediate alive until the backward; these save only
what the backward reads and fold its steps:

  rms_norm   saves x and the per-row 1/rms; the backward is 4 passes over x.
  swiglu     saves the gate and up projections (not silu(gate) nor their product,
             recomputed in one pass); the input gradient of the gate and up halves is
             ONE matmul over the fused [gate | up] weight instead of two plus a sum.

The model uses them only when a gradient is wanted and autocast is off (see
transformer.py); inference runs the plain ops. Weight gradients are computed too, so a
full fine-tune takes the same path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def wants_training_ops(x: torch.Tensor, *weights: torch.Tensor) -> bool:
    """True when autograd will differentiate through an op on x and weights (and autocast,
    whose casts these functions do not replay in their backward, is off)."""
    if not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type):
        return False
    return x.requires_grad or any(w.requires_grad for w in weights)


class RMSNormFunction(torch.autograd.Function):
    """y = x / sqrt(mean(x^2) + eps) * weight over the last dim (float32 x)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # (..., 1)
        y = x * rstd
        y.mul_(weight)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, rstd = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # d/dx of x * r * w with r = (mean(x^2) + eps)^-1/2:
            #   r * (g w) - x * r^3 * mean(g w x)
            gw = grad_y * weight
            coef = (gw * x).sum(-1, keepdim=True).mul_(rstd.pow(3) / x.shape[-1])
            grad_x = gw.mul_(rstd)
            grad_x.sub_(x * coef)
        if ctx.needs_input_grad[1]:
            grad_w = (grad_y * x * rstd).reshape(-1, x.shape[-1]).sum(0)
        return grad_x, grad_w, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of x [..., dim] with `weight` [dim], differentiable (see RMSNormFunction)."""
    return RMSNormFunction.apply(x, weight, eps)


class SwiGLUFunction(torch.autograd.Function):
    """out = (silu(x W_gate^T) * x W_up^T) W_out^T, W_in = [W_gate; W_up] (no biases)."""

    @staticmethod
    def forward(ctx, x, w_in, w_out):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])  # (N, dim)
        w_gate, w_up = w_in.chunk(2)  # views: (ffn, dim) each
        gate, up = x2 @ w_gate.t(), x2 @ w_up.t()  # (N, ffn) each
        h = F.silu(gate).mul_(up)  # (N, ffn)
        out = h @ w_out.t()  # (N, dim)
        ctx.save_for_backward(x2 if ctx.needs_input_grad[1] else None, w_in, w_out, gate, up)
        ctx.shape = shape
        return out.view(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, w_in, w_out, gate, up = ctx.saved_tensors
        g2 = grad_out.reshape(-1, grad_out.shape[-1])  # (N, dim)
        ffn = gate.shape[-1]
        grad_h = g2 @ w_out  # (N, ffn)
        act = F.silu(gate)
        grad_in = torch.empty(g2.shape[0], 2 * ffn, dtype=g2.dtype, device=g2.device)
        # [d gate | d up] side by side, so one matmul with W_in gives the input gradient.
        torch.mul(grad_h, act, out=grad_in[:, ffn:])  # d up = grad_h * silu(gate)
        torch.ops.aten.silu_backward.grad_input(grad_h.mul_(up), gate,
                                                grad_input=grad_in[:, :ffn])
        grad_x = grad_w_in = grad_w_out = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_in @ w_in).view(ctx.shape)
        if ctx.needs_input_grad[1]:
            grad_w_in = grad_in.t() @ x2
        if ctx.needs_input_grad[2]:
            grad_w_out = g2.t() @ act.mul_(up)
        return grad_x, grad_w_in, grad_w_out


def swiglu(x: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """The SwiGLU MLP of x [..., dim]: w_in [2 * ffn, dim] (gate rows, then up rows),
    w_out [dim, ffn]; differentiable in all three (see SwiGLUFunction)."""
    return SwiGLUFunction.apply(x, w_in, w_out)
