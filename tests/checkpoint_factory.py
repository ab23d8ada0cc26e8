"""Tiny random checkpoints that tests write themselves (model hubs are unreachable).

Each writer mimics the real producer of its format, independently of our readers:
`write_tiny_gguf` lays tensors out as llama.cpp's converter does (including its Q/K row
permutation for "llama"), `write_tiny_hf_dir` as `save_pretrained` does (including
GPT-2's Conv1D [in, out] weights). `tiny_state_dict(config, seed)` returns the same
weights in OUR naming and layout, so a test can compare what a reader returns with the
source it came from.

    from tests.checkpoint_factory import write_tiny_gguf, tiny_config, tiny_state_dict
    path = write_tiny_gguf(tmp_path / "m.gguf", qtype="Q8_0")
    want = tiny_state_dict(tiny_config("llama"), seed=0)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmos_jupyter.core.config import ModelConfig

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Merges in rank order; each joins two tokens that exist by then. "hello world" and
# " the" tokenize to multi-byte tokens, so tests see merges applied.
MERGES = [
    "Ġ t",
    "h e",
    "i n",
    "Ġt he",
    "e r",
    "Ġ a",
    "o n",
    "r e",
    "Ġ s",
    "a t",
    "e n",
    "l l",
    "he ll",
    "hell o",
    "o r",
    "Ġ w",
    "Ġw or",
    "l d",
    "Ġwor ld",
    "in g",
    "Ġ i",
    "i s",
    "Ġ h",
    "Ġ hello",
    "e s",
    "i t",
    "Ġ c",
    "a n",
    "e d",
    "Ġ b",
]
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
DEFAULT_CONFIGS = {"llama": "tiny", "qwen2": "tiny", "gpt2": "tiny-gpt2"}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (byte-level BPE alphabet)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_tokenizer(vocab_size: int = 512) -> dict[str, Any]:
    """A real byte-level BPE vocabulary of exactly `vocab_size` tokens.

    Ids: 0-2 the ChatML specials, 3-258 the 256 bytes in byte order, then one token per
    merge, then `<|reserved_N|>` control tokens filling up to `vocab_size` (llama.cpp
    wants as many tokens as embedding rows). Returns tokens, merges, token_types (GGUF
    codes: 1 normal, 3 control), bos/eos/pad ids and the ChatML chat template.
    """
    tokens = list(SPECIAL_TOKENS) + [bytes_to_unicode()[b] for b in range(256)]
    known = set(tokens)
    for merge in MERGES:
        left, right = merge.split(" ")
        assert left in known and right in known and left + right not in known, merge
        tokens.append(left + right)
        known.add(left + right)
    n_regular = len(tokens)
    tokens += [f"<|reserved_{i}|>" for i in range(vocab_size - n_regular)]
    types = [3] * len(SPECIAL_TOKENS) + [1] * (n_regular - len(SPECIAL_TOKENS))
    types += [3] * (vocab_size - n_regular)
    return dict(
        tokens=tokens,
        merges=list(MERGES),
        token_types=types,
        bos_id=1,
        eos_id=2,
        pad_id=2,
        chat_template=CHATML_TEMPLATE,
    )


def tiny_config(
    arch: str = "llama", config_name: str | None = None, **overrides: Any
) -> ModelConfig:
    """The ModelConfig the writers use: CONFIGS[config_name] (default by arch) + overrides.

    arch "qwen2" is the "tiny" llama config with q/k/v biases.
    """
    name = config_name or DEFAULT_CONFIGS[arch]
    if arch == "qwen2":
        overrides = {"qkv_bias": True, **overrides}
    return ModelConfig.from_name(name, **overrides)


def tiny_state_dict(config: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 weights in OUR naming and layout (Q/K in HF rotate_half order)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 0.02, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale + shift

    c = config
    gpt2 = c.arch == "gpt2"
    sd: dict[str, torch.Tensor] = {"tok_embeddings.weight": randn(c.vocab_size, c.dim)}
    if gpt2:
        sd["pos_embeddings.weight"] = randn(c.max_seq_len, c.dim)
    for i in range(c.n_layers):
        p = f"layers.{i}."
        for norm in ("attn_norm", "ffn_norm"):
            sd[p + norm + ".weight"] = randn(c.dim, scale=0.1, shift=1.0)
            if gpt2:
                sd[p + norm + ".bias"] = randn(c.dim)
        sd[p + "attn.wqkv.weight"] = randn(c.qkv_dim, c.dim)
        if gpt2 or c.qkv_bias:
            sd[p + "attn.wqkv.bias"] = randn(c.qkv_dim)
        sd[p + "attn.wo.weight"] = randn(c.dim, c.n_heads * c.head_dim)
        sd[p + "ffn.w_in.weight"] = randn(c.ffn_dim if gpt2 else 2 * c.ffn_dim, c.dim)
        sd[p + "ffn.w_out.weight"] = randn(c.dim, c.ffn_dim)
        if gpt2:
            for name in ("attn.wo", "ffn.w_in", "ffn.w_out"):
                sd[p + name + ".bias"] = randn(sd[p + name + ".weight"].shape[0])
    sd["norm.weight"] = randn(c.dim, scale=0.1, shift=1.0)
    if gpt2:
        sd["norm.bias"] = randn(c.dim)
    if not c.tie_embeddings:
        sd["output.weight"] = randn(c.vocab_size, c.dim)
    return sd


def split_qkv(
    config: ModelConfig, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split fused q/k/v rows (weight or bias) into the three projections."""
    q = config.n_heads * config.head_dim
    kv = config.n_kv_heads * config.head_dim
    return t[:q], t[q : q + kv], t[q + kv :]


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's `permute`: interleave each head's rotary halves."""
    return (
        w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


# -- GGUF ------------------------------------------------------------------------------


def _gguf_tensors(
    config: ModelConfig, sd: dict[str, torch.Tensor], arch: str
) -> dict[str, np.ndarray]:
    """Our state dict -> llama.cpp tensor names and layouts (float32 numpy)."""
    c = config
    a = {k: v.numpy() for k, v in sd.items()}
    out = {"token_embd.weight": a["tok_embeddings.weight"]}
    if arch == "gpt2":
        out["position_embd.weight"] = a["pos_embeddings.weight"]
        names = {
            "attn_norm": "attn_norm",
            "attn_qkv": "attn.wqkv",
            "attn_output": "attn.wo",
            "ffn_norm": "ffn_norm",
            "ffn_up": "ffn.w_in",
            "ffn_down": "ffn.w_out",
        }
        for i in range(c.n_layers):
            for theirs, ours in names.items():
                for kind in ("weight", "bias"):
                    out[f"blk.{i}.{theirs}.{kind}"] = a[f"layers.{i}.{ours}.{kind}"]
        out["output_norm.bias"] = a["norm.bias"]
    else:
        for i in range(c.n_layers):
            b, p = f"blk.{i}.", f"layers.{i}."
            out[b + "attn_norm.weight"] = a[p + "attn_norm.weight"]
            kinds = ("weight", "bias") if c.qkv_bias else ("weight",)
            for kind in kinds:
                q, k, v = (x.numpy() for x in split_qkv(c, sd[p + f"attn.wqkv.{kind}"]))
                if arch == "llama":  # llama.cpp permutes llama's Q/K (weights and biases)
                    q, k = llama_cpp_permute(q, c.n_heads), llama_cpp_permute(k, c.n_kv_heads)
                out[b + f"attn_q.{kind}"], out[b + f"attn_k.{kind}"], out[b + f"attn_v.{kind}"] = (
                    q,
                    k,
                    v,
                )
            out[b + "attn_output.weight"] = a[p + "attn.wo.weight"]
            out[b + "ffn_norm.weight"] = a[p + "ffn_norm.weight"]
            out[b + "ffn_gate.weight"] = a[p + "ffn.w_in.weight"][: c.ffn_dim]
            out[b + "ffn_up.weight"] = a[p + "ffn.w_in.weight"][c.ffn_dim :]
            out[b + "ffn_down.weight"] = a[p + "ffn.w_out.weight"]
    out["output_norm.weight"] = a["norm.weight"]
    if not c.tie_embeddings:
        out["output.weight"] = a["output.weight"]
    return out


def write_tiny_gguf(
    path: str | Path,
    arch: str = "llama",
    qtype: str = "F32",
    config_name: str | None = None,
    seed: int = 0,
    *,
    qtype_overrides: dict[str, str] | None = None,
    drop_tensors: tuple[str, ...] = (),
    extra_tensors: dict[str, np.ndarray] | None = None,
    strings: dict[str, str] | None = None,
    **config_overrides: Any,
) -> Path:
    """Write a tiny random GGUF as llama.cpp would, and return its path.

    arch: "llama" (Q/K permuted), "qwen2" (q/k/v bias, not permuted) or "gpt2".
    qtype: ggml type of every 2-D weight: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1
    (gguf-py cannot quantize K-quants). 1-D tensors are always F32.
    qtype_overrides: per GGUF tensor-name suffix, e.g. {"attn_v.weight": "Q8_0"}.
    drop_tensors: GGUF tensor names to leave out (to test incomplete files).
    extra_tensors: more tensors to write as they are (e.g. "rope_freqs.weight").
    strings: more string metadata (e.g. {"llama.rope.scaling.type": "yarn"}).
    The weights are `tiny_state_dict(tiny_config(arch, config_name, **config_overrides), seed)`.
    """
    import gguf
    from gguf.quants import quantize

    path = Path(path)
    c = tiny_config(arch, config_name, **config_overrides)
    tensors = _gguf_tensors(c, tiny_state_dict(c, seed), arch)
    tok = tiny_tokenizer(c.vocab_size)

    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{arch}-{qtype}")
    w.add_string("general.license", "apache-2.0")
    w.add_block_count(c.n_layers)
    w.add_context_length(c.max_seq_len)
    w.add_embedding_length(c.dim)
    w.add_feed_forward_length(c.ffn_dim)
    w.add_head_count(c.n_heads)
    if arch == "gpt2":
        w.add_layer_norm_eps(c.norm_eps)
    else:
        w.add_head_count_kv(c.n_kv_heads)
        w.add_layer_norm_rms_eps(c.norm_eps)
        w.add_rope_freq_base(c.rope_theta)
        w.add_rope_dimension_count(c.head_dim)
        w.add_vocab_size(c.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm" if arch != "gpt2" else "gpt2")
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["token_types"])
    w.add_token_merges(tok["merges"])
    w.add_bos_token_id(tok["bos_id"])
    w.add_eos_token_id(tok["eos_id"])
    w.add_pad_token_id(tok["pad_id"])
    w.add_add_bos_token(False)
    w.add_chat_template(tok["chat_template"])
    for key, value in (strings or {}).items():
        w.add_string(key, value)

    overrides = qtype_overrides or {}
    for name, arr in {**tensors, **(extra_tensors or {})}.items():
        if name in drop_tensors:
            continue
        kind = next((q for suffix, q in overrides.items() if name.endswith(suffix)), qtype)
        if arr.ndim == 1 or kind == "F32":
            w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))
        elif kind == "F16":
            w.add_tensor(name, arr.astype(np.float16))
        else:
            gtype = gguf.GGMLQuantizationType[kind]
            w.add_tensor(
                name, quantize(np.ascontiguousarray(arr, dtype=np.float32), gtype), raw_dtype=gtype
            )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# -- Hugging Face directories ------------------------------------------------------------


def _hf_llama_tensors(c: ModelConfig, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {"model.embed_tokens.weight": sd["tok_embeddings.weight"]}
    for i in range(c.n_layers):
        h, p = f"model.layers.{i}.", f"layers.{i}."
        out[h + "input_layernorm.weight"] = sd[p + "attn_norm.weight"]
        for kind in ("weight", "bias") if c.qkv_bias else ("weight",):
            q, k, v = split_qkv(c, sd[p + f"attn.wqkv.{kind}"])
            out[h + f"self_attn.q_proj.{kind}"] = q
            out[h + f"self_attn.k_proj.{kind}"] = k
            out[h + f"self_attn.v_proj.{kind}"] = v
        out[h + "self_attn.o_proj.weight"] = sd[p + "attn.wo.weight"]
        out[h + "post_attention_layernorm.weight"] = sd[p + "ffn_norm.weight"]
        out[h + "mlp.gate_proj.weight"] = sd[p + "ffn.w_in.weight"][: c.ffn_dim]
        out[h + "mlp.up_proj.weight"] = sd[p + "ffn.w_in.weight"][c.ffn_dim :]
        out[h + "mlp.down_proj.weight"] = sd[p + "ffn.w_out.weight"]
    out["model.norm.weight"] = sd["norm.weight"]
    if not c.tie_embeddings:
        out["lm_head.weight"] = sd["output.weight"]
    return out


def _hf_gpt2_tensors(
    c: ModelConfig, sd: dict[str, torch.Tensor], prefix: str
) -> dict[str, torch.Tensor]:
    # Conv1D stores [in, out]: transposed relative to nn.Linear and to OUR layout.
    out = {
        prefix + "wte.weight": sd["tok_embeddings.weight"],
        prefix + "wpe.weight": sd["pos_embeddings.weight"],
    }
    for i in range(c.n_layers):
        h, p = f"{prefix}h.{i}.", f"layers.{i}."
        pairs = {
            "ln_1": "attn_norm",
            "attn.c_attn": "attn.wqkv",
            "attn.c_proj": "attn.wo",
            "ln_2": "ffn_norm",
            "mlp.c_fc": "ffn.w_in",
            "mlp.c_proj": "ffn.w_out",
        }
        for theirs, ours in pairs.items():
            weight = sd[p + ours + ".weight"]
            out[h + theirs + ".weight"] = weight if theirs.startswith("ln") else weight.t()
            out[h + theirs + ".bias"] = sd[p + ours + ".bias"]
    out[prefix + "ln_f.weight"], out[prefix + "ln_f.bias"] = sd["norm.weight"], sd["norm.bias"]
    return out


def _hf_config(c: ModelConfig, arch: str) -> dict[str, Any]:
    if arch == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": c.vocab_size,
            "n_embd": c.dim,
            "n_layer": c.n_layers,
            "n_head": c.n_heads,
            "n_positions": c.max_seq_len,
            "n_ctx": c.max_seq_len,
            "n_inner": c.ffn_dim,
            "layer_norm_epsilon": c.norm_eps,
            "activation_function": "gelu_new",
            "bos_token_id": 0,
            "eos_token_id": 0,
            "tie_word_embeddings": True,
            "torch_dtype": "float32",
        }
    return {
        "architectures": ["Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM"],
        "model_type": arch,
        "vocab_size": c.vocab_size,
        "hidden_size": c.dim,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "intermediate_size": c.ffn_dim,
        "max_position_embeddings": c.max_seq_len,
        "rms_norm_eps": c.norm_eps,
        "rope_theta": c.rope_theta,
        "hidden_act": "silu",
        "tie_word_embeddings": c.tie_embeddings,
        "attention_bias": c.qkv_bias,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def tiny_tokenizer_json(
    arch: str = "llama", vocab_size: int = 512
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tokenizer.json, tokenizer_config.json) for the tiny vocabulary, as HF writes them."""
    tok = tiny_tokenizer(vocab_size)
    tokens = tok["tokens"]
    specials = [i for i, t in enumerate(tok["token_types"]) if t == 3]
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": True,
    }
    pre: dict[str, Any] = byte_level
    if arch != "gpt2":  # SmolLM2 splits digits one by one before the byte-level regex
        pre = {
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level],
        }
    added = [
        {
            "id": i,
            "content": tokens[i],
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i in specials
    ]
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre,
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": {**byte_level, "add_prefix_space": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": [m.split(" ") for m in tok["merges"]],
        },
    }
    tokenizer_config = {
        "add_prefix_space": False,
        "bos_token": tokens[tok["bos_id"]],
        "eos_token": tokens[tok["eos_id"]],
        "pad_token": tokens[tok["pad_id"]],
        "unk_token": None,
        "chat_template": tok["chat_template"],
        "model_max_length": 256,
        "tokenizer_class": "GPT2Tokenizer",
        "added_tokens_decoder": {
            str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added
        },
    }
    return tokenizer_json, tokenizer_config


def write_tiny_hf_dir(
    path: str | Path,
    arch: str = "llama",
    seed: int = 0,
    *,
    config_name: str | None = None,
    tokenizer: str | None = "json",
    shards: int = 1,
    prefix: str = "",
    **config_overrides: Any,
) -> Path:
    """Write a tiny random Hugging Face model directory and return its path.

    arch: "llama", "qwen2" (q/k/v bias) or "gpt2" (Conv1D [in, out] weights; `prefix`
    may be "transformer." as GPT2LMHeadModel state dicts have). tokenizer: "json"
    (tokenizer.json + tokenizer_config.json), "vocab" (GPT-2's vocab.json + merges.txt
    + tokenizer_config.json) or None. shards > 1 writes model-0000i-of-0000n.safetensors
    with model.safetensors.index.json. Weights: `tiny_state_dict(tiny_config(...), seed)`.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    c = tiny_config(arch, config_name, **config_overrides)
    sd = tiny_state_dict(c, seed)
    hf = _hf_gpt2_tensors(c, sd, prefix) if arch == "gpt2" else _hf_llama_tensors(c, sd)
    hf = {k: v.contiguous().clone() for k, v in hf.items()}
    (path / "config.json").write_text(json.dumps(_hf_config(c, arch), indent=2))

    if shards <= 1:
        save_file(hf, str(path / "model.safetensors"), metadata={"format": "pt"})
    else:
        names = list(hf)
        weight_map = {}
        for s in range(shards):
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = names[s::shards]
            save_file({n: hf[n] for n in part}, str(path / fname), metadata={"format": "pt"})
            weight_map.update({n: fname for n in part})
        total = sum(t.numel() * t.element_size() for t in hf.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    if tokenizer is not None:
        tok_json, tok_config = tiny_tokenizer_json(arch, c.vocab_size)
        (path / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
        if tokenizer == "json":
            (path / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False))
        elif tokenizer == "vocab":
            (path / "vocab.json").write_text(
                json.dumps(tok_json["model"]["vocab"], ensure_ascii=False)
            )
            merges = "\n".join(" ".join(m) for m in tok_json["model"]["merges"])
            (path / "merges.txt").write_text("#version: 0.2\n" + merges + "\n", encoding="utf-8")
        else:
            raise ValueError(f"tokenizer must be 'json', 'vocab' or None, not {tokenizer!r}")
    return path
