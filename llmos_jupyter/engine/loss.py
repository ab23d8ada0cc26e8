"""The training loss: next-token cross-entropy fused with the LM head.

The full logits of a training batch are large (SmolLM2: 49152 floats per token, 200 KB;
4 x 128 tokens = 100 MB), and `F.cross_entropy` keeps two more tensors that size (its
log-softmax for the backward, then the gradient). Two paths avoid that:

- CPU (and any device without Triton): `fused_linear_cross_entropy` takes the hidden
  states and the head weight instead of logits, as Liger-Kernel's fused linear
  cross-entropy does. Rows go through in chunks: logits of one chunk, its loss, and its
  gradient softmax - onehot, which is folded at once into the gradients of the hidden
  states ([N, dim]) and of the weight ([V, dim], only when it trains). The backward just
  scales those. At most one chunk of logits (and its softmax) is alive at a time.
- CUDA: the head's logits, then our Triton kernel (llmos_kernels.cross_entropy) that
  writes the gradient over the logits in place: one [N, V] tensor instead of three.

Both take `targets` with `ignore_index` for masked positions and return the mean over
the rest (0 when every target is masked).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
# Rows per chunk: 1024 x 49152 float32 logits = 200 MB would be no saving; 256 rows keep
# a chunk at 50 MB for SmolLM2 while the matmuls stay large enough for full BLAS speed.
CHUNK_ROWS = 256


def _chunk_rows(n_rows: int, vocab: int, chunk_rows: int | None) -> int:
    if chunk_rows is not None:
        return max(1, chunk_rows)
    # Keep a chunk's logits near 16M floats whatever the vocabulary (64 MB).
    return max(16, min(CHUNK_ROWS, (1 << 24) // max(vocab, 1)))


class FusedLinearCrossEntropy(torch.autograd.Function):
    """loss = mean CE(hidden @ weight^T, targets); gradients computed in the forward."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, chunk_rows):
        N = hidden.shape[0]
        V = weight.shape[0]
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n_valid = int((targets != ignore_index).sum())
        scale = 1.0 / max(n_valid, 1)  # mean over counted targets; 0 if none
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if want_w else None
        w32 = weight.float()
        total = hidden.new_zeros((), dtype=torch.float32)
        step = _chunk_rows(N, V, chunk_rows)
        for start in range(0, N, step):
            h = hidden[start:start + step]  # (c, dim)
            t = targets[start:start + step]  # (c,)
            logits = h.float() @ w32.t()  # (c, V): the only vocabulary-wide tensor
            valid = t != ignore_index
            safe_t = torch.where(valid, t, 0)
            lse = torch.logsumexp(logits, dim=-1)  # (c,)
            picked = logits.gather(1, safe_t[:, None]).squeeze(1)  # (c,)
            total += ((lse - picked) * valid).sum()
            if not (want_h or want_w):
                continue
            # d loss / d logits = (softmax - onehot) * scale on counted rows, in place.
            grad = logits.sub_(lse[:, None]).exp_()  # (c, V) softmax
            grad.scatter_add_(1, safe_t[:, None], -torch.ones_like(lse)[:, None])
            grad.mul_((valid.float() * scale)[:, None])
            if want_h:
                grad_h[start:start + step] = (grad @ w32).to(hidden.dtype)  # (c, dim)
            if want_w:
                grad_w.addmm_(grad.t(), h.float())  # (V, dim)
            del grad, logits
        ctx.save_for_backward(grad_h if want_h else None,
                              grad_w.to(weight.dtype) if want_w else None)
        return total * scale

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        if grad_h is not None and grad_out.item() != 1.0:  # loss.backward() passes 1
            grad_h = grad_h * grad_out
        if grad_w is not None and grad_out.item() != 1.0:
            grad_w = grad_w * grad_out
        return grad_h, grad_w, None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
    ignore_index: int = IGNORE_INDEX, chunk_rows: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of logits hidden @ weight^T against targets, chunk by chunk.

    hidden [N, dim] (any float dtype), weight [V, dim], targets [N] integer (ignore_index
    masks a row). Returns a float32 scalar, differentiable in hidden and weight; neither
    the full [N, V] logits nor their gradient is ever materialized.
    Raises ValueError for mismatched shapes or targets outside [0, V).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"fused_linear_cross_entropy: hidden {tuple(hidden.shape)} and "
                         f"weight {tuple(weight.shape)} must be [N, dim] and [V, dim]")
    if targets.shape != (hidden.shape[0],):
        raise ValueError(f"fused_linear_cross_entropy: targets {tuple(targets.shape)} must "
                         f"be [{hidden.shape[0]}]")
    bad = (targets != ignore_index) & ((targets < 0) | (targets >= weight.shape[0]))
    if bool(bad.any()):
        raise ValueError(f"fused_linear_cross_entropy: target {int(targets[bad][0])} is "
                         f"outside the vocabulary [0, {weight.shape[0]})")
    return FusedLinearCrossEntropy.apply(hidden, weight, targets.long(), int(ignore_index),
                                         chunk_rows)


def head_weight(model: torch.nn.Module) -> torch.Tensor:
    """The dense LM head weight [V, dim] of our Transformer (the embedding when tied)."""
    if model.config.tie_embeddings:
        return model.tok_embeddings.weight
    return model.output.weight


def lm_loss(model: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor,
            ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean next-token loss of our Transformer: ids [B, T] -> logits, targets [B, T]
    (already shifted: targets[b, t] is the token after ids[b, t]; ignore_index masks).

    On CUDA the Triton kernel; elsewhere the fused chunked path (see the module docstring).
    """
    hidden = model.hidden_states(ids)  # (B, T, dim), final norm applied
    hidden = hidden.reshape(-1, hidden.shape[-1])  # (B*T, dim)
    targets = targets.reshape(-1).to(hidden.device)
    weight = head_weight(model)
    if hidden.device.type == "cuda":
        from llmos_kernels import cross_entropy

        logits = F.linear(hidden, weight.to(hidden.dtype))  # (B*T, V)
        return cross_entropy(logits, targets, ignore_index=ignore_index).float()
    return fused_linear_cross_entropy(hidden, weight, targets, ignore_index)
