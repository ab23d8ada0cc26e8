"""Numerically stable row softmax, forward and backward.

A row that fits one block is loaded once and kept in registers (the fused softmax of
Triton tutorial 02). A longer row is streamed twice: pass 1 keeps a running max `m_i`
and a running sum `l_i` rescaled whenever the max grows (the online softmax of
Milakov & Gimelshein, 2018), pass 2 writes exp(x - m) / l.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llmos_kernels._checks import check_float, check_runnable, check_tensor
from llmos_kernels._runtime import interpreting

# Widest row kept whole in registers on a GPU: 32768 fp32 values over 32 warps is
# 32 registers per thread. Longer rows loop over blocks of this size.
MAX_FUSED_BLOCK = 32768
# Under the interpreter every block is a numpy array; 4096 keeps them small.
INTERPRETER_MAX_BLOCK = 4096


def softmax_reference(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """torch softmax computed in float32, returned in x's dtype."""
    return torch.softmax(x.float(), dim=dim).to(x.dtype)


@triton.jit
def _softmax_fwd_kernel(
    x_ptr, y_ptr, x_row_stride, y_row_stride, n_cols,
    BLOCK: tl.constexpr, ONE_BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    y_row = y_ptr + row * y_row_stride
    cols = tl.arange(0, BLOCK)
    if ONE_BLOCK:
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=-float("inf")).to(tl.float32)
        # Subtracting the row max keeps exp() in range; the result is unchanged.
        e = tl.exp(x - tl.max(x, 0))
        tl.store(y_row + cols, (e / tl.sum(e, 0)).to(y_ptr.dtype.element_ty), mask=mask)
    else:
        # Pass 1, per lane: m_i is the max seen so far, l_i the sum of exp(x - m_i).
        # m_i starts finite so a lane that has only seen padding (-inf) rescales by
        # exp(0) instead of exp(-inf - -inf) = NaN.
        m_i = tl.full([BLOCK], -1.0e38, tl.float32)
        l_i = tl.zeros([BLOCK], tl.float32)
        for start in range(0, n_cols, BLOCK):
            offs = start + cols
            x = tl.load(x_row + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
            m_new = tl.maximum(m_i, x)
            l_i = l_i * tl.exp(m_i - m_new) + tl.exp(x - m_new)
            m_i = m_new
        # Merge the lanes: rescale every lane's sum to the row max m.
        m = tl.max(m_i, 0)
        l_row = tl.sum(l_i * tl.exp(m_i - m), 0)
        # Pass 2: normalise.
        for start in range(0, n_cols, BLOCK):
            offs = start + cols
            mask = offs < n_cols
            x = tl.load(x_row + offs, mask=mask, other=-float("inf")).to(tl.float32)
            y = tl.exp(x - m) / l_row
            tl.store(y_row + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_bwd_kernel(
    y_ptr, dy_ptr, dx_ptr, y_row_stride, dy_row_stride, dx_row_stride, n_cols,
    BLOCK: tl.constexpr, ONE_BLOCK: tl.constexpr,
):
    # dx = y * (dy - sum(y * dy)): the Jacobian of softmax applied to dy.
    row = tl.program_id(0).to(tl.int64)
    y_row = y_ptr + row * y_row_stride
    dy_row = dy_ptr + row * dy_row_stride
    dx_row = dx_ptr + row * dx_row_stride
    cols = tl.arange(0, BLOCK)
    if ONE_BLOCK:
        mask = cols < n_cols
        y = tl.load(y_row + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_row + cols, mask=mask, other=0.0).to(tl.float32)
        dx = y * (dy - tl.sum(y * dy, 0))
        tl.store(dx_row + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    else:
        dot = tl.zeros([BLOCK], tl.float32)
        for start in range(0, n_cols, BLOCK):
            offs = start + cols
            mask = offs < n_cols
            y = tl.load(y_row + offs, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_row + offs, mask=mask, other=0.0).to(tl.float32)
            dot += y * dy
        total = tl.sum(dot, 0)
        for start in range(0, n_cols, BLOCK):
            offs = start + cols
            mask = offs < n_cols
            y = tl.load(y_row + offs, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_row + offs, mask=mask, other=0.0).to(tl.float32)
            tl.store(dx_row + offs, (y * (dy - total)).to(dx_ptr.dtype.element_ty), mask=mask)


def _launch_params(n_cols: int, block_size: int | None) -> tuple[int, bool, int]:
    """BLOCK, whether the row fits one block, and warps for that block."""
    cap = INTERPRETER_MAX_BLOCK if interpreting() else MAX_FUSED_BLOCK
    block = block_size or min(triton.next_power_of_2(n_cols), cap)
    num_warps = 32 if block >= 32768 else 16 if block >= 8192 else 8 if block >= 2048 else 4
    return block, n_cols <= block, num_warps


def _as_rows(t: torch.Tensor) -> torch.Tensor:
    """2-D view (rows, cols) with unit column stride, copying only if it must."""
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def softmax_forward(x: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
    """Softmax over the last dim of x (any rank); block_size forces the looped path in tests."""
    x2 = _as_rows(x)
    y = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    n_rows, n_cols = x2.shape
    if x2.numel() == 0:
        return y.view(x.shape)
    block, one_block, num_warps = _launch_params(n_cols, block_size)
    _softmax_fwd_kernel[(n_rows,)](
        x2, y, x2.stride(0), y.stride(0), n_cols,
        BLOCK=block, ONE_BLOCK=one_block, num_warps=num_warps,
    )
    return y.view(x.shape)


def softmax_backward(
    y: torch.Tensor, dy: torch.Tensor, block_size: int | None = None
) -> torch.Tensor:
    """Gradient of softmax over the last dim, given its output y and upstream dy."""
    y2, dy2 = _as_rows(y), _as_rows(dy)
    dx = torch.empty(y2.shape, dtype=y.dtype, device=y.device)
    n_rows, n_cols = y2.shape
    if y2.numel() == 0:
        return dx.view(y.shape)
    block, one_block, num_warps = _launch_params(n_cols, block_size)
    _softmax_bwd_kernel[(n_rows,)](
        y2, dy2, dx, y2.stride(0), dy2.stride(0), dx.stride(0), n_cols,
        BLOCK=block, ONE_BLOCK=one_block, num_warps=num_warps,
    )
    return dx.view(y.shape)


class SoftmaxFunction(torch.autograd.Function):
    """Softmax over the last dim; saves only its output (the backward needs nothing else)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, block_size: int | None = None) -> torch.Tensor:
        y = softmax_forward(x, block_size)
        ctx.save_for_backward(y)
        ctx.block_size = block_size
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (y,) = ctx.saved_tensors
        return softmax_backward(y, dy, ctx.block_size), None


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of `x` along `dim`, differentiable, computed in float32.

    x: any shape, float32 / float16 / bfloat16, on CUDA (or CPU under TRITON_INTERPRET=1).
    Returns a tensor of x's shape and dtype. Raises ValueError for a non-tensor, a
    0-d tensor, an integer dtype, an out-of-range `dim` or a device the kernels cannot use.
    """
    check_tensor("softmax", "x", x, tuple(range(1, 9)))
    check_float("softmax", "x", x)
    check_runnable("softmax", "x", x)
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"softmax: dim={dim} is out of range for x of rank {x.dim()}")
    dim = dim % x.dim()
    # The kernel works on the last dim; move `dim` there and back (a view each way).
    xt = x.movedim(dim, -1)
    return SoftmaxFunction.apply(xt, None).movedim(-1, dim)
