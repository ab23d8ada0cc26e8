"""Native format: exact round trips, atomic writes, corrupt directories, load speed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmos_jupyter.core.checkpoint import Checkpoint, QuantizedTensor
from llmos_jupyter.core.tokenizer_spec import TokenizerSpec
from llmos_jupyter.errors import CheckpointError
from llmos_jupyter.formats.gguf import read_gguf
from llmos_jupyter.formats.hf import read_hf_dir
from llmos_jupyter.formats.native import read_native, write_native
from tests.checkpoint_factory import write_tiny_gguf, write_tiny_hf_dir


def assert_same(a: Checkpoint, b: Checkpoint) -> None:
    assert a.config == b.config
    assert a.tokenizer == b.tokenizer
    assert set(a.tensors) == set(b.tensors)
    for name, x in a.tensors.items():
        y = b.tensors[name]
        assert type(x) is type(y), name
        if isinstance(x, QuantizedTensor):
            assert (x.ggml_type, x.shape) == (y.ggml_type, y.shape)
            np.testing.assert_array_equal(x.blocks, y.blocks)
        else:
            assert x.dtype == y.dtype
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("qtype", ["Q4_1", "F16", "BF16"])
def test_gguf_roundtrip(tmp_path, qtype):
    src = read_gguf(
        write_tiny_gguf(
            tmp_path / "m.gguf", qtype=qtype, qtype_overrides={"token_embd.weight": "F32"}
        )
    )
    back = read_native(write_native(src, tmp_path / "native"))
    assert_same(src, back)
    assert back.metadata["format"] == "native" and back.metadata["source_format"] == "gguf"
    assert back.metadata["quantization"] == qtype
    assert back.metadata["path"] == str((tmp_path / "native").resolve())


def test_hf_gpt2_roundtrip(tmp_path):
    src = read_hf_dir(write_tiny_hf_dir(tmp_path / "hf", arch="gpt2", tokenizer="vocab"))
    assert_same(src, read_native(write_native(src, tmp_path / "native")))


def test_layout_on_disk(tmp_path):
    src = read_gguf(write_tiny_gguf(tmp_path / "m.gguf", qtype="Q8_0"))
    out = write_native(src, tmp_path / "native")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["model"] == src.config.to_dict()
    assert cfg["quantized"]["layers.0.attn.wqkv.weight"] == {
        "ggml_type": "Q8_0",
        "shape": [128, 64],
    }
    assert TokenizerSpec(**json.loads((out / "tokenizer.json").read_text())) == src.tokenizer


def test_shared_tensors_and_no_tokenizer(tmp_path):
    """Tensors sharing memory (an output aliasing the embedding, views) still save."""
    ckpt = read_hf_dir(write_tiny_hf_dir(tmp_path / "hf", tokenizer=None))
    emb = ckpt.tensors["tok_embeddings.weight"]
    ckpt.tensors["output.weight"] = emb
    big = torch.randn(2, 64, 64)
    ckpt.tensors["layers.0.attn.wo.weight"], ckpt.tensors["layers.1.attn.wo.weight"] = big
    back = read_native(write_native(ckpt, tmp_path / "native"))
    assert back.tokenizer is None
    assert_same(ckpt, back)


def test_replace_existing_and_refuse_foreign(tmp_path):
    a = read_gguf(write_tiny_gguf(tmp_path / "a.gguf", seed=1))
    b = read_gguf(write_tiny_gguf(tmp_path / "b.gguf", seed=2))
    target = tmp_path / "native"
    write_native(a, target)
    write_native(b, target)
    assert_same(b, read_native(target))
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not an LLMOS native checkpoint"):
        write_native(a, foreign)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "b.gguf", "native", "notes"]


def test_failed_write_leaves_nothing(tmp_path):
    ckpt = read_gguf(write_tiny_gguf(tmp_path / "m.gguf"))
    # A lone surrogate cannot be encoded as UTF-8: tokenizer.json fails after the weights.
    ckpt.tokenizer.tokens[5] = "\ud800"
    with pytest.raises(UnicodeEncodeError):
        write_native(ckpt, tmp_path / "native")
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_corrupt_directories(tmp_path):
    src = read_gguf(write_tiny_gguf(tmp_path / "m.gguf", qtype="Q4_0"))
    d = write_native(src, tmp_path / "native")
    weights = (d / "model.safetensors").read_bytes()

    (d / "model.safetensors").write_bytes(weights[: len(weights) - 100])
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt"):
        read_native(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors.*missing"):
        read_native(d)
    (d / "model.safetensors").write_bytes(weights)

    cfg_text = (d / "config.json").read_text()
    cfg = json.loads(cfg_text)
    cfg["quantized"]["layers.0.attn.wo.weight"]["ggml_type"] = "Q8_0"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match its Q8_0 entry"):
        read_native(d)
    (d / "config.json").write_text(json.dumps({**json.loads(cfg_text), "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        read_native(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json.*not valid JSON"):
        read_native(d)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json.*missing"):
        read_native(d)
    with pytest.raises(CheckpointError, match="not a directory"):
        read_native(tmp_path / "m.gguf")


def test_default_model_converts_and_reads_back(smollm2_gguf, tmp_path):
    # (How fast it loads is benchmarks/bench_decode.py's to say, not a timed test's.)
    src = read_gguf(smollm2_gguf)
    out = write_native(src, tmp_path / "smollm2")
    back = read_native(out)
    assert back.config == src.config and back.tokenizer == src.tokenizer
    for name in ("tok_embeddings.weight", "layers.7.attn.wqkv.weight", "norm.weight"):
        x, y = src.tensors[name], back.tensors[name]
        if isinstance(x, QuantizedTensor):
            np.testing.assert_array_equal(x.blocks, y.blocks)
        else:
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("edit,match", [
    ({"quantized": ["x"]}, r"'quantized' must be an object"),
    ({"model": {"vocab_size": 512.0}}, r"vocab_size must be an integer, not 512.0"),
    ({"model": {"max_seq_len": 2**32 - 1}}, r"max_seq_len=4294967295 is outside"),
    ({"model": {"norm_eps": float("nan")}}, r"norm_eps=nan must be finite"),
])
def test_hostile_native_config_is_refused(tmp_path, edit, match):
    root = write_native(read_gguf(write_tiny_gguf(tmp_path / "m.gguf", qtype="Q8_0")),
                        tmp_path / "native")
    config = json.loads((root / "config.json").read_text())
    for key, value in edit.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=match):
        read_native(root)


def test_quantized_shape_that_is_not_integers_is_refused(tmp_path):
    root = write_native(read_gguf(write_tiny_gguf(tmp_path / "m.gguf", qtype="Q8_0")),
                        tmp_path / "native")
    config = json.loads((root / "config.json").read_text())
    name = next(iter(config["quantized"]))
    config["quantized"][name]["shape"] = ["64", 64]
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"bad quantized entry for '{name}'"):
        read_native(root)
