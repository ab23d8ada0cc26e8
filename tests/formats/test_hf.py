"""Hugging Face directories: llama/qwen2/gpt2 naming, Conv1D transposition, shards, refusals."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from llmos_jupyter.errors import CheckpointError
from llmos_jupyter.formats.hf import read_hf_dir
from tests.checkpoint_factory import (
    tiny_config,
    tiny_state_dict,
    tiny_tokenizer,
    tiny_tokenizer_json,
    write_tiny_hf_dir,
)


def assert_matches_source(ckpt, arch: str, seed: int = 0, **overrides) -> None:
    want = tiny_state_dict(tiny_config(arch, **overrides), seed)
    assert set(ckpt.tensors) == set(want)
    for name, src in want.items():
        torch.testing.assert_close(ckpt.tensors[name], src, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_roundtrip(tmp_path, arch):
    ckpt = read_hf_dir(write_tiny_hf_dir(tmp_path / "m", arch=arch, seed=5, tokenizer=None))
    cfg = tiny_config(arch)
    assert ckpt.config.to_dict() | {"extra": {}} == cfg.to_dict()
    assert_matches_source(ckpt, arch, seed=5)
    assert ckpt.metadata["format"] == "hf" and ckpt.tokenizer is None


def test_tied_llama_and_shards(tmp_path):
    path = write_tiny_hf_dir(tmp_path / "m", shards=3, tokenizer=None, tie_embeddings=True)
    assert len(list(path.glob("*.safetensors"))) == 3
    ckpt = read_hf_dir(path)
    assert ckpt.config.tie_embeddings and "output.weight" not in ckpt.tensors
    assert_matches_source(ckpt, "llama", tie_embeddings=True)


def test_gpt2_conv1d_is_transposed(tmp_path):
    """Our [out, in] Linear weights must compute what GPT-2's Conv1D (x @ W + b) computes."""
    path = write_tiny_hf_dir(tmp_path / "m", arch="gpt2", prefix="transformer.", tokenizer=None)
    hf = load_file(str(path / "model.safetensors"))
    ours = read_hf_dir(path).tensors
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    pairs = {"attn.c_attn": "attn.wqkv", "attn.c_proj": "attn.wo", "mlp.c_fc": "ffn.w_in"}
    for theirs, name in pairs.items():
        w, b = hf[f"transformer.h.1.{theirs}.weight"], hf[f"transformer.h.1.{theirs}.bias"]
        assert ours[f"layers.1.{name}.weight"].shape == w.shape[::-1]
        conv1d = x @ w + b
        linear = F.linear(x, ours[f"layers.1.{name}.weight"], ours[f"layers.1.{name}.bias"])
        torch.testing.assert_close(linear, conv1d)
    w_out = ours["layers.0.ffn.w_out.weight"]
    assert w_out.shape == (64, 256)  # [dim, ffn_dim]
    torch.testing.assert_close(w_out, hf["transformer.h.0.mlp.c_proj.weight"].t())


def test_gpt2_vocab_and_merges(tmp_path):
    spec = read_hf_dir(write_tiny_hf_dir(tmp_path / "m", arch="gpt2", tokenizer="vocab")).tokenizer
    tok = tiny_tokenizer(512)
    assert spec.tokens == tok["tokens"] and spec.merges == tok["merges"]
    assert spec.token_types == tok["token_types"] and spec.pre == "gpt2"
    assert (spec.bos_id, spec.eos_id, spec.pad_id) == (1, 2, 2)
    assert spec.chat_template == tok["chat_template"]


def test_factory_tokenizer_json_is_valid_for_hf_tokenizers():
    """The factory's tokenizer.json loads in HF `tokenizers` and applies our merges."""
    from tokenizers import Tokenizer

    tok_json, _ = tiny_tokenizer_json("llama")
    hf = Tokenizer.from_str(json.dumps(tok_json))
    tokens = tiny_tokenizer(512)["tokens"]
    ids = hf.encode("hello world").ids
    assert [tokens[i] for i in ids] == ["hello", "Ġworld"]
    assert hf.encode("<|im_start|>hi").ids[0] == 1
    assert hf.decode(ids) == "hello world"


def test_tokenizer_json(tmp_path):
    spec = read_hf_dir(write_tiny_hf_dir(tmp_path / "m")).tokenizer
    tok = tiny_tokenizer(512)
    assert spec.tokens == tok["tokens"] and spec.merges == tok["merges"]
    assert (spec.bos_id, spec.eos_id) == (1, 2)
    assert spec.chat_template == tok["chat_template"]


def test_pickled_weights_are_refused(tmp_path):
    path = write_tiny_hf_dir(tmp_path / "m", tokenizer=None)
    (path / "model.safetensors").unlink()
    # Not a valid pickle: if we ever tried to unpickle it, the error would differ.
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04 not really a pickle")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin.*safetensors"):
        read_hf_dir(path)


def test_corrupt_safetensors(tmp_path):
    path = write_tiny_hf_dir(tmp_path / "m", tokenizer=None)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        read_hf_dir(path)


def test_missing_shard(tmp_path):
    path = write_tiny_hf_dir(tmp_path / "m", shards=2, tokenizer=None)
    (path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002"):
        read_hf_dir(path)


@pytest.mark.parametrize(
    "edit,match",
    [
        ({"model_type": "bert"}, "model_type 'bert' is not supported"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
        ({"hidden_size": None}, "hidden_size"),
        ({"vocab_size": 1000}, r"tok_embeddings.weight.*\(1000, 64\)"),
    ],
)
def test_bad_config(tmp_path, edit, match):
    path = write_tiny_hf_dir(tmp_path / "m", tokenizer=None)
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(edit)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=match):
        read_hf_dir(path)


def test_unexpected_and_missing_tensors(tmp_path):
    from safetensors.torch import save_file

    path = write_tiny_hf_dir(tmp_path / "m", tokenizer=None)
    tensors = load_file(str(path / "model.safetensors"))
    tensors["model.layers.0.self_attn.q_norm.weight"] = torch.ones(16)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected tensors.*q_norm"):
        read_hf_dir(path)
    del tensors["model.layers.0.self_attn.q_norm.weight"], tensors["model.norm.weight"]
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="'model.norm.weight' is missing"):
        read_hf_dir(path)


def test_no_config(tmp_path):
    tmp_path.joinpath("x.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no config.json"):
        read_hf_dir(tmp_path)


def test_shard_links_as_in_the_hugging_face_cache_are_followed(tmp_path):
    # snapshots/<rev>/<file> -> ../../blobs/<hash>: names in the index stay inside the
    # directory; the links are the user's own cache layout, so they are followed.
    root = write_tiny_hf_dir(tmp_path / "snapshots" / "rev", shards=2)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for i, shard in enumerate(sorted(root.glob("*.safetensors"))):
        shard.rename(blobs / f"hash{i}")
        shard.symlink_to(f"../../blobs/hash{i}")
    assert read_hf_dir(root).config.n_layers == 2


@pytest.mark.parametrize("name", ["../x/model.safetensors", "/etc/passwd", "a\\..\\b.safetensors",
                                  "config.json", 7, ""])
def test_shard_names_must_stay_inside(tmp_path, name):
    from llmos_jupyter.formats.hf import confined_name

    with pytest.raises(CheckpointError, match="not a .safetensors file inside the checkpoint"):
        confined_name(tmp_path, name, tmp_path / "model.safetensors.index.json")
    assert confined_name(tmp_path, "sub/model-1.safetensors", tmp_path) == "sub/model-1.safetensors"
