"""Our one decoder-only Transformer, for the Llama family and GPT-2.

The config decides the family's parts: RMSNorm or LayerNorm, RoPE or learned positions,
SwiGLU or GELU MLP, grouped-query attention, biases, tied embeddings. Parameter names are
exactly the checkpoint names of core/checkpoint.py (fused `wqkv`, fused `w_in`).

Three entry points:
  forward(ids)                 full causal pass, no cache (training, scoring)
  prefill(ids, lengths)        right-padded prompts -> cache [0, T), logits at each last token
  decode_step(tokens, pos)     one token per sequence at its own position, through the cache
Attention itself is `backend.prefill` / `backend.decode`: the backend is chosen there.
On CPU, float32-activation Llama models prefill and decode through `fused_decode` (one
native call per step or prefill chunk) where it applies; the torch path below stays the
reference (`fused_decode = False`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.errors import ConfigError
from llmos_jupyter.model import backend
from llmos_jupyter.model.fused_decode import FusedDecoder
from llmos_jupyter.model.kv_cache import KVCache
from llmos_jupyter.model.norms import make_norm
from llmos_jupyter.model.rope import apply_rope, rope_tables
from llmos_jupyter.model.training_ops import (
    add_rms_norm,
    causal_attention,
    flash_attention_applies,
    swiglu,
    wants_training_ops,
)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (
            config.n_heads, config.n_kv_heads, config.head_dim
        )
        bias = config.arch == "gpt2" or config.qkv_bias
        self.wqkv = nn.Linear(config.dim, config.qkv_dim, bias=bias)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.dim,
                            bias=config.arch == "gpt2")
        self.use_rope = config.arch != "gpt2"
        self.cache: KVCache | None = None

    def _qkv(self, x: torch.Tensor, cos, sin, qkv: torch.Tensor | None = None):
        """x [..., dim] -> q [..., Hq, D], k [..., Hkv, D], v [..., Hkv, D] (RoPE applied);
        qkv: the projection wqkv(x) when already computed."""
        Hq, Hkv = self.n_heads, self.n_kv_heads
        qkv = self.wqkv(x) if qkv is None else qkv
        qkv = qkv.unflatten(-1, (Hq + 2 * Hkv, self.head_dim))  # (..., Hq+2Hkv, D)
        qk, v = qkv[..., : Hq + Hkv, :], qkv[..., Hq + Hkv :, :]
        if self.use_rope:  # q and k rotate together: one set of kernels
            # Under autocast the rotation comes out float32 beside bf16 v: attention kernels
            # take one dtype, the matmuls' (as SDPA casts under autocast).
            qk = apply_rope(qk, cos, sin).to(v.dtype)
        return qk[..., :Hq, :], qk[..., Hq:, :], v

    def forward(
        self, x: torch.Tensor, cos, sin, fill_cache: bool = False, start: int = 0, row: int = 0,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Causal attention over x [B, T, dim] at positions [start, start + T); cos/sin
        [T, 1, D]. With start > 0 the queries also see the cached positions [0, start).
        The sequences are cache rows [row, row + B). rows (indices into the B * T
        positions) keeps only those positions' outputs: [len(rows), dim]."""
        B, T, _ = x.shape
        qkv = self.wqkv(x)  # (B, T, (Hq + 2Hkv) D)
        if (self.use_rope and not (fill_cache or start) and wants_training_ops(qkv)
                and flash_attention_applies(qkv)):  # training: a leaner backward (training_ops)
            y = causal_attention(qkv, cos, sin, self.n_heads, self.n_kv_heads)  # (B, T, Hq*D)
        else:
            q, k, v = self._qkv(x, cos, sin, qkv)  # (B, T, H, D)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
            if fill_cache:
                self.cache.write_prefill(k, v, start, row)
            if start:
                k = self.cache.k_cache[row:row + B, :, : start + T]  # (B, Hkv, start + T, D)
                v = self.cache.v_cache[row:row + B, :, : start + T]
            y = backend.prefill(q, k, v).transpose(1, 2).reshape(B, T, -1)  # (B, T, Hq*D)
        if rows is not None:
            y = y.reshape(B * T, -1).index_select(0, rows)
        return self.wo(y)  # (..., dim)

    def decode(self, x: torch.Tensor, cos, sin, positions, seqlens) -> torch.Tensor:
        """One token per sequence: x [B, dim]; cos/sin [B, 1, D]."""
        B = x.shape[0]
        q, k, v = self._qkv(x, cos, sin)  # (B, H, D)
        k_cache, v_cache = self.cache.write_decode(k, v, positions)
        y = backend.decode(q, k_cache, v_cache, seqlens)  # (B, Hq, D)
        return self.wo(y.reshape(B, -1))  # (B, dim)


class FeedForward(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gated = config.arch != "gpt2"  # SwiGLU: gate rows then up rows in one matmul
        bias = config.arch == "gpt2"
        hidden = 2 * config.ffn_dim if self.gated else config.ffn_dim
        self.w_in = nn.Linear(config.dim, hidden, bias=bias)
        self.w_out = nn.Linear(config.ffn_dim, config.dim, bias=bias)
        self.activation = config.activation

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "silu":
            return F.silu(x)
        return F.gelu(x, approximate="tanh" if self.activation == "gelu_tanh" else "none")

    def _trains_swiglu(self, x: torch.Tensor) -> bool:
        """Whether the training SwiGLU (training_ops.swiglu) applies: a gradient is wanted
        through plain bias-free Linears (a LoRA-wrapped projection takes the generic path)."""
        return (self.gated and self.activation == "silu"
                and type(self.w_in) is nn.Linear and type(self.w_out) is nn.Linear
                and self.w_in.bias is None and self.w_out.bias is None
                and wants_training_ops(x, self.w_in.weight, self.w_out.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._trains_swiglu(x):
            return swiglu(x, self.w_in.weight, self.w_out.weight)
        if self.gated and isinstance(self.w_in, nn.Linear):
            # Two matmuls on the weight's gate / up halves (views, no copy) beat one on the
            # whole for prefill-sized x (~15% with MKL at 512 x 576 -> 2 x 1536), and hand
            # the activation contiguous tensors.
            w, b = self.w_in.weight.chunk(2), (None, None)
            if self.w_in.bias is not None:
                b = self.w_in.bias.chunk(2)
            gate, up = F.linear(x, w[0], b[0]), F.linear(x, w[1], b[1])  # (..., ffn_dim)
            return self.w_out(self._act(gate) * up)
        h = self.w_in(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)  # (..., ffn_dim) each
            return self.w_out(self._act(gate) * up)
        return self.w_out(self._act(h))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = make_norm(config)
        self.attn = Attention(config)
        self.ffn_norm = make_norm(config)
        self.ffn = FeedForward(config)

    def forward(
        self, x: torch.Tensor, cos, sin, fill_cache: bool = False, start: int = 0, row: int = 0,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, T, dim] -> [B, T, dim]; with rows (indices into the B * T positions) only
        those positions' outputs, [len(rows), dim]: every position still feeds the
        attention's keys and values, but the output projection and the MLP run on the
        kept rows alone."""
        a = self.attn(self.attn_norm(x), cos, sin, fill_cache, start, row, rows)
        x = x + a if rows is None else x.reshape(-1, x.shape[-1]).index_select(0, rows) + a
        return x + self.ffn(self.ffn_norm(x))

    def decode(self, x: torch.Tensor, cos, sin, positions, seqlens) -> torch.Tensor:
        x = x + self.attn.decode(self.attn_norm(x), cos, sin, positions, seqlens)
        return x + self.ffn(self.ffn_norm(x))


def _embedding(n: int, dim: int) -> nn.Embedding:
    """nn.Embedding(n, dim), without random init when built on the meta device (loading):
    there torch runs normal_ through its Python refs, whose first call imports
    torch._dynamo — ~1.8 s of a ~3 s model load."""
    if torch.empty(0).device.type == "meta":
        return nn.Embedding(n, dim, _weight=torch.empty(n, dim))
    return nn.Embedding(n, dim)


class Transformer(nn.Module):
    """Decoder-only Transformer; see the module docstring for the three entry points.

    Attributes the engine relies on: `config`, `device`, `dtype` (activation dtype),
    `weight_mode` (how weights are stored: "float32", "bfloat16", "int4", ...).
    """

    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config = config
        self.dtype = dtype
        self.weight_mode = str(dtype).removeprefix("torch.")
        self.tok_embeddings = _embedding(config.vocab_size, config.dim)
        if config.arch == "gpt2":
            self.pos_embeddings = _embedding(config.max_seq_len, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = make_norm(config)
        if not config.tie_embeddings:
            self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        # A faster form of the (tied) LM head set by loading.build_model; None = dense.
        self.lm_head: nn.Module | None = None
        # Use the fused native decode step where it applies (see fused_decode); False
        # forces the torch path, which tests compare it against.
        self.fused_decode = True
        # Recompute each block's activations in the backward instead of keeping them
        # (training only: forward/hidden_states with a gradient); see _blocks.
        self.gradient_checkpointing = False
        self._fused: FusedDecoder | None | bool = None  # built lazily; False = n/a
        # Bumped by every method that writes or replaces the KV caches, so a caller that
        # remembers what they hold can tell whether anything else wrote them since
        # (engine/prompt_cache.py).
        self.cache_writes = 0
        self.init_buffers()

    def init_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)compute RoPE tables on `device` — after building on the meta device."""
        device = device if device is not None else self.tok_embeddings.weight.device
        cos, sin = rope_tables(self.config.head_dim, self.config.max_seq_len,
                               self.config.rope_theta, device, self.config.rope_scaling)
        self.register_buffer("rope_cos", cos.to(self.dtype), persistent=False)
        self.register_buffer("rope_sin", sin.to(self.dtype), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.tok_embeddings.weight.device

    def _apply(self, fn, recurse: bool = True):
        self._fused = None  # .to() / .float() may move tensors the fused plan points at
        return super()._apply(fn, recurse)

    # --- pieces shared by the entry points -------------------------------------------

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.tok_embeddings(ids).to(self.dtype)
        if self.config.arch == "gpt2":
            x = x + self.pos_embeddings(positions).to(self.dtype)
        return x

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm and LM head on x [..., dim] -> float32 logits [..., V]."""
        x = self.norm(x)
        if self.lm_head is not None:
            logits = self.lm_head(x)
        elif self.config.tie_embeddings:
            logits = F.linear(x, self.tok_embeddings.weight)
        else:
            logits = self.output(x)
        return logits.float()

    # --- full pass --------------------------------------------------------------------

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Causal logits for ids [B, T] -> float32 [B, T, V]; uses no cache."""
        return self._head(self._blocks(ids))

    def hidden_states(self, ids: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The final-normed hidden states [B, T, dim] of ids [B, T], before the LM head
        (training fuses the head with its loss: engine/loss.py). With rows (indices into
        the B * T positions, row-major) only those positions' states, [len(rows), dim]:
        the last block then runs its output projection and MLP on those rows alone."""
        if self._fuses_residual_norms():
            return self._fused_hidden_states(ids, rows)
        return self.norm(self._blocks(ids, rows))

    def _fuses_residual_norms(self) -> bool:
        """Whether hidden_states runs each residual add with the RMSNorm after it as one
        add_rms_norm (training_ops): a gradient is wanted, autocast is off, float32 on the
        torch backend, RMSNorm (not GPT-2), no gradient checkpointing."""
        device = self.device
        return (self.config.arch != "gpt2" and not self.gradient_checkpointing
                and self.dtype == torch.float32 and torch.is_grad_enabled()
                and not torch.is_autocast_enabled(device.type)
                and backend.get_backend(device) == "sdpa")

    def _fused_hidden_states(self, ids: torch.Tensor,
                             rows: torch.Tensor | None) -> torch.Tensor:
        """hidden_states with every block's two residual adds fused into the norm that
        follows each (the next block's attention norm, or the final norm): the same sums
        and norms in half the passes, forward and backward."""
        x, cos, sin = self._block_inputs(ids)
        last = len(self.layers) - 1
        y = self.layers[0].attn_norm(x)
        for i, layer in enumerate(self.layers):
            kept = rows if i == last else None  # earlier blocks' every row feeds keys/values
            a = layer.attn(y, cos, sin, rows=kept)
            if kept is not None:  # the output projection and MLP on the kept rows alone
                x = x.reshape(-1, x.shape[-1]).index_select(0, kept)
            x, y = add_rms_norm(x, a, layer.ffn_norm.weight, layer.ffn_norm.eps)
            norm = self.layers[i + 1].attn_norm if i < last else self.norm
            x, y = add_rms_norm(x, layer.ffn(y), norm.weight, norm.eps)
        return y

    def _block_inputs(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeddings [B, T, dim], cos, sin [T, 1, D]) of ids [B, T] from position 0."""
        T = ids.shape[1]
        self._check_len(T)
        x = self._embed(ids, torch.arange(T, device=ids.device))  # (B, T, dim)
        return x, self.rope_cos[:T, None, :], self.rope_sin[:T, None, :]

    def _blocks(self, ids: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        x, cos, sin = self._block_inputs(ids)
        checkpointed = self.gradient_checkpointing and torch.is_grad_enabled()
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            kept = rows if i == last else None  # earlier blocks' every row feeds keys/values
            if checkpointed:  # keep only each block's input; rerun the block in backward
                x = checkpoint(layer, x, cos, sin, rows=kept, use_reentrant=False)
            else:
                x = layer(x, cos, sin, rows=kept)
        return x

    def loss(self, ids: torch.Tensor, targets: torch.Tensor | None = None,
             ignore_index: int = -100) -> torch.Tensor:
        """Mean next-token cross-entropy of ids [B, T] (targets default to ids shifted left;
        pass targets [B, T] with ignore_index to mask positions). Differentiable."""
        logits = self(ids)  # (B, T, V)
        if targets is None:
            logits, targets = logits[:, :-1], ids[:, 1:]
        V = logits.shape[-1]
        return backend.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index)

    # --- cached generation ------------------------------------------------------------

    def setup_caches(self, batch_size: int, max_seq_len: int) -> None:
        """Preallocate KV caches [batch_size, Hkv, max_seq_len, D] in every layer.

        Buffers that already fit (batch and length no smaller) are reused as they are.
        Raises ConfigError when max_seq_len exceeds the model's context.
        """
        self._check_len(max_seq_len)
        c = self.config
        if not self.caches_fit(batch_size, max_seq_len):
            self.cache_writes += 1
        for layer in self.layers:
            cache = layer.attn.cache
            if cache is None or not cache.fits(batch_size, max_seq_len, self.dtype, self.device):
                layer.attn.cache = KVCache(batch_size, max_seq_len, c.n_kv_heads, c.head_dim,
                                           self.dtype, self.device)
        # Rebuilt on the next decode step (~3 ms): it points at the caches and weights,
        # and either may have been replaced since the last generation.
        self._fused = None

    def caches_fit(self, batch_size: int, max_seq_len: int) -> bool:
        """Whether every layer's KV cache can serve batch_size x max_seq_len as it is."""
        return all(layer.attn.cache is not None
                   and layer.attn.cache.fits(batch_size, max_seq_len, self.dtype, self.device)
                   for layer in self.layers)

    def resize_caches(self, batch_size: int, max_seq_len: int, keep_rows: int,
                      keep_len: int) -> None:
        """Grow the KV caches to [batch_size, ..., max_seq_len, ...] keeping positions
        [0, keep_len) of rows [0, keep_rows): sequences keep decoding where they were while
        a batch grows for newcomers. Raises ConfigError past the model's context."""
        self._check_len(max_seq_len)
        self.cache_writes += 1
        for layer in self.layers:
            layer.attn.cache = layer.attn.cache.resized(batch_size, max_seq_len, keep_rows,
                                                        keep_len)
        self._fused = None  # it points at the old buffers

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, lengths: torch.Tensor, start: int = 0,
                row: int = 0) -> torch.Tensor:
        """Run right-padded prompts ids [B, T] (row b valid in [0, lengths[b])) through the
        model, filling cache positions [start, start + T) of cache rows [row, row + B);
        return float32 logits [B, V] at each row's last valid token. With start > 0 the
        rows continue what the cache holds at [0, start) (see share_prefix). Padded
        positions are written to the cache but never attended: decode overwrites position
        start + lengths[b] before attending. A row > 0 prefills newcomers beside sequences
        already decoding in rows [0, row)."""
        B, T = ids.shape
        self._check_cache(row + B, start + T)
        self.cache_writes += 1
        fused = self._fused_prefill(row + B)
        if fused is not None:
            return fused.prefill(ids, lengths, start, row)
        pos = torch.arange(start, start + T, device=ids.device)
        x = self._embed(ids, pos)  # (B, T, dim)
        cos = self.rope_cos[start:start + T, None, :]  # (T, 1, D)
        sin = self.rope_sin[start:start + T, None, :]
        for layer in self.layers:
            x = layer(x, cos, sin, fill_cache=True, start=start, row=row)
        rows = torch.arange(B, device=ids.device)
        last = x[rows, lengths.to(ids.device) - 1]  # (B, dim): the head runs on B rows only
        return self._head(last)

    def prefill_rows_exact(self, batch_size: int) -> bool:
        """Whether a prefill into cache rows [0, batch_size) gives every row bit for bit the
        cache and logits it gets prefilled alone (the fused path: its kernels compute each
        token independently of the others). The torch path's padded batches and batch-size
        dependent matmuls do not promise that."""
        return self._fused_prefill(batch_size) is not None

    def _fused_prefill(self, batch_size: int) -> FusedDecoder | None:
        """The fused step for a prefill, unless hooks watch the layers (a caller polling
        between layers, as `engine.generate` does to cancel a long prefill): the fused
        step runs no layer module, so those take the torch path."""
        if any(layer._forward_pre_hooks or layer._forward_hooks for layer in self.layers):
            return None
        return self._fused_decoder(batch_size)

    def share_prefix(self, batch_size: int, length: int) -> None:
        """Give rows [1, batch_size) the cached positions [0, length) of row 0: a prompt
        prefix common to a batch is prefilled once (row 0), then continued per row with
        prefill(..., start=length)."""
        self.cache_writes += 1
        for layer in self.layers:
            layer.attn.cache.share_prefix(batch_size, length)

    def move_rows(self, src: list[int], dst: list[int], length: int) -> None:
        """Copy cached positions [0, length) of rows src[i] into rows dst[i] in every layer
        (generation compacts a batch this way as its sequences finish)."""
        self.cache_writes += 1
        for layer in self.layers:
            layer.attn.cache.move_rows(src, dst, length)

    @torch.inference_mode()
    def decode_step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Feed tokens [B] at positions [B] (one per sequence); write their k/v there and
        attend to cache [0, positions[b]]. Returns float32 logits [B, V]."""
        self.cache_writes += 1
        fused = self._fused_decoder(tokens.shape[0])
        if fused is not None:
            return fused.step(tokens, positions)
        x = self._embed(tokens, positions)  # (B, dim)
        cos = self.rope_cos[positions].unsqueeze(1)  # (B, 1, D): broadcast over heads
        sin = self.rope_sin[positions].unsqueeze(1)
        seqlens = positions + 1
        for layer in self.layers:
            x = layer.decode(x, cos, sin, positions, seqlens)
        return self._head(x)

    def _fused_decoder(self, batch_size: int) -> FusedDecoder | None:
        """The fused step when it applies to this model, batch and attention backend."""
        if not self.fused_decode or backend.get_backend(self.device) != "sdpa":
            return None
        if self._fused is None:
            self._fused = FusedDecoder.build(self) or False
        return self._fused if self._fused and self._fused.applies(batch_size) else None

    def _check_len(self, n: int) -> None:
        if n > self.config.max_seq_len:
            raise ConfigError(
                f"sequence length {n} exceeds the model's context of "
                f"{self.config.max_seq_len} tokens; shorten the prompt or max_tokens"
            )

    def _check_cache(self, batch_size: int, seq_len: int) -> None:
        cache = self.layers[0].attn.cache
        if cache is None or batch_size > cache.batch_size or seq_len > cache.max_seq_len:
            raise ConfigError(
                f"prefill of batch {batch_size} x {seq_len} tokens does not fit the KV cache; "
                "call setup_caches(batch_size, max_seq_len) first"
            )
