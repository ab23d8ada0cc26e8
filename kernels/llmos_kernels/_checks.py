"""Input validation shared by the public kernel functions.

Every check raises `ValueError` naming the function and the argument, so a wrong call
fails here with a fixable message instead of crashing (or silently reading out of
bounds) inside a kernel.
"""

from __future__ import annotations

import torch

from llmos_kernels._runtime import interpreting

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_tensor(fn: str, name: str, t: object, ndim: int | tuple[int, ...]) -> torch.Tensor:
    """`t` must be a tensor of rank `ndim` (or one of several ranks)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if t.dim() not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ValueError(f"{fn}: {name} must have {want} dimensions, got shape {tuple(t.shape)}")
    return t


def check_float(fn: str, name: str, t: torch.Tensor) -> None:
    """`t` must be float32, float16 or bfloat16 (what the kernels accumulate from)."""
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{fn}: {name} has dtype {t.dtype}; expected float32, float16 or bfloat16"
        )


def check_same(fn: str, first: str, a: torch.Tensor, **others: torch.Tensor) -> None:
    """All tensors share `a`'s dtype and device (the kernels never mix them)."""
    for name, t in others.items():
        if t.dtype != a.dtype:
            raise ValueError(
                f"{fn}: {name} has dtype {t.dtype} but {first} has {a.dtype}; "
                "cast them to one dtype"
            )
        check_same_device(fn, first, a, **{name: t})


def check_same_device(fn: str, first: str, a: torch.Tensor, **others: torch.Tensor) -> None:
    """All tensors live on `a`'s device."""
    for name, t in others.items():
        if t.device != a.device:
            raise ValueError(
                f"{fn}: {name} is on {t.device} but {first} is on {a.device}; "
                "move them to one device"
            )


def check_runnable(fn: str, name: str, t: torch.Tensor) -> None:
    """The tensor's device can run our kernels: CUDA compiled, or CPU under the interpreter."""
    if t.device.type == "cuda" or (interpreting() and t.device.type == "cpu"):
        return
    raise ValueError(
        f"{fn}: {name} is on {t.device}; the Triton kernels need a CUDA tensor "
        "(or TRITON_INTERPRET=1 set before importing triton, for CPU tensors). "
        f"Use {fn}_reference on this device."
    )
