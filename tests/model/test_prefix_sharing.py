"""A batch's common prompt prefix prefilled once (share_prefix + prefill(start=P)) gives
the logits and cache of prefilling every row in full."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.model.backend import use_backend
from llmos_jupyter.model.transformer import Transformer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(7)
    return Transformer(ModelConfig.from_name("tiny")).eval()


@pytest.mark.parametrize("backend", ["sdpa", "reference"])
@torch.inference_mode()
def test_shared_prefix_equals_full_prefill(model, backend):
    P, V = 20, model.config.vocab_size
    prefix = torch.randint(0, V, (P,))
    suffixes = [torch.randint(0, V, (n,)) for n in (5, 9, 1)]
    rows = [torch.cat([prefix, s]) for s in suffixes]
    T = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([r, r[-1:].expand(T - len(r))]) for r in rows])  # (3, T)
    lengths = torch.tensor([len(r) for r in rows])
    with use_backend(backend):
        model.setup_caches(3, 64)
        full = model.prefill(ids, lengths)
        k_full = [layer.attn.cache.k_cache[:3, :, :P].clone() for layer in model.layers]
        model.setup_caches(3, 64)
        model.prefill(ids[:1, :P], torch.tensor([P]))
        model.share_prefix(3, P)
        shared = model.prefill(ids[:, P:], lengths - P, start=P)
        for layer, k in zip(model.layers, k_full, strict=True):
            torch.testing.assert_close(layer.attn.cache.k_cache[:3, :, :P], k)
        # And decoding goes on the same from either cache.
        step = model.decode_step(shared.argmax(-1), lengths)
        model.setup_caches(3, 64)
        model.prefill(ids, lengths)
        step_full = model.decode_step(full.argmax(-1), lengths)
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(step, step_full, atol=1e-5, rtol=1e-4)
