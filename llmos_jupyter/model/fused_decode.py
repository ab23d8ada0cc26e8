"""The fused CPU decode step: one native call per token instead of ~450 torch ops.

Eager torch spends ~15 small ops per layer on a decode step (norms, RoPE, the cache
scatter, SDPA, SiLU, residual adds) and each costs microseconds of dispatch; at batch 1
that overhead was ~40% of a ggml-mode token. `llmos_decode_step` (csrc/llmos_native.cpp)
runs the whole step — embedding, every layer, final norm, LM head — in one call, the
calling thread driving the kernels' thread pool (csrc/pool.h) through one parallel loop
per dependent step, reading the model's own tensors through raw pointers.

It applies to Llama-family models (RMSNorm, RoPE, SwiGLU) whose activations are float32
on CPU and whose projections are dense float32 (`nn.Linear`, `CastLinear`) or GGML blocks
(`GGMLLinear`), for any number of sequences, when the attention backend is the CPU
default ("sdpa"). Everything else — other backends, other dtypes — takes the torch path
in transformer.py, which stays the reference the tests compare against.

The plan holds references to every tensor it points at, so a pointer can never outlive
its memory; Transformer drops the plan whenever tensors may move (setup_caches, `.to()`).
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from llmos_jupyter.model import native
from llmos_jupyter.model.ggml_linear import FusedRMSNorm, GGMLLinear
from llmos_jupyter.model.norms import RMSNorm
from llmos_jupyter.model.quant import CastLinear

_P = ctypes.c_void_p


class _Layer(ctypes.Structure):
    _fields_ = [("attn_norm", _P), ("ffn_norm", _P), ("wqkv", native.Mat),
                ("wo", native.Mat), ("w_in", native.Mat), ("w_out", native.Mat),
                ("k_cache", _P), ("v_cache", _P)]


class _Model(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in ("n_layers", "dim", "n_heads", "n_kv_heads",
                                               "head_dim", "ffn_dim", "vocab", "cache_len")]
    _fields_ += [("eps", ctypes.c_float), ("pad", ctypes.c_int32), ("embed", _P),
                 ("rope_cos", _P), ("rope_sin", _P), ("final_norm", _P),
                 ("head", native.Mat), ("layers", _P)]


class FusedDecoder:
    """A model's decode step as one native call; build with `FusedDecoder.build(model)`."""

    def __init__(self, model: nn.Module) -> None:
        self._keep: list[torch.Tensor] = []  # every tensor a pointer below refers to
        c = model.config
        cache = model.layers[0].attn.cache
        self.batch_size = cache.batch_size
        layers = (_Layer * c.n_layers)()
        for i, layer in enumerate(model.layers):
            attn, ffn = layer.attn, layer.ffn
            layers[i] = _Layer(self._ptr(layer.attn_norm.weight), self._ptr(layer.ffn_norm.weight),
                               self._mat(attn.wqkv), self._mat(attn.wo), self._mat(ffn.w_in),
                               self._mat(ffn.w_out), self._ptr(attn.cache.k_cache),
                               self._ptr(attn.cache.v_cache))
        if model.lm_head is not None:
            head = self._mat(model.lm_head)
        elif c.tie_embeddings:
            head = self._mat_of(model.tok_embeddings.weight, None)
        else:
            head = self._mat(model.output)
        self._layers = layers
        self.model = _Model(c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim,
                            c.vocab_size, cache.max_seq_len, c.norm_eps, 0,
                            self._ptr(model.tok_embeddings.weight), self._ptr(model.rope_cos),
                            self._ptr(model.rope_sin), self._ptr(model.norm.weight), head,
                            ctypes.addressof(layers))
        self.vocab_size = c.vocab_size
        self._scratch: dict[int, torch.Tensor] = {}

    @staticmethod
    def build(model: nn.Module) -> FusedDecoder | None:
        """The fused step for `model`, or None when it does not apply (see module doc)."""
        if any(layer.attn.cache is None for layer in model.layers):
            return None  # decode_step without setup_caches: the torch path raises for it
        if not supports(model) or not native.available():
            return None
        return FusedDecoder(model)

    def __reduce__(self):
        # Copies and pickles of a model carry no plan (ctypes pointers cannot be copied,
        # and would point at the original's tensors): the copy builds its own on first use.
        return _no_plan, ()

    # --- plan construction ------------------------------------------------------------

    def _ptr(self, t: torch.Tensor) -> int:
        if t.dtype != torch.float32 or not t.is_contiguous():
            raise ValueError("fused decode needs contiguous float32 tensors")
        self._keep.append(t)
        return t.data_ptr()

    def _mat_of(self, w: torch.Tensor, bias: torch.Tensor | None) -> native.Mat:
        self._keep += [w] + ([bias] if bias is not None else [])
        return native.mat("F32", w.detach(), bias=None if bias is None else bias.detach())

    def _mat(self, module: nn.Module) -> native.Mat:
        if isinstance(module, GGMLLinear):
            self._keep += [t for t in (module.qs, module.d, module.mn, module.bias)
                           if t is not None]
            return module.mat()
        return self._mat_of(module.weight, module.bias)

    # --- the step ---------------------------------------------------------------------

    def applies(self, batch_size: int) -> bool:
        return batch_size <= self.batch_size

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] float32 of tokens [B] at positions [B] (see Transformer.decode_step).

        Raises IndexError for a token outside the vocabulary or a position outside the cache.
        """
        B = tokens.shape[0]
        tokens = tokens.to(torch.int64).contiguous()
        positions = positions.to(torch.int64).contiguous()
        scratch = self._scratch.get(B)
        if scratch is None:
            n = native.lib().llmos_decode_scratch(ctypes.byref(self.model), B)
            scratch = self._scratch[B] = torch.empty(n, dtype=torch.float32)
        logits = torch.empty(B, self.vocab_size, dtype=torch.float32)
        err = native.lib().llmos_decode_step(
            ctypes.byref(self.model), B, tokens.data_ptr(), positions.data_ptr(),
            logits.data_ptr(), scratch.data_ptr(), native.threads())
        if err:
            raise IndexError(f"decode_step: a token is outside the vocabulary "
                             f"({self.vocab_size}) or a position outside the KV cache "
                             f"({self.model.cache_len}); tokens {tokens.tolist()}, "
                             f"positions {positions.tolist()}")
        return logits


def _no_plan() -> None:
    return None


def _is_float32_linear(m: nn.Module) -> bool:
    if isinstance(m, GGMLLinear):
        return True
    return (isinstance(m, nn.Linear | CastLinear) and m.weight.dtype == torch.float32
            and (m.bias is None or m.bias.dtype == torch.float32))


def supports(model: nn.Module) -> bool:
    """Whether `model`'s architecture and weights fit the fused step (caches aside)."""
    c = model.config
    if (c.arch != "llama" or c.activation != "silu" or model.dtype != torch.float32
            or model.device.type != "cpu" or c.head_dim > 512 or c.n_heads % c.n_kv_heads):
        return False
    norms = [model.norm] + [n for layer in model.layers for n in (layer.attn_norm,
                                                                  layer.ffn_norm)]
    if not all(isinstance(n, RMSNorm | FusedRMSNorm) for n in norms):
        return False
    linears = [m for layer in model.layers
               for m in (layer.attn.wqkv, layer.attn.wo, layer.ffn.w_in, layer.ffn.w_out)]
    head = model.lm_head if model.lm_head is not None else (
        None if c.tie_embeddings else model.output)
    if head is not None:
        linears.append(head)
    return all(_is_float32_linear(m) for m in linears)
