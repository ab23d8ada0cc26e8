"""RoPE scaling (rope.py): Llama-3.1-style and linear scaling run exactly as transformers
runs them, from a Hugging Face directory and from a GGUF's rope_freqs; scalings we do not
apply are refused rather than ignored."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.errors import CheckpointError, ConfigError
from llmos_jupyter.formats.gguf import read_gguf
from llmos_jupyter.formats.hf import read_hf_dir
from llmos_jupyter.model.loading import build_model
from llmos_jupyter.model.rope import rope_tables, scaled_frequencies
from tests.checkpoint_factory import tiny_config, write_tiny_gguf, write_tiny_hf_dir
from tests.model.helpers import rel_err

transformers = pytest.importorskip("transformers")

# An original context of 64 positions puts the tiny model's wavelengths (2*pi to
# 2*pi*10^4) in all three llama3 bands: kept, blended and interpolated.
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
LINEAR = {"rope_type": "linear", "factor": 4.0}


def _hf_dir(tmp_path, scaling: dict | None):
    d = write_tiny_hf_dir(tmp_path / "hf", tokenizer=None)
    cfg = json.loads((d / "config.json").read_text())
    if scaling is not None:
        cfg["rope_scaling"] = scaling
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out = model(ids)
    return (out.logits if hasattr(out, "logits") else out).float()



def _default_inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


@pytest.mark.parametrize("scaling", [LLAMA3, LINEAR], ids=["llama3", "linear"])
def test_scaled_checkpoint_runs_like_transformers(tmp_path, scaling):
    d = _hf_dir(tmp_path, scaling)
    ckpt = read_hf_dir(d)
    assert ckpt.config.rope_scaling["type"] == scaling["rope_type"]
    ours = build_model(ckpt)
    ref = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ids = torch.randint(0, ckpt.config.vocab_size, (1, 200))
    want = _logits(ref, ids)
    assert rel_err(_logits(ours, ids), want) < 1e-5
    # The test can tell: the same weights with plain RoPE answer differently.
    plain = build_model(read_hf_dir(_hf_dir(tmp_path / "plain", None)))
    assert rel_err(_logits(plain, ids), want) > 1e-3


def test_llama3_frequencies_are_transformers_bits():
    c = tiny_config("llama")
    hf_cfg = transformers.LlamaConfig(
        hidden_size=c.dim, num_attention_heads=c.n_heads, head_dim=c.head_dim,
        rope_parameters={**LLAMA3, "rope_theta": c.rope_theta})
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    want, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_cfg, torch.device("cpu"))
    ours = {"type": "llama3", **{k: v for k, v in LLAMA3.items() if k != "rope_type"}}
    got = scaled_frequencies(_default_inv_freq(c.head_dim, c.rope_theta), ours)
    assert torch.equal(got, want)


def test_gguf_rope_freqs_give_the_llama3_model(tmp_path):
    # llama.cpp writes Llama 3.1's scaling as per-frequency divisors (rope_freqs.weight).
    c = tiny_config("llama")
    base = _default_inv_freq(c.head_dim, c.rope_theta)
    llama3 = {"type": "llama3", **{k: v for k, v in LLAMA3.items() if k != "rope_type"}}
    factors = (base / scaled_frequencies(base, llama3)).numpy().astype(np.float32)
    path = write_tiny_gguf(tmp_path / "m.gguf", extra_tensors={"rope_freqs.weight": factors})
    ckpt = read_gguf(path)
    assert ckpt.config.rope_scaling["type"] == "factors"
    ids = torch.randint(0, c.vocab_size, (1, 200))
    from_hf = build_model(read_hf_dir(_hf_dir(tmp_path, LLAMA3)))
    assert rel_err(_logits(build_model(ckpt), ids), _logits(from_hf, ids)) < 1e-5
    cos, _ = rope_tables(c.head_dim, 200, c.rope_theta, scaling=ckpt.config.rope_scaling)
    want, _ = rope_tables(c.head_dim, 200, c.rope_theta, scaling=llama3)
    torch.testing.assert_close(cos, want, rtol=0, atol=1e-5)


def test_scalings_we_do_not_apply_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="'yarn' is not supported"):
        read_hf_dir(_hf_dir(tmp_path, {"rope_type": "yarn", "factor": 4.0}))
    gguf = write_tiny_gguf(tmp_path / "y.gguf", strings={"llama.rope.scaling.type": "yarn"})
    with pytest.raises(CheckpointError, match="'yarn' is not supported"):
        read_gguf(gguf)
    with pytest.raises(CheckpointError, match="factors"):  # one per frequency, or refused
        read_gguf(write_tiny_gguf(tmp_path / "f.gguf",
                                  extra_tensors={"rope_freqs.weight": np.ones(3, np.float32)}))
    with pytest.raises(ConfigError, match="lacks"):
        ModelConfig(arch="llama", rope_scaling={"type": "llama3", "factor": 8.0})


def test_dynamic_ntk_is_plain_rope_within_the_context(tmp_path):
    d = _hf_dir(tmp_path, {"rope_type": "dynamic", "factor": 2.0})
    ckpt = read_hf_dir(d)
    assert ckpt.config.rope_scaling is None
    ref = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    ids = torch.randint(0, ckpt.config.vocab_size, (1, ckpt.config.max_seq_len))
    assert rel_err(_logits(build_model(ckpt), ids), _logits(ref, ids)) < 1e-5


def test_scaling_survives_the_native_format(tmp_path):
    from llmos_jupyter.formats.native import read_native, write_native

    ckpt = read_hf_dir(_hf_dir(tmp_path, LLAMA3))
    back = read_native(write_native(ckpt, tmp_path / "native"))
    assert back.config.rope_scaling == ckpt.config.rope_scaling
