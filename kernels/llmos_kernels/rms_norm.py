"""RMSNorm (Zhang & Sennrich, 2019): y = x / sqrt(mean(x^2) + eps) * weight over the last dim.

Forward keeps one row per program and saves the per-row reciprocal RMS (`rstd`), so the
backward never recomputes the reduction. The backward splits the rows among a fixed
number of programs; each accumulates its share of dweight in registers and writes one
partial row, and torch sums the few partial rows (no atomics, deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llmos_kernels._checks import check_float, check_runnable, check_same, check_tensor
from llmos_kernels._runtime import interpreting, num_sms

# A row is held whole in registers; beyond this a hidden size would spill badly.
MAX_COLS = 65536


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm in float32, returned in x's dtype."""
    xf = x.float()
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * rstd * weight.float()).to(x.dtype)


@triton.jit
def _rms_norm_fwd_kernel(
    x_ptr, w_ptr, y_ptr, rstd_ptr, x_row_stride, y_row_stride, n_cols, eps,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, 0) / n_cols + eps)
    tl.store(rstd_ptr + row, rstd)
    tl.store(y_ptr + row * y_row_stride + cols, (x * rstd * w).to(y_ptr.dtype.element_ty),
             mask=mask)


@triton.jit
def _rms_norm_bwd_kernel(
    x_ptr, w_ptr, rstd_ptr, dy_ptr, dx_ptr, dw_partial_ptr,
    x_row_stride, dy_row_stride, dx_row_stride, n_rows, n_cols, rows_per_program,
    BLOCK: tl.constexpr,
):
    # With r = rstd and g = dy * w:  dx = r * g - x * r^3 * mean(g * x),  dw = sum_rows dy * x * r
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros([BLOCK], tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    # Walk the rows by advancing 64-bit pointers (no int32 row * stride overflow).
    x_row = x_ptr + row_start.to(tl.int64) * x_row_stride
    dy_row = dy_ptr + row_start.to(tl.int64) * dy_row_stride
    dx_row = dx_ptr + row_start.to(tl.int64) * dx_row_stride
    for row in range(row_start, row_end):
        x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_row + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + row)
        g = dy * w
        dx = rstd * g - x * (rstd * rstd * rstd) * (tl.sum(g * x, 0) / n_cols)
        tl.store(dx_row + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw_acc += dy * x * rstd
        x_row += x_row_stride
        dy_row += dy_row_stride
        dx_row += dx_row_stride
    tl.store(dw_partial_ptr + pid * n_cols + cols, dw_acc, mask=mask)


def _rows(t: torch.Tensor) -> torch.Tensor:
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def _num_warps(block: int) -> int:
    return 16 if block >= 8192 else 8 if block >= 2048 else 4


def rms_norm_forward(
    x: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns y (x's shape and dtype) and the per-row rstd (float32) for the backward."""
    x2 = _rows(x)
    n_rows, n_cols = x2.shape
    y = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    if n_rows:
        block = triton.next_power_of_2(n_cols)
        _rms_norm_fwd_kernel[(n_rows,)](
            x2, weight, y, rstd, x2.stride(0), y.stride(0), n_cols, eps,
            BLOCK=block, num_warps=_num_warps(block),
        )
    return y.view(x.shape), rstd


def rms_norm_backward(
    x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor, dy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """dx (x's shape and dtype) and dweight (weight's dtype)."""
    x2, dy2 = _rows(x), _rows(dy)
    n_rows, n_cols = x2.shape
    dx = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    # Enough programs to fill the GPU, each owning a contiguous range of rows.
    target = 4 if interpreting() or x.device.type != "cuda" else 4 * num_sms(x.device.index or 0)
    n_programs = max(1, min(n_rows, target))
    rows_per_program = triton.cdiv(n_rows, n_programs) if n_rows else 0
    dw_partial = torch.zeros(n_programs, n_cols, dtype=torch.float32, device=x.device)
    if n_rows:
        block = triton.next_power_of_2(n_cols)
        _rms_norm_bwd_kernel[(n_programs,)](
            x2, weight, rstd, dy2, dx, dw_partial,
            x2.stride(0), dy2.stride(0), dx.stride(0), n_rows, n_cols, rows_per_program,
            BLOCK=block, num_warps=_num_warps(block),
        )
    return dx.view(x.shape), dw_partial.sum(0).to(weight.dtype)


class RMSNormFunction(torch.autograd.Function):
    """RMSNorm; saves x, weight and the per-row rstd."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = rms_norm_forward(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight, rstd = ctx.saved_tensors
        dx, dw = rms_norm_backward(x, weight, rstd, dy)
        return dx, dw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm over the last dim of x: x / sqrt(mean(x^2) + eps) * weight, differentiable.

    x: [..., H]; weight: [H], same dtype and device as x (float32/float16/bfloat16).
    Returns y like x. Raises ValueError for mismatched shapes, dtypes or devices, H over
    65536, or a device the kernels cannot use.
    """
    check_tensor("rms_norm", "x", x, tuple(range(1, 9)))
    check_tensor("rms_norm", "weight", weight, 1)
    check_float("rms_norm", "x", x)
    check_same("rms_norm", "x", x, weight=weight)
    check_runnable("rms_norm", "x", x)
    if weight.shape[0] != x.shape[-1]:
        raise ValueError(
            f"rms_norm: weight has {weight.shape[0]} elements but x's last dim is {x.shape[-1]}"
        )
    if x.shape[-1] > MAX_COLS:
        raise ValueError(f"rms_norm: last dim {x.shape[-1]} exceeds the supported {MAX_COLS}")
    return RMSNormFunction.apply(x, weight.contiguous(), float(eps))
