"""Prefill through the fused native step (`FusedDecoder.prefill`, `llmos_forward_tokens`):
several prompts in one call get bit for bit what each gets alone, and the result follows
the torch reference path."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.model import fused_decode, native
from tests.model.helpers import rel_err, right_padded, tiny_model

pytestmark = pytest.mark.skipif(not native.available(), reason="no C++ compiler")


def prompts() -> list[list[int]]:
    """Prompts of different lengths, one longer than a prefill chunk."""
    return [[(5 * i + 7 * j) % 500 + 3 for j in range(n)] for i, n in
            enumerate((9, 3, 70, 17, 1))]


def fresh(model, rows: int, length: int) -> None:
    """Caches of rows x length, zeroed (buffers that fit are reused as they are)."""
    model.setup_caches(rows, length)
    for layer in model.layers:
        layer.attn.cache.k_cache.zero_()
        layer.attn.cache.v_cache.zero_()


def caches(model) -> list[torch.Tensor]:
    return [t.clone() for layer in model.layers
            for t in (layer.attn.cache.k_cache, layer.attn.cache.v_cache)]


def test_batched_prefill_equals_one_prompt_at_a_time():
    model = tiny_model("tiny")
    ps = prompts()
    rows, length = 8, 80
    fresh(model, rows, length)
    ids, lengths = right_padded(ps, pad=3)
    together = model.prefill(ids, lengths, row=2)  # beside two rows already decoding
    assert model.prefill_rows_exact(rows)
    cache_together = caches(model)
    fresh(model, rows, length)
    alone = torch.cat([model.prefill(torch.tensor([p]), torch.tensor([len(p)]), row=2 + i)
                       for i, p in enumerate(ps)])
    assert torch.equal(together, alone)
    # Padded positions are never written: the caches agree everywhere.
    assert all(torch.equal(a, b) for a, b in zip(cache_together, caches(model), strict=True))


def test_chunking_does_not_change_the_result(monkeypatch):
    model = tiny_model("tiny")
    ps = prompts()
    ids, lengths = right_padded(ps, pad=3)
    fresh(model, len(ps), 80)
    big = model.prefill(ids, lengths)
    big_cache = caches(model)
    monkeypatch.setattr(fused_decode, "PREFILL_CHUNK", 5)  # rows split across calls
    fresh(model, len(ps), 80)
    small = model.prefill(ids, lengths)
    assert torch.equal(big, small)
    assert all(torch.equal(a, b) for a, b in zip(big_cache, caches(model), strict=True))


@pytest.mark.parametrize("overrides", [{}, {"dim": 256, "n_heads": 4}])
def test_fused_prefill_follows_the_torch_path(overrides):
    model = tiny_model("tiny", **overrides)
    ps = prompts()
    ids, lengths = right_padded(ps, pad=3)
    model.setup_caches(len(ps), 80)
    got = model.prefill(ids, lengths, start=0)
    model.fused_decode = False
    assert not model.prefill_rows_exact(len(ps))
    want = model.prefill(ids, lengths, start=0)
    assert rel_err(got, want) < 1e-5
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_prefill_continues_a_shared_prefix():
    model = tiny_model("tiny")
    prefix, tails = [11, 12, 13, 14, 15], [[20, 21], [30, 31, 32]]
    model.setup_caches(2, 16)
    model.prefill(torch.tensor([prefix]), torch.tensor([5]))
    model.share_prefix(2, 5)
    ids, lengths = right_padded(tails, pad=3)
    got = model.prefill(ids, lengths, start=5)
    model.setup_caches(2, 16)
    whole = [prefix + t for t in tails]
    ids, lengths = right_padded(whole, pad=3)
    assert torch.equal(got, model.prefill(ids, lengths))


def test_bad_lengths_and_indices_raise():
    model = tiny_model("tiny")
    model.setup_caches(2, 8)
    with pytest.raises(ValueError, match="lengths"):
        model.prefill(torch.tensor([[1, 2, 3]]), torch.tensor([0]))
    fused = model._fused_decoder(2)
    with pytest.raises(IndexError, match="row"):
        fused.forward_tokens(torch.tensor([1]), torch.tensor([0]), rows=torch.tensor([2]))
    with pytest.raises(IndexError):
        fused.forward_tokens(torch.tensor([1, 2]), torch.tensor([0, 1]),
                             out_index=torch.tensor([1, 0]))  # not ascending
