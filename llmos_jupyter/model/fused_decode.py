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

Prefill runs through the same call (`llmos_forward_tokens`): a prompt's tokens go in
together, each written to its cache row before any attends, so they attend causally. Every
token's arithmetic is independent of the others in the call, so prompts prefilled together
(InflightBatch admitting several) get bit for bit what each gets alone.

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
# Tokens per native call in a prefill: enough rows that the batch kernels are compute-bound,
# few enough that the activations they share stay in L2 (the kernels re-read them per tile).
PREFILL_CHUNK = 64


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
            A = module.mat()
            self._keep += [t for t in (module.qs, module.d, module.mn, module.bias, *A.panels)
                           if t is not None]
            return A
        return self._mat_of(module.weight, module.bias)

    # --- the step ---------------------------------------------------------------------

    def applies(self, batch_size: int) -> bool:
        return batch_size <= self.batch_size

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] float32 of tokens [B] at positions [B] (see Transformer.decode_step).

        Raises IndexError for a token outside the vocabulary or a position outside the cache.
        """
        return self.forward_tokens(tokens, positions)

    def forward_tokens(self, tokens: torch.Tensor, positions: torch.Tensor,
                       rows: torch.Tensor | None = None,
                       out_index: torch.Tensor | None = None) -> torch.Tensor:
        """Run tokens [n] at positions [n] of cache rows `rows` [n] (None: token i in row i)
        through the model, writing their k/v to the cache; each attends to its row's cache
        up to its own position, so a prompt's tokens passed together (positions ascending)
        attend causally. Returns float32 logits [len(out_index), V] of the tokens at the
        ascending indices `out_index` (None: every token).

        Raises IndexError for a token outside the vocabulary, a position or row outside the
        cache, or a bad out_index.
        """
        n = tokens.shape[0]
        tokens = tokens.to(torch.int64).contiguous()
        positions = positions.to(torch.int64).contiguous()
        rows_ptr = out_ptr = None
        if rows is not None:
            rows = rows.to(torch.int64).contiguous()
            rows_ptr = rows.data_ptr()
        n_out = n
        if out_index is not None:
            out_index = out_index.to(torch.int64).contiguous()
            out_ptr, n_out = out_index.data_ptr(), out_index.shape[0]
        scratch = self._scratch.get(n)
        if scratch is None:
            size = native.lib().llmos_decode_scratch(ctypes.byref(self.model), n)
            scratch = self._scratch[n] = torch.empty(size, dtype=torch.float32)
        logits = torch.empty(n_out, self.vocab_size, dtype=torch.float32)
        err = native.lib().llmos_forward_tokens(
            ctypes.byref(self.model), n, tokens.data_ptr(), positions.data_ptr(), rows_ptr,
            n_out, out_ptr, self.batch_size, logits.data_ptr(), scratch.data_ptr(),
            native.threads())
        if err:
            raise IndexError(f"decode_step: a token is outside the vocabulary "
                             f"({self.vocab_size}), a position outside the KV cache "
                             f"({self.model.cache_len}) or a row outside its "
                             f"{self.batch_size} rows; tokens {tokens.tolist()}, "
                             f"positions {positions.tolist()}")
        return logits

    def prefill(self, ids: torch.Tensor, lengths: torch.Tensor, start: int,
                row: int) -> torch.Tensor:
        """Transformer.prefill through the fused step: the valid tokens of right-padded
        ids [B, T] (row b: [0, lengths[b])) go through in chunks of PREFILL_CHUNK tokens,
        row by row in order, each token into cache row `row + b` at position `start + t`;
        returns float32 logits [B, V] at each row's last token. Padded positions are not
        written. A token's arithmetic does not depend on the others in its chunk, so a
        prompt prefilled beside others gets bit for bit its cache and logits alone.

        Raises ValueError for a length outside [1, T].
        """
        B, T = ids.shape
        lens = [int(n) for n in lengths.tolist()]
        if any(not 1 <= n <= T for n in lens):
            raise ValueError(f"prefill lengths {lens} must each be between 1 and the "
                             f"padded width {T}")
        ids = ids.to(torch.int64).cpu()
        tokens = torch.cat([ids[b, :n] for b, n in enumerate(lens)])
        positions = torch.cat([torch.arange(start, start + n) for n in lens])
        rows = torch.cat([torch.full((n,), row + b, dtype=torch.int64)
                          for b, n in enumerate(lens)])
        last = torch.tensor(lens).cumsum(0) - 1  # each row's last token, ascending
        out = []
        for c0 in range(0, tokens.shape[0], PREFILL_CHUNK):
            c1 = min(c0 + PREFILL_CHUNK, tokens.shape[0])
            sel = last[(last >= c0) & (last < c1)] - c0
            out.append(self.forward_tokens(tokens[c0:c1], positions[c0:c1], rows[c0:c1], sel))
        return torch.cat(out)


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
