"""The kernel backend switch: the ONE place that decides which implementation computes
attention, RMSNorm and cross-entropy.

The model calls only `prefill(q, k, v)`, `decode(q, k_cache, v_cache, cache_seqlens)`,
`rms_norm(x, weight, eps)` and `cross_entropy(logits, targets)`; which backend runs is
chosen here, in this order:
  1. `set_backend(name)` / `with use_backend(name):` (process-wide),
  2. the environment variable LLMOS_ATTENTION,
  3. the default for the tensors' device (`DEFAULTS`, falling back to "sdpa").

Backends (registered at the end of this module, one `register_backend` call each):
  reference  plain math — softmax(Q K^T / sqrt(D)) V with masks, GQA by repeating K/V.
             Slow; kept so a reader can check the fast paths against the formula.
             (backend_torch.py)
  sdpa       torch's F.scaled_dot_product_attention (flash / fused kernels on CPU and
             CUDA). The CPU default. (backend_torch.py)
  triton     our Triton kernels (llmos_kernels) for attention, decode attention, RMSNorm
             and cross-entropy; triton is imported only when the backend runs. The CUDA
             default; on CPU it runs under TRITON_INTERPRET=1. (backend_triton.py)

A backend module imports nothing from this one: the switch imports the backends, never
the other way round. Another backend is one more `register_backend` call.

Shapes (all backends):
  prefill: q [B, Hq, T, D], k/v [B, Hkv, S, D], S >= T, causal aligned to the end (query i
           is position S - T + i: S > T continues a cached prefix)  -> [B, Hq, T, D]
  decode:  q [B, Hq, D], caches [B, Hkv, S_max, D], cache_seqlens [B] (attend to the first
           cache_seqlens[b] positions of row b)  -> [B, Hq, D]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llmos_jupyter.errors import ConfigError, suggest
from llmos_jupyter.model import backend_torch, backend_triton

ENV_VAR = "LLMOS_ATTENTION"

PrefillFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
DecodeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


NormFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Backend:
    """One selectable implementation: attention always, RMSNorm and cross-entropy optionally."""

    name: str
    prefill: PrefillFn
    decode: DecodeFn
    # Optional: a backend with its own RMSNorm / cross-entropy (the Triton kernels) runs
    # them too, so one switch picks every kernel; None means torch's.
    rms_norm: NormFn | None = None
    cross_entropy: LossFn | None = None


_BACKENDS: dict[str, Backend] = {}
# Default backend per device type (a name not registered falls back to "sdpa").
DEFAULTS: dict[str, str] = {"cpu": "sdpa", "cuda": "triton"}
_selected: str | None = None


def register_backend(
    name: str, prefill: PrefillFn, decode: DecodeFn,
    rms_norm: NormFn | None = None, cross_entropy: LossFn | None = None,
) -> None:
    """Make a backend selectable by `name` (replaces one of the same name)."""
    _BACKENDS[name] = Backend(name, prefill, decode, rms_norm, cross_entropy)


def available_backends() -> list[str]:
    """Names of the registered backends, sorted."""
    return sorted(_BACKENDS)


def _check(name: str) -> str:
    if name not in _BACKENDS:
        raise ConfigError(
            f"unknown attention backend {name!r}{suggest(name, _BACKENDS)}; "
            f"choose one of {available_backends()}"
        )
    return name


def set_backend(name: str | None) -> None:
    """Select the backend for the whole process; None returns to env/default selection."""
    global _selected
    _selected = None if name is None else _check(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run a block with backend `name`, restoring the previous choice afterwards."""
    global _selected
    previous, _selected = _selected, _check(name)
    try:
        yield
    finally:
        _selected = previous


def get_backend(device: torch.device | str = "cpu") -> str:
    """Name of the backend that runs for tensors on `device`."""
    if _selected is not None:
        return _selected
    env = os.environ.get(ENV_VAR)
    if env:
        return _check(env)
    name = DEFAULTS.get(torch.device(device).type, "sdpa")
    return name if name in _BACKENDS else "sdpa"


def prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention over a block: q [B,Hq,T,D], k/v [B,Hkv,S,D] (S >= T, causal aligned
    to the end) -> [B,Hq,T,D]."""
    return _BACKENDS[get_backend(q.device)].prefill(q, k, v)


def decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor
) -> torch.Tensor:
    """One query per sequence over its cache prefix: q [B,Hq,D] -> [B,Hq,D]."""
    return _BACKENDS[get_backend(q.device)].decode(q, k_cache, v_cache, cache_seqlens)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * weight over the last dim, by the selected backend."""
    fn = _BACKENDS[get_backend(x.device)].rms_norm
    if fn is not None:
        return fn(x, weight, eps)
    if x.dtype == torch.float32:  # one kernel, weight included
        return F.rms_norm(x, x.shape[-1:], weight, eps)
    # Normalize in float32 like the reference, then scale in the activation dtype.
    return F.rms_norm(x.float(), x.shape[-1:], eps=eps).to(x.dtype) * weight


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100):
    """Mean cross-entropy of logits [N, V] against targets [N], by the selected backend."""
    fn = _BACKENDS[get_backend(logits.device)].cross_entropy
    if fn is not None:
        return fn(logits, targets, ignore_index)
    return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index)


# The built-in backends, registered explicitly; DEFAULTS above picks one per device.
register_backend("reference", backend_torch.reference_prefill, backend_torch.reference_decode)
register_backend("sdpa", backend_torch.sdpa_prefill, backend_torch.sdpa_decode)
register_backend("triton", backend_triton.prefill, backend_triton.decode,
                 backend_triton.rms_norm, backend_triton.cross_entropy)
