"""Cross-entropy over logits [N, V] with the gradient fused into the forward pass.

Memory is the point. `F.cross_entropy` keeps a log-softmax copy of the logits for the
backward and then allocates a gradient, two more N x V tensors besides the logits. Here
one program per row streams the vocabulary in chunks twice: pass 1 finds the row's
log-sum-exp with an online max/sum (`m_i`, `l_i`), pass 2 writes the gradient
softmax(x) - onehot(target) (already scaled for the reduction) over the logits it has
just read. The backward only rescales that buffer by the upstream gradient.

Where the gradient goes (the in-place choice):
- logits that do not require grad: the loss alone is computed; nothing N x V is written.
- logits produced inside the autograd graph (not a leaf, e.g. the lm head's output): the
  gradient overwrites them in place. Their version counter is bumped, so any other op
  that saved those logits for its own backward fails loudly instead of reading
  gradients. After the call the logits tensor holds the gradient: read what you need
  (argmax, ...) before calling, or pass `logits.clone()`.
- leaf logits that require grad (a tensor the caller made and still holds): the
  gradient goes to a copy, so the caller's values stay intact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from llmos_kernels._checks import check_float, check_runnable, check_same_device, check_tensor
from llmos_kernels._runtime import interpreting

REDUCTIONS = ("mean", "sum", "none")
# Chunk of the vocabulary one program holds at a time (V = 128256 takes 16 chunks).
MAX_BLOCK = 8192
INTERPRETER_MAX_BLOCK = 4096


def cross_entropy_reference(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """F.cross_entropy in float32 (returned in the logits' dtype); all-ignored mean is 0."""
    per_row = F.cross_entropy(logits.float(), targets.long(), ignore_index=ignore_index,
                              reduction="none")
    if reduction == "none":
        loss = per_row
    elif reduction == "sum":
        loss = per_row.sum()
    else:
        n_valid = (targets != ignore_index).sum().clamp(min=1)
        loss = per_row.sum() / n_valid
    return loss.to(logits.dtype)


@triton.jit
def _cross_entropy_kernel(
    logits_ptr, logits_row_stride, targets_ptr, loss_ptr, n_valid_ptr, n_cols, ignore_index,
    MEAN: tl.constexpr, COMPUTE_GRAD: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row = logits_ptr + row * logits_row_stride
    target = tl.load(targets_ptr + row).to(tl.int64)
    ignored = target == ignore_index
    cols = tl.arange(0, BLOCK)

    # Pass 1: per-lane running max m_i and rescaled sum l_i (finite start: see softmax.py).
    m_i = tl.full([BLOCK], -1.0e38, tl.float32)
    l_i = tl.zeros([BLOCK], tl.float32)
    for start in range(0, n_cols, BLOCK):
        offs = start + cols
        x = tl.load(x_row + offs, mask=offs < n_cols, other=-float("inf")).to(tl.float32)
        m_new = tl.maximum(m_i, x)
        l_i = l_i * tl.exp(m_i - m_new) + tl.exp(x - m_new)
        m_i = m_new
    m = tl.max(m_i, 0)
    lse = m + tl.log(tl.sum(l_i * tl.exp(m_i - m), 0))

    # loss = lse - x[target]; an ignored row contributes 0 and reads nothing.
    x_target = tl.load(x_row + target, mask=target != ignore_index, other=0.0).to(tl.float32)
    loss = tl.where(ignored, 0.0, lse - x_target)
    scale = 1.0
    if MEAN:
        # Mean over non-ignored rows; max(., 1) makes all-ignored give 0, not 0/0.
        scale = 1.0 / tl.maximum(tl.load(n_valid_ptr).to(tl.float32), 1.0)
    tl.store(loss_ptr + row, loss * scale)

    if COMPUTE_GRAD:
        # Pass 2: d loss / d x = (softmax(x) - onehot(target)) * scale, over x itself.
        for start in range(0, n_cols, BLOCK):
            offs = start + cols
            mask = offs < n_cols
            x = tl.load(x_row + offs, mask=mask, other=0.0).to(tl.float32)
            grad = tl.exp(x - lse) - tl.where(offs == target, 1.0, 0.0)
            grad = tl.where(ignored, 0.0, grad * scale)
            tl.store(x_row + offs, grad.to(logits_ptr.dtype.element_ty), mask=mask)


def cross_entropy_forward(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, reduction: str,
    grad_buffer: torch.Tensor | None,
) -> torch.Tensor:
    """Loss (per reduction); when grad_buffer (holding the logits) is given, the scaled
    gradient replaces its contents. Without it, logits are only read."""
    n_rows, n_cols = logits.shape
    buf = logits if grad_buffer is None else grad_buffer
    loss_rows = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    n_valid = (targets != ignore_index).sum(dtype=torch.int32).reshape(1)
    if n_rows:
        cap = INTERPRETER_MAX_BLOCK if interpreting() else MAX_BLOCK
        block = min(triton.next_power_of_2(n_cols), cap)
        _cross_entropy_kernel[(n_rows,)](
            buf, buf.stride(0), targets, loss_rows, n_valid, n_cols, ignore_index,
            MEAN=reduction == "mean", COMPUTE_GRAD=grad_buffer is not None, BLOCK=block,
            num_warps=32 if block >= 8192 else 16 if block >= 4096 else 4,
        )
    loss = loss_rows if reduction == "none" else loss_rows.sum()
    return loss.to(logits.dtype)


class CrossEntropyFunction(torch.autograd.Function):
    """Forward computes loss and gradient; backward rescales the stored gradient."""

    @staticmethod
    def forward(ctx, logits, targets, ignore_index, reduction, in_place):
        grad = None
        if ctx.needs_input_grad[0]:
            grad = logits if in_place else logits.detach().clone(
                memory_format=torch.contiguous_format)
        loss = cross_entropy_forward(logits, targets, ignore_index, reduction, grad)
        if grad is not None and in_place:
            # We overwrote an input behind autograd's back; make other users notice.
            torch.autograd.graph.increment_version(logits)
        ctx.grad = grad.detach() if grad is not None else None
        ctx.reduction = reduction
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad = ctx.grad
        ctx.grad = None  # drop our reference so the buffer can be freed after use
        if ctx.reduction == "none":
            grad.mul_(grad_output.to(grad.dtype).unsqueeze(1))
        elif grad_output.item() != 1.0:
            # The common case (loss.backward()) has grad_output 1: skip an N x V pass.
            grad.mul_(grad_output.to(grad.dtype))
        return grad, None, None, None, None


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of logits [N, V] against integer targets [N], differentiable.

    reduction "mean" divides by the number of non-ignored targets (0 when all are
    ignored), "sum" adds, "none" returns [N]. The loss has the logits' dtype. See the
    module docstring for when the gradient is written over the logits in place.
    Raises ValueError for wrong ranks or lengths, a non-integer targets dtype, targets
    outside [0, V) other than ignore_index, an unknown reduction, or a device mismatch.
    """
    check_tensor("cross_entropy", "logits", logits, 2)
    check_tensor("cross_entropy", "targets", targets, 1)
    check_float("cross_entropy", "logits", logits)
    check_same_device("cross_entropy", "logits", logits, targets=targets)
    check_runnable("cross_entropy", "logits", logits)
    if reduction not in REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"cross_entropy: targets must be an integer tensor, got {targets.dtype}")
    n_rows, n_cols = logits.shape
    if targets.shape[0] != n_rows:
        raise ValueError(
            f"cross_entropy: targets has {targets.shape[0]} entries but logits has {n_rows} rows"
        )
    if n_cols == 0:
        raise ValueError("cross_entropy: logits has an empty vocabulary dim (V = 0)")
    # A target outside the vocabulary would read out of bounds in the kernel (one sync).
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= n_cols))
    if n_rows and bool(bad.any()):
        raise ValueError(
            f"cross_entropy: targets must be in [0, {n_cols}) or ignore_index={ignore_index}, "
            f"got {targets[bad][0].item()}"
        )
    targets = targets.contiguous()
    if logits.stride(-1) != 1:
        logits = logits.contiguous()  # our own copy from here on, free to overwrite
    # Overwrite the logits only when they are an intermediate we may reuse (see above).
    in_place = logits.requires_grad and not logits.is_leaf
    return CrossEntropyFunction.apply(logits, targets, int(ignore_index), reduction, in_place)
