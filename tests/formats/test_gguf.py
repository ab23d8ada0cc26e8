"""GGUF reading: tiny files written as llama.cpp would, the real default model, corrupt files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize, quantize

from llmos_jupyter.core.checkpoint import QuantizedTensor
from llmos_jupyter.errors import CheckpointError
from llmos_jupyter.formats.gguf import read_gguf, read_gguf_metadata, unpermute_qk_index
from llmos_jupyter.formats.gguf_file import GGUFFile
from tests.checkpoint_factory import (
    llama_cpp_permute,
    tiny_config,
    tiny_state_dict,
    tiny_tokenizer,
    write_tiny_gguf,
)

QUANT_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def quant_roundtrip(t: torch.Tensor, qtype: str) -> torch.Tensor:
    """What a `qtype` weight should dequantize to: gguf-py's own quantize -> dequantize."""
    if qtype == "F32":
        return t
    if qtype == "F16":
        return t.half()
    if qtype == "BF16":
        return t.bfloat16()
    gt = GGMLQuantizationType[qtype]
    return torch.from_numpy(dequantize(quantize(t.numpy(), gt), gt).reshape(t.shape))


def dense(t) -> torch.Tensor:
    return t.dequantize() if isinstance(t, QuantizedTensor) else t


@pytest.mark.parametrize("heads,head_dim", [(1, 2), (4, 16), (3, 64), (9, 64)])
def test_unpermute_inverts_llama_cpp_permute(heads, head_dim):
    w = np.random.default_rng(0).standard_normal((heads * head_dim, 5))
    permuted = llama_cpp_permute(w, heads)
    assert not np.array_equal(permuted, w) or head_dim == 2
    np.testing.assert_array_equal(permuted[unpermute_qk_index(len(w), heads)], w)


@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16", *QUANT_TYPES])
def test_llama_roundtrip(tmp_path, qtype):
    path = write_tiny_gguf(tmp_path / "m.gguf", qtype=qtype, seed=3)
    ckpt = read_gguf(path)
    cfg = tiny_config("llama")
    want = tiny_state_dict(cfg, seed=3)
    assert ckpt.config.to_dict() | {"extra": {}} == cfg.to_dict()
    assert set(ckpt.tensors) == set(want)
    for name, src in want.items():
        got = ckpt.tensors[name]
        if src.ndim == 1:
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, src, rtol=0, atol=0)
            continue
        if qtype in QUANT_TYPES:
            assert isinstance(got, QuantizedTensor) and got.ggml_type == qtype
            assert got.shape == tuple(src.shape)
        else:
            assert isinstance(got, torch.Tensor) and got.dtype == quant_roundtrip(src, qtype).dtype
        # Exact: quantization is per row, so un-permuting rows commutes with it.
        torch.testing.assert_close(dense(got), quant_roundtrip(src, qtype), rtol=0, atol=0)
        # And close to the source within the type's error (4-bit: ~range/15 per block).
        atol = {"F32": 0, "F16": 1e-4, "BF16": 1e-3, "Q8_0": 1e-3}.get(qtype, 0.012)
        torch.testing.assert_close(dense(got).float(), src, rtol=0, atol=atol)
    assert ckpt.metadata["format"] == "gguf"
    assert ckpt.metadata["quantization"] == qtype
    assert ckpt.config.extra["quantization"] == qtype


def test_qk_rows_are_hf_layout(tmp_path):
    """The file holds permuted Q/K rows; we must return the factory's HF-layout rows."""
    path = write_tiny_gguf(tmp_path / "m.gguf")
    cfg = tiny_config("llama")
    raw = GGUFReader(path)  # independent reader: what is actually in the file
    stored_q = next(t for t in raw.tensors if t.name == "blk.0.attn_q.weight").data
    want = tiny_state_dict(cfg)["layers.0.attn.wqkv.weight"]
    q_rows = cfg.n_heads * cfg.head_dim
    assert not np.array_equal(stored_q, want[:q_rows].numpy())  # it really was permuted
    got = read_gguf(path).tensors["layers.0.attn.wqkv.weight"]
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    "arch,overrides", [("qwen2", {}), ("gpt2", {}), ("llama", {"qkv_bias": True})]
)
def test_other_archs_roundtrip(tmp_path, arch, overrides):
    """qwen2 (bias, unpermuted), gpt2, and llama with biases (biases permuted too)."""
    ckpt = read_gguf(write_tiny_gguf(tmp_path / "m.gguf", arch=arch, **overrides))
    cfg = tiny_config(arch, **overrides)
    want = tiny_state_dict(cfg)
    assert ckpt.config.arch == cfg.arch and ckpt.config.qkv_bias
    assert ckpt.config.tie_embeddings == cfg.tie_embeddings
    assert set(ckpt.tensors) == set(want)
    for name, src in want.items():
        torch.testing.assert_close(ckpt.tensors[name], src, rtol=0, atol=0, msg=name)


def test_mixed_types_are_fused_dense(tmp_path):
    path = write_tiny_gguf(
        tmp_path / "m.gguf", qtype="Q4_0", qtype_overrides={"attn_v.weight": "Q8_0"}
    )
    ckpt = read_gguf(path)
    cfg = tiny_config("llama")
    src = tiny_state_dict(cfg)["layers.1.attn.wqkv.weight"]
    q, k, v = src.split([cfg.n_heads * cfg.head_dim, *[cfg.n_kv_heads * cfg.head_dim] * 2])
    want = torch.cat(
        [quant_roundtrip(q, "Q4_0"), quant_roundtrip(k, "Q4_0"), quant_roundtrip(v, "Q8_0")]
    )
    got = ckpt.tensors["layers.1.attn.wqkv.weight"]
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert isinstance(ckpt.tensors["layers.1.ffn.w_in.weight"], QuantizedTensor)
    assert ckpt.metadata["quantization_counts"]["Q8_0"] == cfg.n_layers


def test_tokenizer_spec(tmp_path):
    spec = read_gguf(write_tiny_gguf(tmp_path / "m.gguf")).tokenizer
    tok = tiny_tokenizer(512)
    assert spec.tokens == tok["tokens"] and spec.merges == tok["merges"]
    assert spec.token_types == tok["token_types"]
    assert (spec.bos_id, spec.eos_id, spec.pad_id, spec.add_bos) == (1, 2, 2, False)
    assert spec.pre == "smollm" and spec.chat_template == tok["chat_template"]


def test_parser_agrees_with_gguf_reader(tmp_path):
    path = write_tiny_gguf(tmp_path / "m.gguf", qtype="Q4_1")
    ours, ref = GGUFFile(path), GGUFReader(path)
    for key, field in ref.fields.items():
        if not key.startswith("GGUF."):
            value = ours.fields[key]
            value = value.tolist() if hasattr(value, "tolist") else value
            assert value == pytest.approx(field.contents()), key
    assert [t.name for t in ref.tensors] == list(ours.tensors)
    for t in ref.tensors:
        info = ours.tensors[t.name]
        assert info.ggml_type == t.tensor_type.name and info.shape == tuple(
            reversed(t.shape.tolist())
        )
        np.testing.assert_array_equal(ours.raw(info).reshape(-1), t.data.view(np.uint8).reshape(-1))


def test_metadata_is_cheap_summary(tmp_path):
    meta = read_gguf_metadata(write_tiny_gguf(tmp_path / "m.gguf", qtype="Q8_0"))
    cfg = tiny_config("llama")
    assert meta["architecture"] == "llama" and meta["name"] == "tiny-llama-Q8_0"
    assert meta["quantization"] == "Q8_0" and meta["license"] == "apache-2.0"
    assert (meta["n_layers"], meta["dim"], meta["vocab_size"]) == (cfg.n_layers, cfg.dim, 512)
    assert meta["context_length"] == cfg.max_seq_len
    assert meta["n_params"] == sum(t.numel() for t in tiny_state_dict(cfg).values())


# -- corrupt and unsupported files ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    return write_tiny_gguf(tmp_path_factory.mktemp("g") / "m.gguf", qtype="Q8_0").read_bytes()


@pytest.mark.parametrize("keep", [0, 3, 4, 24, 200, 0.5, 0.9, -1])
def test_truncated_file(tmp_path, tiny_bytes, keep):
    n = int(len(tiny_bytes) * keep) if isinstance(keep, float) else keep % len(tiny_bytes)
    path = tmp_path / "cut.gguf"
    path.write_bytes(tiny_bytes[:n])
    with pytest.raises(CheckpointError, match="cut.gguf"):
        read_gguf(path)


def test_bad_magic(tmp_path, tiny_bytes):
    path = tmp_path / "bad.gguf"
    path.write_bytes(b"GGML" + tiny_bytes[4:])
    with pytest.raises(CheckpointError, match=r"bad.gguf.*not a GGUF file"):
        read_gguf(path)


def test_tensor_offset_past_eof(tmp_path, tiny_bytes):
    # Same size, but a tensor's offset field points beyond the data section: refused as
    # llama.cpp refuses it, by the offset the table's order implies.
    gf = GGUFFile(_write(tmp_path / "ok.gguf", tiny_bytes))
    last = max(gf.tensors.values(), key=lambda t: t.offset)
    name = last.name.encode()
    at = tiny_bytes.index(name + b"\x02\x00\x00\x00") + len(name) + 4 + 8 * 2 + 4
    bad = bytearray(tiny_bytes)
    bad[at : at + 8] = (2**40).to_bytes(8, "little")
    with pytest.raises(CheckpointError, match=r"has offset 1099511627776, expected \d+"):
        read_gguf(_write(tmp_path / "far.gguf", bytes(bad)))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_unsupported_architecture(tmp_path):
    import gguf

    w = gguf.GGUFWriter(tmp_path / "bert.gguf", "bert")
    w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(CheckpointError, match=r"bert.gguf.*architecture 'bert' is not supported"):
        read_gguf(tmp_path / "bert.gguf")
    assert read_gguf_metadata(tmp_path / "bert.gguf")["supported"] is False


def test_missing_tensor(tmp_path):
    path = write_tiny_gguf(tmp_path / "m.gguf", drop_tensors=("blk.1.ffn_up.weight",))
    with pytest.raises(CheckpointError, match=r"'blk.1.ffn_up.weight' is missing"):
        read_gguf(path)


# -- the real default model --------------------------------------------------------------


def test_default_model_facts(smollm2_gguf):
    ckpt = read_gguf(smollm2_gguf)
    c = ckpt.config
    assert (c.arch, c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim) == (
        "llama",
        30,
        576,
        9,
        3,
        64,
    )
    assert (c.ffn_dim, c.vocab_size, c.max_seq_len) == (1536, 49152, 8192)
    assert c.rope_theta == 100000.0 and c.norm_eps == 1e-5 and c.tie_embeddings and not c.qkv_bias
    assert "output.weight" not in ckpt.tensors
    emb = ckpt.tensors["tok_embeddings.weight"]
    assert (
        isinstance(emb, QuantizedTensor) and emb.ggml_type == "Q8_0" and emb.shape == (49152, 576)
    )
    wqkv = ckpt.tensors["layers.0.attn.wqkv.weight"]
    assert (
        isinstance(wqkv, QuantizedTensor) and wqkv.ggml_type == "Q4_1" and wqkv.shape == (960, 576)
    )
    assert ckpt.tensors["layers.29.ffn.w_in.weight"].shape == (3072, 576)
    assert ckpt.tensors["norm.weight"].dtype == torch.float32
    assert ckpt.metadata["quantization"] == "Q4_1"
    assert ckpt.metadata["quantization_counts"] == {"F32": 61, "Q4_1": 210, "Q8_0": 1}
    assert ckpt.metadata["license"] == "apache-2.0"
    tok = ckpt.tokenizer
    assert len(tok.tokens) == 49152 and len(tok.merges) == 48900 and tok.pre == "smollm"
    assert (tok.bos_id, tok.eos_id) == (1, 2) and tok.tokens[1] == "<|im_start|>"
    assert "<|im_start|>" in tok.chat_template


@pytest.mark.slow
def test_default_model_qk_match_transformers(smollm2_gguf):
    """Our un-permuted Q/K rows equal transformers' own GGUF loader's q_proj/k_proj."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    ref = load_gguf_checkpoint(str(smollm2_gguf), return_tensors=True, model_to_load=model)[
        "tensors"
    ]
    ours = read_gguf(smollm2_gguf).tensors
    for layer in (0, 29):
        wqkv = ours[f"layers.{layer}.attn.wqkv.weight"].dequantize()
        q, k, v = wqkv.split([576, 192, 192])
        p = f"model.layers.{layer}."
        torch.testing.assert_close(q, ref[p + "self_attn.q_proj.weight"], rtol=0, atol=0)
        torch.testing.assert_close(k, ref[p + "self_attn.k_proj.weight"], rtol=0, atol=0)
        torch.testing.assert_close(v, ref[p + "self_attn.v_proj.weight"], rtol=0, atol=0)
    gate, up = ours["layers.3.ffn.w_in.weight"].dequantize().split([1536, 1536])
    torch.testing.assert_close(gate, ref["model.layers.3.mlp.gate_proj.weight"], rtol=0, atol=0)
    torch.testing.assert_close(up, ref["model.layers.3.mlp.up_proj.weight"], rtol=0, atol=0)


@pytest.mark.parametrize(
    "key,value", [(b"llama.attention.head_count", 2), (b"llama.feed_forward_length", 64)]
)
def test_metadata_disagreeing_with_tensors(tmp_path, tiny_bytes, key, value):
    at = tiny_bytes.index(key + b"\x04\x00\x00\x00") + len(key) + 4  # u32 value after type
    bad = bytearray(tiny_bytes)
    bad[at : at + 4] = value.to_bytes(4, "little")
    with pytest.raises(CheckpointError, match="metadata"):
        read_gguf(_write(tmp_path / "edited.gguf", bytes(bad)))
