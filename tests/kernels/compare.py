"""Tolerances and comparison for kernel-vs-reference tests.

The reference always computes in float32 from the same (possibly half-precision)
inputs, so the tolerance covers only the kernel's own rounding: half-precision
intermediates (P cast to fp16/bf16 before P @ V) and the output cast.
"""

from __future__ import annotations

import llmos_kernels
import torch

# Tensors of the non-GPU tests live where the kernels can run in this process.
DEVICE = "cpu" if llmos_kernels.interpreting() else "cuda"

# dtype -> (atol, rtol) for outputs, and for gradients (which sum over more terms).
FORWARD_TOL = {
    torch.float32: (1e-5, 1e-5),
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (3e-2, 3e-2),
}
GRAD_TOL = {
    torch.float32: (1e-4, 1e-4),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (8e-2, 5e-2),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype,
                 grad: bool = False, scale: float = 1.0) -> None:
    """Compare in float32 with the dtype's tolerance (atol multiplied by `scale`)."""
    atol, rtol = (GRAD_TOL if grad else FORWARD_TOL)[dtype]
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol * scale, rtol=rtol)
