"""Our Transformer against transformers' implementations, and cached vs full passes."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.errors import ConfigError
from llmos_jupyter.model import backend
from llmos_jupyter.model.rope import apply_rope, apply_rope_reference, rope_tables
from tests.model.helpers import hf_gpt2, hf_llama, rel_err, right_padded, tiny_model

VARIANTS = [
    ("tiny", {}),  # GQA, untied
    ("tiny", {"tie_embeddings": True}),
    ("tiny", {"qkv_bias": True}),  # Qwen2-style
    ("tiny-gpt2", {}),
]


def _hf(model):
    return hf_gpt2(model) if model.config.arch == "gpt2" else hf_llama(model)



@pytest.mark.parametrize("name,overrides", VARIANTS)
def test_forward_matches_transformers(name, overrides):
    model = tiny_model(name, **overrides)
    ids = torch.randint(0, model.config.vocab_size, (2, 37))
    with torch.no_grad():
        theirs = _hf(model)(ids).logits
    ours = model(ids)
    assert ours.dtype == torch.float32 and ours.shape == (2, 37, model.config.vocab_size)
    assert rel_err(ours, theirs) < 1e-5


@pytest.mark.parametrize("backend_name", ["sdpa", "reference"])
@pytest.mark.parametrize("name,overrides", VARIANTS)
def test_prefill_and_decode_match_forward(name, overrides, backend_name):
    """Batch of 2 right-padded prompts: each decode step's logits equal the full pass's."""
    model = tiny_model(name, **overrides)
    V = model.config.vocab_size
    full = torch.randint(0, V, (2, 20))  # each row's whole sequence
    lengths = [5, 11]  # prompt lengths; the rest is fed token by token
    steps = 6
    with backend.use_backend(backend_name):
        want = model(full)  # (2, 20, V)
        model.setup_caches(batch_size=2, max_seq_len=32)
        ids, lens = right_padded([full[b, : lengths[b]].tolist() for b in range(2)], pad=7)
        got = model.prefill(ids, lens)  # (2, V)
        for b in range(2):
            assert rel_err(got[b], want[b, lengths[b] - 1]) < 1e-5
        for s in range(steps):
            pos = torch.tensor([lengths[0] + s, lengths[1] + s])
            got = model.decode_step(full[torch.arange(2), pos], pos)
            for b in range(2):
                assert rel_err(got[b], want[b, pos[b]]) < 1e-5, (b, s)


def test_single_sequence_decode_and_cache_reuse():
    model = tiny_model("tiny")
    seq = torch.randint(0, 512, (1, 12))
    want = model(seq)
    model.setup_caches(2, 64)
    cache = model.layers[0].attn.cache
    model.setup_caches(1, 16)  # fits: buffers reused
    assert model.layers[0].attn.cache is cache
    model.prefill(seq[:, :4], torch.tensor([4]))
    for p in range(4, 12):
        got = model.decode_step(seq[:, p], torch.tensor([p]))
        assert rel_err(got[0], want[0, p]) < 1e-5


def test_limits_raise_config_errors():
    model = tiny_model("tiny")
    with pytest.raises(ConfigError, match="context"):
        model.setup_caches(1, model.config.max_seq_len + 1)
    model.layers[0].attn.cache = None
    with pytest.raises(ConfigError, match="setup_caches"):
        model.prefill(torch.zeros(1, 4, dtype=torch.long), torch.tensor([4]))


def test_rope_fast_path_matches_rotate_half():
    cos, sin = rope_tables(64, 100, 100000.0)
    x = torch.randn(3, 100, 5, 64)
    c, s = cos[:, None, :], sin[:, None, :]
    torch.testing.assert_close(apply_rope(x, c, s), apply_rope_reference(x, c, s))


def test_attributes():
    model = tiny_model("tiny")
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32 and model.config.dim == 64
