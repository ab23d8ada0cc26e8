"""Where the kernels can run: compiled on CUDA, or in Triton's CPU interpreter.

Triton decides between compiling and interpreting when a `@triton.jit` decorator runs,
i.e. when our kernel modules are imported, from the `TRITON_INTERPRET` environment
variable. So the truth about "are our kernels interpreted" is the type of a decorated
kernel, not the environment variable now.
"""

from __future__ import annotations

import functools

import torch
import triton


@triton.jit
def _probe_kernel(x_ptr):
    pass


def interpreting() -> bool:
    """True when this process's Triton kernels run in the CPU interpreter."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_probe_kernel, InterpretedFunction)


def available() -> bool:
    """True when a kernel can actually run here: CUDA is present, or the interpreter is on."""
    return interpreting() or torch.cuda.is_available()


@functools.cache
def num_sms(device_index: int) -> int:
    """Streaming multiprocessors of a CUDA device (the unit a grid should fill)."""
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def dot_precision(dtype: torch.dtype) -> str:
    """`tl.dot` input precision: exact fp32 products for fp32 inputs, as torch does by default.

    Triton's default for fp32 is TF32 (10-bit mantissa), which would make our fp32 path
    visibly less accurate than the torch reference; half types are exact either way.
    """
    return "ieee" if dtype == torch.float32 else "tf32"
