"""Generation with a batch-wide prompt prefix (as task runs have) equals each prompt alone."""

from __future__ import annotations

from llmos_jupyter.engine import GenerationParams, generate
from llmos_jupyter.engine.generate import MIN_SHARED_PREFIX, shared_prefix_length


def test_shared_prefix_length():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 9]]) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2  # each row keeps a token
    assert shared_prefix_length([[1, 2, 3]]) == 0
    assert shared_prefix_length([[5, 2], [1, 2]]) == 0


def test_batch_with_shared_prefix_equals_each_alone(tiny_model, tiny_tok):
    head = tiny_tok.encode("Summarize the following text in two sentences. Text: ")
    assert len(head) >= MIN_SHARED_PREFIX
    prompts = [head + tiny_tok.encode(t) for t in ("cats sit", "a dog ran far", "rain")]
    params = GenerationParams(max_tokens=12, temperature=0.0, ignore_eos=True)
    batch = generate(tiny_model, tiny_tok, prompts, params)
    for p, r in zip(prompts, batch, strict=True):
        assert r.token_ids == generate(tiny_model, tiny_tok, [p], params)[0].token_ids
