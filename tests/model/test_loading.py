"""build_model: weight modes, devices, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from llmos_jupyter.core.checkpoint import QuantizedTensor
from llmos_jupyter.errors import CheckpointError, ConfigError
from llmos_jupyter.model import ggml_linear
from llmos_jupyter.model.loading import build_model, resolve_dtype
from tests.model.helpers import checkpoint_of, rel_err, tiny_model


def _quantize_projections(ckpt, kind: str):
    """Replace every projection by GGML blocks (as a GGUF reader would hand them over)."""
    for name, t in list(ckpt.tensors.items()):
        if name.endswith(("wqkv.weight", "wo.weight", "w_in.weight", "w_out.weight")):
            blocks = quantize(t.numpy().astype(np.float32), GGMLQuantizationType[kind])
            ckpt.tensors[name] = QuantizedTensor(kind, blocks, tuple(t.shape))
    return ckpt


def test_bad_values_name_the_choices():
    ckpt = checkpoint_of(tiny_model("tiny"))
    with pytest.raises(ConfigError, match=r"'float64'.*float32"):
        build_model(ckpt, dtype="float64")
    with pytest.raises(ConfigError, match=r"'tpu'.*cpu"):
        build_model(ckpt, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA"):
        build_model(checkpoint_of(tiny_model("tiny")), device="cuda")


def test_missing_and_misshapen_tensors():
    ckpt = checkpoint_of(tiny_model("tiny"))
    del ckpt.tensors["norm.weight"]
    with pytest.raises(CheckpointError, match="norm.weight"):
        build_model(ckpt)
    ckpt = checkpoint_of(tiny_model("tiny"))
    ckpt.tensors["norm.weight"] = torch.ones(3)
    with pytest.raises(CheckpointError, match="shape"):
        build_model(ckpt)


@pytest.mark.parametrize("name,overrides", [("tiny", {}), ("tiny", {"tie_embeddings": True}),
                                            ("tiny", {"qkv_bias": True}), ("tiny-gpt2", {})])
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("bfloat16", 5e-2),
                                       ("float16", 1e-2), ("int8", 5e-2), ("int4", 0.3)])
def test_dense_checkpoint_in_every_mode(name, overrides, dtype, tol):
    ref = tiny_model(name, **overrides)
    model = build_model(checkpoint_of(ref), dtype=dtype)
    assert model.weight_mode == dtype
    ids = torch.randint(0, ref.config.vocab_size, (2, 9))
    with torch.no_grad():
        want = ref(ids)
        got = model(ids)
    assert got.dtype == torch.float32
    assert rel_err(got, want) < tol
    model.setup_caches(2, 16)
    last = model.prefill(ids, torch.tensor([9, 9]))
    assert rel_err(last, got[:, -1]) < max(tol, 1e-5) * 2


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_int4_keeps_ggml_blocks(kind):
    ckpt = _quantize_projections(checkpoint_of(tiny_model("tiny")), kind)
    model = build_model(ckpt, dtype="int4")
    from llmos_jupyter.model.quant import Int4Linear

    assert isinstance(model.layers[0].attn.wqkv, Int4Linear)
    dense = build_model(ckpt, dtype="float32")
    ids = torch.randint(0, 512, (1, 9))
    with torch.no_grad():
        assert rel_err(model(ids), dense(ids)) < 5e-2


@pytest.mark.skipif(not ggml_linear.available(), reason="no C++ compiler for the kernel")
def test_ggml_mode_and_auto_match_float32():
    ckpt = _quantize_projections(checkpoint_of(tiny_model("tiny")), "Q4_1")
    dense = build_model(ckpt, dtype="float32")
    auto = build_model(ckpt, dtype="auto")
    assert auto.weight_mode == "ggml"
    ids = torch.randint(0, 512, (2, 9))
    for model in (dense, auto):
        model.setup_caches(2, 16)
    a = dense.prefill(ids, torch.tensor([9, 6]))
    b = auto.prefill(ids, torch.tensor([9, 6]))
    assert rel_err(b, a) < 1e-5
    pos = torch.tensor([9, 6])
    tok = a.argmax(-1)
    assert rel_err(auto.decode_step(tok, pos), dense.decode_step(tok, pos)) < 1e-5


def test_auto_without_blocks_is_float32():
    ckpt = checkpoint_of(tiny_model("tiny"))
    assert resolve_dtype("auto", torch.device("cpu"), ckpt) == "float32"
    assert resolve_dtype("auto", torch.device("cuda"), ckpt) == "bfloat16"
