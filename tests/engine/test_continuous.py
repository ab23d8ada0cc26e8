"""In-flight batching: sequences that join and leave a running batch get exactly the
tokens they get alone from `generate`."""

from __future__ import annotations

import pytest

from llmos_jupyter.engine import GenerationParams, generate
from llmos_jupyter.engine.continuous import InflightBatch
from llmos_jupyter.errors import PromptError

GREEDY = GenerationParams(temperature=0, max_tokens=12, ignore_eos=True)


def prompts(n: int) -> list[list[int]]:
    """n prompts of different lengths and contents (ids inside the tiny vocabulary)."""
    return [[(7 * i + 3 * j + 1) % 500 + 3 for j in range(4 + 3 * i)] for i in range(n)]


def solo(model, tok, prompt, params):
    return generate(model, tok, [prompt], params)[0]


def drain(batch: InflightBatch, limit: int = 10_000) -> list:
    """Step until idle; return every (sequence, piece) produced."""
    out = []
    for _ in range(limit):
        if batch.idle:
            return out
        out += batch.step()
    raise AssertionError("batch never went idle")


def test_sequences_joining_at_different_steps_match_solo(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok, max_rows=8)
    ps = prompts(5)
    params = [GREEDY.replace(max_tokens=4 + 3 * i) for i in range(5)]
    seqs, pieces = [], []
    for p, prm in zip(ps, params, strict=True):  # one newcomer every two steps
        seqs.append(batch.add(p, prm))
        pieces += batch.step() + batch.step()
    pieces += drain(batch)
    for seq, p, prm in zip(seqs, ps, params, strict=True):
        alone = solo(tiny_model, tiny_tok, p, prm)
        assert seq.result.token_ids == alone.token_ids
        assert seq.result.text == alone.text
        assert seq.result.finish_reason == alone.finish_reason == "length"
        assert "".join(piece for s, piece in pieces if s is seq) == alone.text
    assert batch.running == [] and not batch.waiting


def test_sampled_sequences_match_solo_with_their_seeds(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok)
    ps = prompts(4)
    params = [GenerationParams(temperature=0.9, top_p=0.9, repetition_penalty=1.3,
                               presence_penalty=0.5 * i, frequency_penalty=0.3,
                               seed=100 + i, max_tokens=10, ignore_eos=True) for i in range(4)]
    seqs = [batch.add(p, prm) for p, prm in zip(ps, params, strict=True)]
    drain(batch)
    for seq, p, prm in zip(seqs, ps, params, strict=True):
        assert seq.result.token_ids == solo(tiny_model, tiny_tok, p, prm).token_ids


def test_cancel_leaves_the_others_untouched(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok)
    ps = prompts(3)
    seqs = [batch.add(p, GREEDY.replace(max_tokens=20)) for p in ps]
    for _ in range(5):
        batch.step()
    batch.cancel(seqs[1])
    drain(batch)
    cut = seqs[1].result
    assert cut.finish_reason == "cancelled"
    full = solo(tiny_model, tiny_tok, ps[1], GREEDY.replace(max_tokens=20))
    assert 0 < len(cut.token_ids) < 20
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)]
    for i in (0, 2):
        assert seqs[i].result.token_ids == solo(
            tiny_model, tiny_tok, ps[i], GREEDY.replace(max_tokens=20)).token_ids


def test_cancel_while_waiting_never_runs(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok, max_rows=1)
    first, second = (batch.add(p, GREEDY) for p in prompts(2))
    batch.step()
    batch.cancel(second)
    drain(batch)
    assert second.result.finish_reason == "cancelled" and second.result.token_ids == []
    assert first.result.token_ids == solo(tiny_model, tiny_tok, prompts(1)[0], GREEDY).token_ids


def test_a_full_batch_makes_newcomers_wait_then_serves_them(tiny_model, tiny_tok):
    # Budget for two sequences of 40 positions: the third waits until a row leaves.
    per_token = InflightBatch(tiny_model, tiny_tok).per_token
    batch = InflightBatch(tiny_model, tiny_tok, max_rows=8, kv_budget_bytes=80 * per_token)
    ps = [p[:8] for p in prompts(5)[2:5]]
    params = [GREEDY.replace(max_tokens=m) for m in (5, 30, 30)]
    seqs = [batch.add(p, prm) for p, prm in zip(ps, params, strict=True)]
    batch.step()
    assert len(batch.running) == 2 and list(batch.waiting) == [seqs[2]]
    drain(batch)
    for seq, p, prm in zip(seqs, ps, params, strict=True):
        assert seq.result.token_ids == solo(tiny_model, tiny_tok, p, prm).token_ids


def test_a_crowd_grows_the_cache_once(tiny_model, tiny_tok, monkeypatch):
    batch = InflightBatch(tiny_model, tiny_tok, max_rows=8)
    ps = prompts(7)
    first = batch.add(ps[0], GREEDY.replace(max_tokens=12))
    batch.step()
    grown = []
    resize = tiny_model.resize_caches
    monkeypatch.setattr(tiny_model, "resize_caches",
                        lambda rows, *a: (grown.append(rows), resize(rows, *a))[1])
    crowd = [batch.add(p, GREEDY.replace(max_tokens=12)) for p in ps[1:]]
    batch.step()  # all six join beside the first: one reallocation, not 2, 4, 8 rows
    assert grown == [7] and len(batch.running) == 7
    drain(batch)
    for seq, p in zip([first, *crowd], ps, strict=True):
        assert seq.result.token_ids == solo(tiny_model, tiny_tok, p,
                                            GREEDY.replace(max_tokens=12)).token_ids


def test_prompt_larger_than_the_budget_is_refused(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok, kv_budget_bytes=1024)
    with pytest.raises(PromptError, match="KV cache"):
        batch.add(prompts(1)[0], GREEDY)
    assert batch.idle


def test_stop_tokens_end_a_sequence_early(tiny_model, tiny_tok):
    # Whatever the first greedy token is, making it a stop string ends the row at once.
    p = prompts(1)[0]
    first = tiny_tok.decode(solo(tiny_model, tiny_tok, p, GREEDY).token_ids[:1])
    assert first.strip()  # the seeded model's first token has visible text
    params = GREEDY.replace(stop=[first])
    batch = InflightBatch(tiny_model, tiny_tok)
    seq = batch.add(p, params)
    drain(batch)
    alone = solo(tiny_model, tiny_tok, p, params)
    assert seq.result.finish_reason == alone.finish_reason == "stop"
    assert seq.result.text == alone.text


@pytest.mark.slow
def test_default_model_chats_joining_a_running_batch_match_solo(smollm2_gguf):
    from llmos_jupyter.formats.gguf import read_gguf
    from llmos_jupyter.model.loading import build_model
    from llmos_jupyter.tokenizer import Tokenizer

    ckpt = read_gguf(smollm2_gguf)
    model, tok = build_model(ckpt, "cpu", "auto"), Tokenizer.from_spec(ckpt.tokenizer)
    questions = ["What is the capital of France?", "Name three colors.",
                 "Write a haiku about the sea.", "Why is the sky blue?"]
    ps = [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}]),
                     allow_special=True) for q in questions]
    params = GenerationParams(temperature=0, max_tokens=24)
    batch = InflightBatch(model, tok)
    seqs = []
    for p in ps:
        seqs.append(batch.add(p, params))
        for _ in range(3):
            batch.step()
    drain(batch)
    for seq, p in zip(seqs, ps, strict=True):
        alone = solo(model, tok, p, params)
        assert seq.result.token_ids == alone.token_ids
        assert seq.result.text == alone.text and alone.text.strip()


def test_prefill_budget_spreads_newcomers_over_steps(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok, prefill_tokens=10)
    ps = [[5 + i] * 4 for i in range(5)] + [[9] * 30]  # 4 tokens each, then one of 30
    seqs = [batch.add(p, GREEDY) for p in ps]
    batch.step()
    assert len(batch.running) == 2  # 4 + 4 fit the budget of 10, a third would not
    batch.step()
    batch.step()
    assert len(batch.running) == 5 and list(batch.waiting) == [seqs[5]]
    batch.step()  # a prompt over the whole budget still goes in, alone
    assert len(batch.running) == 6
    drain(batch)
    for seq, p in zip(seqs, ps, strict=True):
        assert seq.result.token_ids == solo(tiny_model, tiny_tok, p, GREEDY).token_ids


def test_logprobs_are_the_models_log_softmax(tiny_model, tiny_tok):
    import torch

    p = prompts(2)[1]
    batch = InflightBatch(tiny_model, tiny_tok)
    seq = batch.add(p, GREEDY.replace(max_tokens=5), top_logprobs=3)
    plain = batch.add(p, GREEDY.replace(max_tokens=5))
    drain(batch)
    assert plain.logprobs == [] and len(seq.logprobs) == 5
    ids = list(p)
    for entry, token in zip(seq.logprobs, seq.result.token_ids, strict=True):
        with torch.inference_mode():
            ref = torch.log_softmax(tiny_model.forward(torch.tensor([ids]))[0, -1].float(), -1)
        assert entry.token == token == entry.top[0][0]  # greedy: the top token
        assert abs(entry.logprob - float(ref[token])) < 1e-4
        assert [t for t, _ in entry.top] == ref.topk(3).indices.tolist()
        ids.append(token)


def test_top_logprobs_out_of_range_is_refused(tiny_model, tiny_tok):
    from llmos_jupyter.errors import ConfigError

    with pytest.raises(ConfigError, match="between 0 and 20"):
        InflightBatch(tiny_model, tiny_tok).add(prompts(1)[0], GREEDY, top_logprobs=21)


def test_newcomers_sharing_a_prefix_prefill_it_once_and_match_solo(tiny_model, tiny_tok):
    prefix = [40 + j for j in range(12)]  # a system prompt every request carries
    tails = [[300, 301, 302], [310], [320, 321, 322, 323], []]  # the last: the prefix alone
    ps = [prefix + t for t in tails]
    params = [GREEDY, GREEDY.replace(repetition_penalty=1.3),
              GenerationParams(temperature=0.8, seed=7, max_tokens=12, ignore_eos=True), GREEDY]
    # 55 prompt tokens; shared, the four cost 12 + 3 + 1 + 4 + 1 (the last keeps one token).
    batch = InflightBatch(tiny_model, tiny_tok, prefill_tokens=24)
    seqs = [batch.add(p, prm) for p, prm in zip(ps, params, strict=True)]
    batch.step()
    assert len(batch.running) == 4 and not batch.waiting
    drain(batch)
    for seq, p, prm in zip(seqs, ps, params, strict=True):
        assert seq.result.token_ids == solo(tiny_model, tiny_tok, p, prm).token_ids


def test_torch_path_prefills_newcomers_one_by_one_and_matches_solo(tiny_model, tiny_tok):
    ps = [[40 + j for j in range(10)] + [300 + i] for i in range(3)]
    tiny_model.fused_decode = False  # no row-exact prefill: one prompt per prefill call
    try:
        assert not tiny_model.prefill_rows_exact(4)
        batch = InflightBatch(tiny_model, tiny_tok)
        seqs = [batch.add(p, GREEDY) for p in ps]
        drain(batch)
        for seq, p in zip(seqs, ps, strict=True):
            assert seq.result.token_ids == solo(tiny_model, tiny_tok, p, GREEDY).token_ids
    finally:
        tiny_model.fused_decode = True


def fresh(model, tok, prompt, params):
    """The answer with every prompt token prefilled (no cache left by anything before)."""
    from llmos_jupyter.engine import prompt_cache

    prompt_cache.forget(model)
    result = solo(model, tok, prompt, params)
    assert result.usage["cached_tokens"] == 0
    return result


def chat_turns(batch, params):
    """A first turn through the batch, drained, and the second turn's prompt: the first
    prompt, its answer, a new question."""
    first = [40 + j for j in range(20)]
    seq = batch.add(first, params)
    drain(batch)
    return first, seq, first + seq.result.token_ids + [300, 301, 302]


def test_the_next_turn_after_the_batch_empties_continues_row_0(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok)
    first, one, second = chat_turns(batch, GREEDY)
    two = batch.add(second, GREEDY)
    drain(batch)
    # Row 0 held the first prompt and every answer token fed back (all but the last).
    assert two.cached == len(first) + GREEDY.max_tokens - 1
    assert two.result.usage["cached_tokens"] == two.cached
    assert two.result.token_ids == fresh(tiny_model, tiny_tok, second, GREEDY).token_ids


def test_a_crowd_after_the_turn_shares_nothing_but_row_0_and_matches_solo(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok)
    _, _, second = chat_turns(batch, GREEDY)
    others = prompts(3)
    sampled = GenerationParams(temperature=0.8, seed=3, max_tokens=12, ignore_eos=True)
    seqs = [batch.add(second, sampled)] + [batch.add(p, GREEDY) for p in others]
    drain(batch)
    assert seqs[0].cached > 0 and all(s.cached == 0 for s in seqs[1:])
    assert seqs[0].result.token_ids == fresh(tiny_model, tiny_tok, second, sampled).token_ids
    for seq, p in zip(seqs[1:], others, strict=True):
        assert seq.result.token_ids == fresh(tiny_model, tiny_tok, p, GREEDY).token_ids


def test_a_longer_next_turn_grows_the_cache_keeping_row_0(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok)
    _, _, second = chat_turns(batch, GREEDY)
    longer = GREEDY.replace(max_tokens=150)  # past the cache the first turn made
    assert tiny_model.layers[0].attn.cache.max_seq_len < len(second) + 150
    two = batch.add(second, longer)
    drain(batch)
    assert tiny_model.layers[0].attn.cache.max_seq_len >= len(second) + 150  # it grew
    assert two.cached > 0
    assert two.result.token_ids == fresh(tiny_model, tiny_tok, second, longer).token_ids


def test_no_reuse_while_others_run_or_after_other_cache_work(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok)
    first = [40 + j for j in range(20)]
    long_one = batch.add(prompts(1)[0], GREEDY.replace(max_tokens=40))
    short = batch.add(first, GREEDY)
    while short.result is None:
        batch.step()
    assert long_one.result is None  # the batch did not empty: nothing is kept
    follow = batch.add(first + short.result.token_ids + [300], GREEDY)
    drain(batch)
    assert follow.cached == 0
    # Emptied, then the model generated elsewhere (its cache rewritten): a full prefill.
    _, _, second = chat_turns(batch, GREEDY)
    solo(tiny_model, tiny_tok, prompts(2)[1], GREEDY)
    two = batch.add(second, GREEDY)
    drain(batch)
    assert two.cached == 0
    assert two.result.token_ids == fresh(tiny_model, tiny_tok, second, GREEDY).token_ids
