"""The in-memory form every checkpoint format reads into and writes from.

A `Checkpoint` is a ModelConfig, a dict of tensors in OUR naming (below), the
tokenizer's description, and metadata. Formats translate their own names and layouts
into this; the model only ever sees this.

Tensor names (shapes in torch order, [out, in] for projections):
    tok_embeddings.weight            [vocab, dim]
    pos_embeddings.weight            [max_seq_len, dim]             (gpt2 only)
    layers.{i}.attn_norm.weight      [dim]          (+ .bias for gpt2)
    layers.{i}.attn.wqkv.weight      [(Hq + 2*Hkv) * head_dim, dim]  q rows, then k, then v
    layers.{i}.attn.wqkv.bias        same rows                       (gpt2, or qkv_bias)
    layers.{i}.attn.wo.weight        [dim, Hq * head_dim]            (+ .bias for gpt2)
    layers.{i}.ffn_norm.weight       [dim]          (+ .bias for gpt2)
    layers.{i}.ffn.w_in.weight       llama: [2 * ffn_dim, dim], gate rows then up rows
                                     gpt2:  [ffn_dim, dim] (+ .bias)
    layers.{i}.ffn.w_out.weight      [dim, ffn_dim] (+ .bias for gpt2)
    norm.weight                      [dim]          (+ .bias for gpt2)
    output.weight                    [vocab, dim]   (absent when tie_embeddings)

Q and K rows are in the Hugging Face "rotate_half" rotary layout (GGUF readers undo
llama.cpp's permutation). A tensor is either a torch.Tensor or a QuantizedTensor that
keeps a GGUF's quantized blocks as they are, so 4-bit weights can be multiplied directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.core.tokenizer_spec import TokenizerSpec


@dataclass
class QuantizedTensor:
    """A 2-D weight kept in GGML block-quantized form.

    `blocks` is uint8 [rows, bytes_per_row]: each row holds whole blocks, so rows can be
    permuted or concatenated without touching the bytes. `ggml_type` is the name of the
    GGML quantization type ("Q4_0", "Q4_1", "Q8_0", "Q6_K", ...); `shape` is (rows, cols).
    """

    ggml_type: str
    blocks: np.ndarray
    shape: tuple[int, int]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Return the weight as a dense [rows, cols] tensor of `dtype`."""
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        qtype = GGMLQuantizationType[self.ggml_type]
        dense = dequantize(self.blocks, qtype).reshape(self.shape)
        return torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)).to(dtype)

    def take_rows(self, index: np.ndarray) -> QuantizedTensor:
        """Rows in a new order (used to undo llama.cpp's Q/K permutation)."""
        return QuantizedTensor(self.ggml_type, self.blocks[index], (len(index), self.shape[1]))

    @staticmethod
    def cat_rows(parts: list[QuantizedTensor]) -> QuantizedTensor:
        """Stack weights of the same type and width along rows (fused qkv, gate+up)."""
        kinds = {(p.ggml_type, p.shape[1]) for p in parts}
        if len(kinds) != 1:
            raise ValueError(f"cannot concatenate quantized tensors of kinds {sorted(kinds)}")
        blocks = np.concatenate([p.blocks for p in parts], axis=0)
        return QuantizedTensor(parts[0].ggml_type, blocks, (blocks.shape[0], parts[0].shape[1]))


Tensor = torch.Tensor | QuantizedTensor


@dataclass
class Checkpoint:
    """A model read from any format: its config, tensors in our naming, tokenizer, metadata."""

    config: ModelConfig
    tensors: dict[str, Tensor]
    tokenizer: TokenizerSpec | None = None
    # source path, format ("gguf" | "hf" | "native"), quantization summary, license...
    metadata: dict[str, Any] = field(default_factory=dict)
