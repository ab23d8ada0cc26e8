"""The attention backend switch: the ONE place that decides how attention is computed.

The model calls only `prefill(q, k, v)` and `decode(q, k_cache, v_cache, cache_seqlens)`;
which implementation runs is chosen here, in this order:
  1. `set_backend(name)` / `with use_backend(name):` (process-wide),
  2. the environment variable LLMOS_ATTENTION,
  3. the default for the tensors' device (`DEFAULTS`, falling back to "sdpa").

Backends:
  reference  plain math — softmax(Q K^T / sqrt(D)) V with masks, GQA by repeating K/V.
             Slow; kept so a reader can check the fast paths against the formula.
  sdpa       torch's F.scaled_dot_product_attention (flash / fused kernels on CPU and CUDA).

Adding a backend (e.g. Triton kernels from llmos_kernels) is one `register_backend` call:

    def _triton_prefill(q, k, v):
        from llmos_kernels import attention
        return attention(q, k, v, causal=True)
    def _triton_decode(q, k_cache, v_cache, cache_seqlens):
        from llmos_kernels import decode_attention
        return decode_attention(q, k_cache, v_cache, cache_seqlens)
    register_backend("triton", _triton_prefill, _triton_decode)
    DEFAULTS["cuda"] = "triton"

Shapes (all backends):
  prefill: q [B, Hq, T, D], k/v [B, Hkv, S, D], S >= T, causal aligned to the end (query i
           is position S - T + i: S > T continues a cached prefix)  -> [B, Hq, T, D]
  decode:  q [B, Hq, D], caches [B, Hkv, S_max, D], cache_seqlens [B] (attend to the first
           cache_seqlens[b] positions of row b)  -> [B, Hq, D]
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llmos_jupyter.errors import ConfigError, suggest

ENV_VAR = "LLMOS_ATTENTION"

PrefillFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
DecodeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


NormFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Backend:
    name: str
    prefill: PrefillFn
    decode: DecodeFn
    # Optional: a backend with its own RMSNorm / cross-entropy (the Triton kernels) runs
    # them too, so one switch picks every kernel; None means torch's.
    rms_norm: NormFn | None = None
    cross_entropy: LossFn | None = None


_BACKENDS: dict[str, Backend] = {}
# Default backend per device type; the lead points "cuda" at "triton" once it is registered.
DEFAULTS: dict[str, str] = {"cpu": "sdpa", "cuda": "sdpa"}
_selected: str | None = None


def register_backend(
    name: str, prefill: PrefillFn, decode: DecodeFn,
    rms_norm: NormFn | None = None, cross_entropy: LossFn | None = None,
) -> None:
    """Make a backend selectable by `name` (replaces one of the same name)."""
    _BACKENDS[name] = Backend(name, prefill, decode, rms_norm, cross_entropy)


def available_backends() -> list[str]:
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


# --- reference: the formula, nothing clever -------------------------------------------


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    # (B, Hkv, S, D) -> (B, Hkv * n_rep, S, D); query head h reads KV head h // n_rep.
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


def _causal_mask(T: int, S: int, device: torch.device) -> torch.Tensor:
    """[T, S] bool, True where query i may see key j: causal aligned to the end, so with
    S > T (queries continuing a cached prefix of S - T keys) query i sits at S - T + i."""
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def _reference_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    T, D, S = q.shape[-2], q.shape[-1], k.shape[-2]
    n_rep = q.shape[1] // k.shape[1]
    k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(D)  # (B, Hq, T, S)
    causal = _causal_mask(T, S, q.device)
    scores = scores.masked_fill(~causal, float("-inf"))
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


def _reference_decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor
) -> torch.Tensor:
    D, S = q.shape[-1], k_cache.shape[2]
    n_rep = q.shape[1] // k_cache.shape[1]
    k, v = _repeat_kv(k_cache, n_rep).float(), _repeat_kv(v_cache, n_rep).float()
    scores = (q.float().unsqueeze(2) @ k.transpose(-1, -2)).squeeze(2) / math.sqrt(D)  # (B,Hq,S)
    valid = torch.arange(S, device=q.device) < cache_seqlens[:, None]  # (B, S)
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    out = (scores.softmax(dim=-1).unsqueeze(2) @ v).squeeze(2)  # (B, Hq, D)
    return out.to(q.dtype)


# --- sdpa: torch's fused kernels ------------------------------------------------------


def _sdpa_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    gqa = q.shape[1] != k.shape[1]
    T, S = q.shape[2], k.shape[2]
    if S == T:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    # is_causal aligns to the top-left; a continued prefix needs the end-aligned mask.
    mask = _causal_mask(T, S, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)


def _sdpa_decode(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cache_seqlens: torch.Tensor
) -> torch.Tensor:
    B, Hq, D = q.shape
    Hkv = k_cache.shape[1]
    # Only the filled prefix: one host sync for the length (free on CPU).
    L = int(cache_seqlens.max())
    k, v = k_cache[:, :, :L], v_cache[:, :, :L]  # (B, Hkv, L, D) views
    # GQA without repeating K/V: the n_rep query heads sharing a KV head become that
    # head's n_rep "query positions" (head h = kv * n_rep + r, as in _repeat_kv).
    qg = q.view(B, Hkv, Hq // Hkv, D)  # (B, Hkv, n_rep, D)
    mask = None
    if B > 1:  # rows shorter than L must not see the tail of the buffer
        mask = (torch.arange(L, device=q.device) < cache_seqlens[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask)  # (B, Hkv, n_rep, D)
    return out.view(B, Hq, D)


register_backend("reference", _reference_prefill, _reference_decode)
register_backend("sdpa", _sdpa_prefill, _sdpa_decode)


# The Triton kernels (llmos_kernels): registered always, imported only when selected, so
# nothing pays for importing triton unless it runs. Default on CUDA; on CPU they run under
# TRITON_INTERPRET=1 (tests select them with LLMOS_ATTENTION=triton).
from llmos_jupyter.model import attention_triton  # noqa: E402

attention_triton.register(register_backend)
DEFAULTS["cuda"] = "triton"
