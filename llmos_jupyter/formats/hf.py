"""Read Hugging Face model directories (config.json + safetensors) into a Checkpoint.

Llama-family model types (llama, mistral, qwen2, smollm...) map to arch "llama";
"gpt2" to arch "gpt2". Weights come only from *.safetensors: pickled .bin/.pt files can
run arbitrary code when loaded, so we refuse them and say how to convert. Q/K rows in HF
checkpoints are already in the "rotate_half" layout our Transformer uses.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from llmos_jupyter.core.checkpoint import Checkpoint
from llmos_jupyter.core.config import ROPE_SCALING_KEYS, ModelConfig
from llmos_jupyter.core.tokenizer_spec import TokenizerSpec
from llmos_jupyter.errors import CheckpointError, ConfigError
from llmos_jupyter.formats.hf_tokenizer import spec_from_tokenizer_json
from llmos_jupyter.formats.shapes import check_shapes

LLAMA_TYPES = ("llama", "mistral", "qwen2", "smollm", "smollm2", "smollm3")
# Qwen2 always has q/k/v biases; llama/mistral only when config says attention_bias.
ALWAYS_QKV_BIAS = ("qwen2",)
# Buffers some checkpoints carry that are recomputed at run time, never weights.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or not valid JSON ({exc})") from exc


def _object(root: Path, hf: dict[str, Any], key: str) -> dict[str, Any]:
    """hf[key] as a dict ({} when absent); CheckpointError for a list, number or string."""
    value = hf.get(key) or {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{root / 'config.json'}: {key!r} must be an object, not "
                              f"{type(value).__name__}")
    return value


def _rope_theta(root: Path, hf: dict[str, Any]) -> Any:
    # transformers 5 moved rope_theta into "rope_parameters"; older configs have it top-level.
    # Returned as stored: ModelConfig refuses a string, NaN or a non-positive base.
    params = _object(root, hf, "rope_parameters")
    theta = hf.get("rope_theta")
    return theta if theta is not None else params.get("rope_theta", 10000.0)


def _rope_scaling(root: Path, hf: dict[str, Any]) -> dict[str, Any] | None:
    """ModelConfig.rope_scaling from "rope_scaling" (transformers 4) or "rope_parameters"
    (5); None for plain RoPE. Scalings we do not apply are refused, not ignored: a model
    run with the wrong frequencies loads fine and answers wrongly."""
    raw = _object(root, hf, "rope_scaling") or _object(root, hf, "rope_parameters")
    kind = raw.get("rope_type") or raw.get("type") or "default"
    # Dynamic NTK changes nothing up to max_position_embeddings, which is as far as our
    # context (max_seq_len) goes, so it is plain RoPE here.
    if not isinstance(kind, str):
        raise CheckpointError(f"{root / 'config.json'}: RoPE scaling type {kind!r} is not a name")
    if kind in ("default", "dynamic"):
        return None
    keys = ROPE_SCALING_KEYS.get(kind) if kind != "factors" else None
    if keys is None:
        raise CheckpointError(
            f"{root / 'config.json'}: RoPE scaling {kind!r} is not supported (supported: "
            "linear, llama3); this model would run with the wrong position frequencies")
    scaling = {"type": kind, **{k: raw[k] for k in keys if k in raw}}
    if kind == "llama3":  # as transformers: the original context defaults to the model's
        scaling.setdefault("original_max_position_embeddings",
                           hf.get("max_position_embeddings", 2048))
    return scaling


def _config(root: Path, hf: Any) -> ModelConfig:
    """ModelConfig from config.json. Numbers go to ModelConfig as written, so that its
    checks refuse `vocab_size: 512.0`, `max_position_embeddings: 1e12` or `-5`."""
    if not isinstance(hf, dict):
        raise CheckpointError(f"{root / 'config.json'}: must hold a JSON object, not "
                              f"{type(hf).__name__}")
    model_type = hf.get("model_type")
    try:
        if model_type in LLAMA_TYPES:
            act = hf.get("hidden_act", "silu")
            if act != "silu":
                raise CheckpointError(
                    f"{root / 'config.json'}: hidden_act {act!r} is not supported "
                    "(llama uses 'silu')"
                )
            n_heads = hf["num_attention_heads"]
            return ModelConfig(
                arch="llama",
                vocab_size=hf["vocab_size"],
                dim=hf["hidden_size"],
                n_layers=hf["num_hidden_layers"],
                n_heads=n_heads,
                n_kv_heads=hf.get("num_key_value_heads") or n_heads,
                head_dim=hf.get("head_dim"),
                ffn_dim=hf["intermediate_size"],
                max_seq_len=hf.get("max_position_embeddings", 2048),
                norm_eps=hf.get("rms_norm_eps", 1e-6),
                rope_theta=_rope_theta(root, hf),
                tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
                qkv_bias=model_type in ALWAYS_QKV_BIAS or bool(hf.get("attention_bias", False)),
                activation="silu",
                rope_scaling=_rope_scaling(root, hf),
            )
        if model_type == "gpt2":
            act = hf.get("activation_function", "gelu_new")
            activation = {
                "gelu_new": "gelu_tanh",
                "gelu_pytorch_tanh": "gelu_tanh",
                "gelu": "gelu",
            }.get(act)
            if activation is None:
                raise CheckpointError(
                    f"{root / 'config.json'}: activation_function {act!r} is not supported"
                )
            dim = hf["n_embd"]
            if not isinstance(dim, int):
                raise ConfigError(f"n_embd must be an integer, not {dim!r}")
            return ModelConfig(
                arch="gpt2",
                vocab_size=hf["vocab_size"],
                dim=dim,
                n_layers=hf["n_layer"],
                n_heads=hf["n_head"],
                n_kv_heads=hf["n_head"],
                ffn_dim=hf.get("n_inner") or 4 * dim,
                max_seq_len=hf.get("n_positions", 1024),
                norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
                qkv_bias=True,
                activation=activation,
            )
    except KeyError as exc:
        raise CheckpointError(f"{root / 'config.json'}: required field {exc} is missing") from exc
    except ConfigError as exc:
        raise CheckpointError(f"{root / 'config.json'}: inconsistent config ({exc})") from exc
    raise CheckpointError(
        f"{root / 'config.json'}: model_type {model_type!r} is not supported; LLMOS reads "
        f"{sorted(LLAMA_TYPES + ('gpt2',))}"
    )


def confined_name(root: Path, name: Any, source: Path) -> str:
    """`name`, a file name read from the checkpoint's own `source` file, if it names a
    file inside `root`; CheckpointError for '../x/model.safetensors', '/etc/passwd', ...

    The check is on the name, which whoever made the checkpoint wrote. Symbolic links
    inside the directory are the user's own and are followed: the Hugging Face cache
    links snapshots/<rev>/<file> to ../../blobs/<hash>.
    """
    rel = PurePosixPath(name) if isinstance(name, str) else None
    if (rel is None or not name or "\0" in name or "\\" in name or rel.is_absolute()
            or ".." in rel.parts or not name.endswith(".safetensors")):
        raise CheckpointError(
            f"{source}: refers to {name!r}, which is not a .safetensors file inside the "
            f"checkpoint directory {root}; a checkpoint may only name its own files"
        )
    return str(rel)


def _load_safetensors(root: Path) -> dict[str, torch.Tensor]:
    """All tensors of the directory's safetensors file(s), single or sharded."""
    from safetensors import safe_open

    index = root / "model.safetensors.index.json"
    if index.is_file():
        content = _read_json(index)
        weight_map = content.get("weight_map") if isinstance(content, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: has no 'weight_map'")
        files = sorted({confined_name(root, n, index) for n in weight_map.values()})
    elif (root / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        files = sorted(p.name for p in root.glob("*.safetensors"))
    if not files:
        pickled = sorted(
            p.name for p in root.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")
        )
        hint = (
            f"it has only pickled weights {pickled}, which LLMOS never loads (unpickling can "
            "run code); convert them to safetensors first, e.g. with transformers: "
            "model.save_pretrained(dir, safe_serialization=True)"
            if pickled
            else "no *.safetensors file found"
        )
        raise CheckpointError(f"{root}: {hint}")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        path = root / name
        if not path.is_file():
            raise CheckpointError(
                f"{path}: listed in the shard index but missing; download the model again"
            )
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    tensors[key] = f.get_tensor(key)
        except Exception as exc:  # SafetensorError for a truncated/corrupt file
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({exc})") from exc
    return tensors


class _Taker:
    """Pops HF tensors by name so leftovers (unknown weights) can be reported."""

    def __init__(self, root: Path, tensors: dict[str, torch.Tensor]) -> None:
        self.root = root
        self.left = {k: v for k, v in tensors.items() if not k.endswith(IGNORED_SUFFIXES)}

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self.left:
            raise CheckpointError(
                f"{self.root}: required tensor {name!r} is missing from the safetensors files"
            )
        return self.left.pop(name)


def _llama_tensors(take: _Taker, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = {"tok_embeddings.weight": take("model.embed_tokens.weight")}
    for i in range(cfg.n_layers):
        h, o = f"model.layers.{i}.", f"layers.{i}."
        out[o + "attn_norm.weight"] = take(h + "input_layernorm.weight")
        for kind in ("weight", "bias") if cfg.qkv_bias else ("weight",):
            parts = [take(h + f"self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[o + f"attn.wqkv.{kind}"] = torch.cat(parts, dim=0)
        out[o + "attn.wo.weight"] = take(h + "self_attn.o_proj.weight")
        out[o + "ffn_norm.weight"] = take(h + "post_attention_layernorm.weight")
        out[o + "ffn.w_in.weight"] = torch.cat(
            [take(h + "mlp.gate_proj.weight"), take(h + "mlp.up_proj.weight")]
        )
        out[o + "ffn.w_out.weight"] = take(h + "mlp.down_proj.weight")
    out["norm.weight"] = take("model.norm.weight")
    if not cfg.tie_embeddings:
        out["output.weight"] = take("lm_head.weight")
    else:
        take.left.pop("lm_head.weight", None)  # a saved copy of the tied embedding
    return out


def _gpt2_tensors(take: _Taker, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    p = "transformer." if "transformer.wte.weight" in take.left else ""
    out = {
        "tok_embeddings.weight": take(p + "wte.weight"),
        "pos_embeddings.weight": take(p + "wpe.weight"),
    }
    pairs = {
        "ln_1": "attn_norm",
        "attn.c_attn": "attn.wqkv",
        "attn.c_proj": "attn.wo",
        "ln_2": "ffn_norm",
        "mlp.c_fc": "ffn.w_in",
        "mlp.c_proj": "ffn.w_out",
    }
    for i in range(cfg.n_layers):
        for theirs, ours in pairs.items():
            w = take(f"{p}h.{i}.{theirs}.weight")
            # GPT-2's Conv1D stores [in, out]; our projections are [out, in] like nn.Linear.
            out[f"layers.{i}.{ours}.weight"] = w if theirs.startswith("ln") else w.t().contiguous()
            out[f"layers.{i}.{ours}.bias"] = take(f"{p}h.{i}.{theirs}.bias")
    out["norm.weight"], out["norm.bias"] = take(p + "ln_f.weight"), take(p + "ln_f.bias")
    if not cfg.tie_embeddings:
        out["output.weight"] = take("lm_head.weight")
    else:
        take.left.pop("lm_head.weight", None)
    return out


def _tokenizer(root: Path) -> TokenizerSpec | None:
    """tokenizer.json (see hf_tokenizer.py) or GPT-2's vocab.json + merges.txt."""
    tok_config_path = root / "tokenizer_config.json"
    tok_config = _read_json(tok_config_path) if tok_config_path.is_file() else None
    if (root / "tokenizer.json").is_file():
        return spec_from_tokenizer_json(_read_json(root / "tokenizer.json"), tok_config)
    if (root / "vocab.json").is_file() and (root / "merges.txt").is_file():
        return _spec_from_vocab_merges(root, tok_config or {})
    return None


def _special(tok_config: dict[str, Any], key: str) -> str | None:
    value = tok_config.get(key)
    return value.get("content") if isinstance(value, dict) else value


def _spec_from_vocab_merges(root: Path, tok_config: dict[str, Any]) -> TokenizerSpec:
    vocab = _read_json(root / "vocab.json")
    if not isinstance(vocab, dict) or sorted(vocab.values()) != list(range(len(vocab))):
        raise CheckpointError(
            f"{root / 'vocab.json'}: token ids are not 0..{len(vocab) - 1} without gaps"
        )
    tokens = [""] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    lines = (root / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [line for line in lines if line and not line.startswith("#version")]
    specials = {
        t.get("content")
        for t in tok_config.get("added_tokens_decoder", {}).values()
        if t.get("special")
    }
    names = {k: _special(tok_config, f"{k}_token") for k in ("bos", "eos", "pad", "unk")}
    specials |= {v for v in names.values() if v}
    if "<|endoftext|>" in vocab:  # GPT-2's only special token, bos and eos at once
        specials.add("<|endoftext|>")
        names["bos"] = names["bos"] or "<|endoftext|>"
        names["eos"] = names["eos"] or "<|endoftext|>"
    return TokenizerSpec(
        tokens=tokens,
        merges=merges,
        pre="gpt2",
        token_types=[3 if t in specials else 1 for t in tokens],
        bos_id=vocab.get(names["bos"]) if names["bos"] else None,
        eos_id=vocab.get(names["eos"]) if names["eos"] else None,
        pad_id=vocab.get(names["pad"]) if names["pad"] else None,
        add_bos=bool(tok_config.get("add_bos_token", False)),
        chat_template=tok_config.get("chat_template"),
    )


def read_hf_dir(path: str | Path) -> Checkpoint:
    """Read a Hugging Face model directory into a Checkpoint in OUR naming.

    Needs config.json and *.safetensors (one file, or shards with
    model.safetensors.index.json). Raises CheckpointError for a missing/invalid
    config, an unsupported model_type, pickled-only weights, corrupt safetensors,
    missing or unexpected tensors.
    """
    root = Path(path)
    if not (root / "config.json").is_file():
        raise CheckpointError(f"{root}: no config.json; a Hugging Face model directory needs one")
    hf = _read_json(root / "config.json")
    cfg = _config(root, hf)
    take = _Taker(root, _load_safetensors(root))
    tensors = _llama_tensors(take, cfg) if cfg.arch == "llama" else _gpt2_tensors(take, cfg)
    if take.left:
        raise CheckpointError(
            f"{root}: unexpected tensors {sorted(take.left)[:5]}: this model uses parts "
            "LLMOS's Transformer does not have"
        )
    check_shapes(root, cfg, tensors)
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()})
    name = hf.get("_name_or_path") or root.name
    cfg.extra.update(name=name, source_format="hf", quantization="/".join(dtypes))
    metadata = {
        "format": "hf",
        "path": str(root.resolve()),
        "architecture": hf.get("model_type"),
        "name": name,
        "quantization": "/".join(dtypes),
    }
    return Checkpoint(cfg, tensors, _tokenizer(root), metadata)
