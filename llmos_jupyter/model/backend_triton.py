"""The `triton` backend of the switch in backend.py: attention, decode attention, RMSNorm
and cross-entropy from llmos_kernels, our Triton kernel library. Each function imports
llmos_kernels when it first runs, so registering the backend costs nothing and only
running it loads triton."""

from __future__ import annotations

import torch


def prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention over a block (llmos_kernels.attention)."""
    from llmos_kernels import attention  # triton: loaded only when this backend runs

    return attention(q, k, v, causal=True)


def decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor
) -> torch.Tensor:
    """One query per sequence over its cache prefix (llmos_kernels.decode_attention)."""
    from llmos_kernels import decode_attention  # triton: loaded only when this backend runs

    return decode_attention(q, k_cache, v_cache, cache_seqlens)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim (llmos_kernels.rms_norm)."""
    from llmos_kernels import rms_norm  # triton: loaded only when this backend runs

    # The kernel wants one dtype; norm weights may be kept in float32 beside bf16 activations.
    return rms_norm(x, weight.to(x.dtype), eps)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Mean cross-entropy (llmos_kernels.cross_entropy)."""
    from llmos_kernels import cross_entropy  # triton: loaded only when this backend runs

    return cross_entropy(logits, targets, ignore_index=ignore_index, reduction="mean")
