"""A single-prompt generation continues the cache the previous one left (a chat's next
turn), and its answer is bit for bit the answer of a full prefill."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.engine import GenerationParams, generate, prompt_cache
from llmos_jupyter.model.transformer import Transformer

GREEDY = GenerationParams(max_tokens=10, temperature=0.0, ignore_eos=True)


@pytest.fixture
def model() -> Transformer:
    """A tiny model of this test's own: the tests change its weights and caches."""
    torch.manual_seed(99)
    return Transformer(ModelConfig.from_name("tiny")).eval()


def turns(model, tok) -> tuple[list[int], list[int]]:
    """A first prompt, answered, and the second turn's prompt: the first prompt, its
    answer, then a new question."""
    first = tok.encode("User: tell me a story about a cat and a boat.\nBot:")
    answer = generate(model, tok, [first], GREEDY)[0].token_ids
    return first, first + answer + tok.encode("\nUser: and then?\nBot:")


def fresh(model, tok, prompt, params=GREEDY):
    prompt_cache.forget(model)
    result = generate(model, tok, [prompt], params)[0]
    assert result.usage["cached_tokens"] == 0
    return result


def test_the_next_turn_prefills_only_its_new_tokens_and_answers_the_same(model, tiny_tok):
    first, second = turns(model, tiny_tok)
    assert model.prefill_rows_exact(1)  # the native row-exact path: the precondition
    calls = []
    real = model.prefill
    model.prefill = lambda ids, lengths, start=0, row=0: (  # noqa: E731
        calls.append((ids.shape[1], start)) or real(ids, lengths, start, row))
    try:
        reused = generate(model, tiny_tok, [second], GREEDY)[0]
    finally:
        del model.prefill
    # The cache held the first prompt and the answer's tokens fed back (all but the last).
    held = len(first) + GREEDY.max_tokens - 1
    assert reused.usage["cached_tokens"] == held
    assert calls == [(len(second) - held, held)]
    again = fresh(model, tiny_tok, second)
    assert reused.token_ids == again.token_ids and reused.text == again.text


def test_a_sampled_turn_equals_its_fresh_prefill_with_the_same_seed(model, tiny_tok):
    params = GenerationParams(max_tokens=10, temperature=0.9, top_p=0.95, seed=7,
                              ignore_eos=True)
    _, second = turns(model, tiny_tok)
    reused = generate(model, tiny_tok, [second], params)[0]
    assert reused.usage["cached_tokens"] > 0
    assert reused.token_ids == fresh(model, tiny_tok, second, params).token_ids


def test_other_cache_work_in_between_means_a_full_prefill(model, tiny_tok):
    first, second = turns(model, tiny_tok)
    generate(model, tiny_tok, [first, second], GREEDY)  # a batch rewrites rows 0 and 1
    result = generate(model, tiny_tok, [second], GREEDY)[0]
    assert result.usage["cached_tokens"] == 0
    assert result.token_ids == fresh(model, tiny_tok, second).token_ids


def test_weights_changed_in_place_mean_a_full_prefill(model, tiny_tok):
    _, second = turns(model, tiny_tok)
    with torch.no_grad():
        model.layers[0].attn.wqkv.weight.mul_(1.5)
    result = generate(model, tiny_tok, [second], GREEDY)[0]
    assert result.usage["cached_tokens"] == 0  # stale keys and values are never used
    assert result.token_ids == fresh(model, tiny_tok, second).token_ids


def test_a_different_conversation_reuses_only_the_common_start(model, tiny_tok):
    first, _ = turns(model, tiny_tok)
    other = first[:20] + tiny_tok.encode("Z different question entirely?")
    assert first[20] != other[20]
    result = generate(model, tiny_tok, [other], GREEDY)[0]
    assert result.usage["cached_tokens"] == 20
    assert result.token_ids == fresh(model, tiny_tok, other).token_ids


def test_short_overlaps_and_repeated_prompts(model, tiny_tok):
    first, _ = turns(model, tiny_tok)
    # Fewer than MIN_REUSE common tokens: not worth a second prefill call.
    short = first[:prompt_cache.MIN_REUSE - 1] + tiny_tok.encode(" zzz")
    assert generate(model, tiny_tok, [short], GREEDY)[0].usage["cached_tokens"] == 0
    # The same prompt twice: its last token is prefilled again (its logits start the
    # answer), the rest comes from the cache; the answer is the same.
    a = generate(model, tiny_tok, [first], GREEDY)[0]
    b = generate(model, tiny_tok, [first], GREEDY)[0]
    assert b.usage["cached_tokens"] == len(first) - 1
    assert a.token_ids == b.token_ids


def test_a_cancelled_turn_leaves_a_cache_the_next_turn_can_continue(model, tiny_tok):
    first = tiny_tok.encode("User: tell me a story about a cat and a boat.\nBot:")
    steps = iter(range(100))
    partial = generate(model, tiny_tok, [first], GREEDY,
                       should_stop=lambda: next(steps) >= 3)[0]
    assert partial.finish_reason == "cancelled" and 0 < len(partial.token_ids) < 10
    second = first + partial.token_ids + tiny_tok.encode(" go on")
    result = generate(model, tiny_tok, [second], GREEDY)[0]
    assert result.usage["cached_tokens"] == len(first) + len(partial.token_ids) - 1
    assert result.token_ids == fresh(model, tiny_tok, second).token_ids


def test_the_torch_path_never_reuses(model, tiny_tok):
    model.fused_decode = False  # prefill is then not row-exact
    _, second = turns(model, tiny_tok)
    assert generate(model, tiny_tok, [second], GREEDY)[0].usage["cached_tokens"] == 0


def test_a_grown_cache_keeps_the_reused_positions(model, tiny_tok):
    first, second = turns(model, tiny_tok)
    long = GenerationParams(max_tokens=120, temperature=0.0, ignore_eos=True)
    writes = model.cache_writes
    reused = generate(model, tiny_tok, [second], long)[0]  # needs a longer cache
    assert reused.usage["cached_tokens"] > 0 and model.cache_writes > writes
    assert reused.token_ids == fresh(model, tiny_tok, second, long).token_ids
