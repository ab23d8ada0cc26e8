"""The `triton` backend: attention, decode attention, RMSNorm and cross-entropy from
llmos_kernels, our Triton kernel library. Imported lazily: selecting the backend is what
loads triton."""

from __future__ import annotations

from collections.abc import Callable

import torch


def _prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from llmos_kernels import attention

    return attention(q, k, v, causal=True)


def _decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor
) -> torch.Tensor:
    from llmos_kernels import decode_attention

    return decode_attention(q, k_cache, v_cache, cache_seqlens)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    from llmos_kernels import rms_norm

    # The kernel wants one dtype; norm weights may be kept in float32 beside bf16 activations.
    return rms_norm(x, weight.to(x.dtype), eps)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    from llmos_kernels import cross_entropy

    return cross_entropy(logits, targets, ignore_index=ignore_index, reduction="mean")


def register(register_backend: Callable[..., None]) -> None:
    register_backend("triton", _prefill, _decode, _rms_norm, _cross_entropy)
