"""The tensor shapes a ModelConfig implies, in OUR naming: readers check against them.

A checkpoint whose metadata disagrees with its tensors (a hand-edited config.json, a
GGUF with a wrong head count) would otherwise load and produce garbage, or fail deep in
the model with a shape error that does not name the file.
"""

from __future__ import annotations

from pathlib import Path

from llmos_jupyter.core.checkpoint import Tensor
from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.errors import CheckpointError


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a checkpoint of `cfg` has (see core/checkpoint.py)."""
    gpt2 = cfg.arch == "gpt2"
    d, hd = cfg.dim, cfg.head_dim
    shapes: dict[str, tuple[int, ...]] = {"tok_embeddings.weight": (cfg.vocab_size, d)}
    if gpt2:
        shapes["pos_embeddings.weight"] = (cfg.max_seq_len, d)
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        layer = {
            "attn_norm.weight": (d,),
            "attn.wqkv.weight": (cfg.qkv_dim, d),
            "attn.wo.weight": (d, cfg.n_heads * hd),
            "ffn_norm.weight": (d,),
            "ffn.w_in.weight": (cfg.ffn_dim if gpt2 else 2 * cfg.ffn_dim, d),
            "ffn.w_out.weight": (d, cfg.ffn_dim),
        }
        if gpt2 or cfg.qkv_bias:
            layer["attn.wqkv.bias"] = (cfg.qkv_dim,)
        if gpt2:
            for name in ("attn_norm", "attn.wo", "ffn_norm", "ffn.w_in", "ffn.w_out"):
                layer[name + ".bias"] = (layer[name + ".weight"][0],)
        shapes.update({p + k: v for k, v in layer.items()})
    shapes["norm.weight"] = (d,)
    if gpt2:
        shapes["norm.bias"] = (d,)
    if not cfg.tie_embeddings:
        shapes["output.weight"] = (cfg.vocab_size, d)
    return shapes


def check_shapes(path: str | Path, cfg: ModelConfig, tensors: dict[str, Tensor]) -> None:
    """Raise CheckpointError naming `path` if `tensors` do not have `cfg`'s shapes."""
    want = expected_shapes(cfg)
    for name, shape in want.items():
        got = tuple(tensors[name].shape) if name in tensors else None
        if got != shape:
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {got}, but the model metadata implies "
                f"{shape}; the checkpoint's config and weights disagree"
            )
    extra = sorted(set(tensors) - set(want))
    if extra:
        raise CheckpointError(f"{path}: tensors {extra[:5]} do not belong to this model")
