"""Tiny random models and the name maps that copy their weights into transformers."""

from __future__ import annotations

import torch

from llmos_jupyter.core.checkpoint import Checkpoint
from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.model.transformer import Transformer


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to b's largest magnitude."""
    return ((a - b).abs().max() / b.abs().max()).item()


def tiny_model(name: str = "tiny", seed: int = 0, **overrides) -> Transformer:
    """Our Transformer with random weights; norms and biases perturbed so they matter."""
    torch.manual_seed(seed)
    model = Transformer(ModelConfig.from_name(name, **overrides)).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n or n.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


def checkpoint_of(model: Transformer) -> Checkpoint:
    return Checkpoint(model.config, {k: v.detach().clone() for k, v in model.state_dict().items()})


def hf_llama(model: Transformer):
    """transformers' LlamaForCausalLM (Qwen2ForCausalLM with q/k/v bias) with our weights."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    c = model.config
    common = dict(
        vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_dim,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
        num_key_value_heads=c.n_kv_heads, head_dim=c.head_dim,
        max_position_embeddings=c.max_seq_len, rms_norm_eps=c.norm_eps,
        rope_theta=c.rope_theta, tie_word_embeddings=c.tie_embeddings,
        attn_implementation="eager",
    )
    if c.qkv_bias:
        hf = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        hf = LlamaForCausalLM(LlamaConfig(**common, attention_bias=False, mlp_bias=False))
    sd = model.state_dict()
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    out = {"model.embed_tokens.weight": sd["tok_embeddings.weight"],
           "model.norm.weight": sd["norm.weight"]}
    for i in range(c.n_layers):
        a, h = f"layers.{i}.", f"model.layers.{i}."
        wq, wk, wv = sd[a + "attn.wqkv.weight"].split([q, kv, kv])
        out |= {h + "self_attn.q_proj.weight": wq, h + "self_attn.k_proj.weight": wk,
                h + "self_attn.v_proj.weight": wv, h + "self_attn.o_proj.weight":
                sd[a + "attn.wo.weight"], h + "input_layernorm.weight": sd[a + "attn_norm.weight"],
                h + "post_attention_layernorm.weight": sd[a + "ffn_norm.weight"],
                h + "mlp.down_proj.weight": sd[a + "ffn.w_out.weight"]}
        gate, up = sd[a + "ffn.w_in.weight"].chunk(2)
        out |= {h + "mlp.gate_proj.weight": gate, h + "mlp.up_proj.weight": up}
        if c.qkv_bias:
            bq, bk, bv = sd[a + "attn.wqkv.bias"].split([q, kv, kv])
            out |= {h + "self_attn.q_proj.bias": bq, h + "self_attn.k_proj.bias": bk,
                    h + "self_attn.v_proj.bias": bv}
    out["lm_head.weight"] = sd["tok_embeddings.weight" if c.tie_embeddings else "output.weight"]
    hf.load_state_dict(out, strict=True)
    return hf.eval()


def hf_gpt2(model: Transformer):
    """transformers' GPT2LMHeadModel with our weights (Conv1D stores [in, out]: transpose)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.config
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=c.vocab_size, n_embd=c.dim, n_layer=c.n_layers, n_head=c.n_heads,
        n_positions=c.max_seq_len, n_inner=c.ffn_dim, layer_norm_epsilon=c.norm_eps,
        activation_function="gelu_new", attn_implementation="eager",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    ))
    sd = model.state_dict()
    out = {"transformer.wte.weight": sd["tok_embeddings.weight"],
           "transformer.wpe.weight": sd["pos_embeddings.weight"],
           "transformer.ln_f.weight": sd["norm.weight"], "transformer.ln_f.bias": sd["norm.bias"],
           "lm_head.weight": sd["tok_embeddings.weight"]}
    for i in range(c.n_layers):
        a, h = f"layers.{i}.", f"transformer.h.{i}."
        for ours, theirs in [("attn_norm", "ln_1"), ("ffn_norm", "ln_2")]:
            out[h + theirs + ".weight"] = sd[a + ours + ".weight"]
            out[h + theirs + ".bias"] = sd[a + ours + ".bias"]
        for ours, theirs in [("attn.wqkv", "attn.c_attn"), ("attn.wo", "attn.c_proj"),
                             ("ffn.w_in", "mlp.c_fc"), ("ffn.w_out", "mlp.c_proj")]:
            out[h + theirs + ".weight"] = sd[a + ours + ".weight"].t().contiguous()
            out[h + theirs + ".bias"] = sd[a + ours + ".bias"]
    missing, unexpected = hf.load_state_dict(out, strict=False)
    assert not unexpected and all(".attn.bias" in m or "masked_bias" in m for m in missing), missing
    return hf.eval()


def right_padded(rows: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, torch.tensor([len(r) for r in rows])
