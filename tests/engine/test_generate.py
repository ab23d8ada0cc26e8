"""generate() and stream() on the real Transformer ("tiny", random weights)."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from llmos_jupyter.engine import GenerationParams, generate, stream
from llmos_jupyter.engine.sampling import apply_repetition_penalty, seen_mask
from llmos_jupyter.errors import PromptError
from llmos_jupyter.tokenizer import Tokenizer

GREEDY = GenerationParams(temperature=0, max_tokens=12, ignore_eos=True)
PROMPTS = [[5, 6, 7], [10, 11, 12, 13, 14, 15, 16, 17, 18], [20]]


def reference_greedy(model, prompt, n, penalty=1.0, presence=0.0, frequency=0.0):
    """Greedy tokens by full forward passes without any cache (the math, not the engine)."""
    ids = list(prompt)
    with torch.inference_mode():
        for _ in range(n):
            logits = model.forward(torch.tensor([ids]))[:, -1]  # (1, V)
            if penalty != 1.0:
                seen = seen_mask(torch.tensor([ids]), logits.shape[-1])
                logits = apply_repetition_penalty(logits, seen, penalty)
            for t in set(ids[len(prompt):]):  # OpenAI's penalties, one token at a time
                count = ids[len(prompt):].count(t)
                logits[0, t] -= frequency * count + presence
            ids.append(int(logits.argmax(-1)))
    return ids[len(prompt) :]


def collect(model, tok, prompts, params, **kw):
    """generate() with an on_piece that records every streamed piece per row."""
    pieces: dict[int, list[str]] = {i: [] for i in range(len(prompts))}
    results = generate(model, tok, prompts, params, lambda b, s: pieces[b].append(s), **kw)
    return results, pieces


def test_greedy_batch_equals_each_prompt_alone_and_the_reference(tiny_model, tiny_tok):
    batch = generate(tiny_model, tiny_tok, PROMPTS, GREEDY)
    for prompt, res in zip(PROMPTS, batch, strict=True):
        alone = generate(tiny_model, tiny_tok, [prompt], GREEDY)[0]
        assert res.token_ids == alone.token_ids
        assert res.token_ids == reference_greedy(tiny_model, prompt, GREEDY.max_tokens)
        assert res.finish_reason == "length"
        assert res.usage == {
            "prompt_tokens": len(prompt),
            "completion_tokens": 12,
            "total_tokens": len(prompt) + 12,
            "cached_tokens": 0,
        }
        assert res.text == tiny_tok.decode(res.token_ids)
        t = res.timings
        assert t["prefill_s"] > 0 and t["decode_s"] > 0
        assert t["prefill_tokens_per_s"] > 0 and t["decode_tokens_per_s"] > 0


def test_repetition_penalty_matches_reference(tiny_model, tiny_tok):
    params = GREEDY.replace(repetition_penalty=1.5, max_tokens=8)
    res = generate(tiny_model, tiny_tok, PROMPTS[:2], params)
    for prompt, r in zip(PROMPTS[:2], res, strict=True):
        assert r.token_ids == reference_greedy(tiny_model, prompt, 8, penalty=1.5)


@pytest.mark.parametrize("presence, frequency", [(0.7, 1.3), (-2.0, -1.5)])
def test_presence_and_frequency_penalties_match_reference(tiny_model, tiny_tok, presence,
                                                          frequency):
    params = GREEDY.replace(presence_penalty=presence, frequency_penalty=frequency,
                            max_tokens=10)
    res = generate(tiny_model, tiny_tok, PROMPTS[:2], params)
    for prompt, r in zip(PROMPTS[:2], res, strict=True):
        assert r.token_ids == reference_greedy(tiny_model, prompt, 10, presence=presence,
                                               frequency=frequency)
    if presence < 0:  # rewarding repeats makes the random model repeat: the penalties bite
        plain = generate(tiny_model, tiny_tok, PROMPTS[:2], GREEDY.replace(max_tokens=10))
        assert [r.token_ids for r in res] != [r.token_ids for r in plain]


def test_streamed_pieces_concatenate_to_the_text(tiny_model, tiny_tok):
    results, pieces = collect(tiny_model, tiny_tok, PROMPTS, GREEDY.replace(max_tokens=20))
    for b, res in enumerate(results):
        assert "".join(pieces[b]) == res.text == tiny_tok.decode(res.token_ids)
        assert all(pieces[b])  # no empty pieces are sent


def test_stop_token_ends_a_row_and_is_not_text(tiny_model, tiny_tok):
    # The random model never picks the real end tokens greedily, so declare as EOS a token
    # it does emit, in a tokenizer that is otherwise the same.
    free = generate(tiny_model, tiny_tok, PROMPTS, GREEDY.replace(max_tokens=30))
    ids = free[1].token_ids
    k = next(i for i in range(3, len(ids)) if ids[i] not in ids[:i])
    spec = dataclasses.replace(tiny_tok.spec, eos_id=ids[k])
    tok = Tokenizer.from_spec(spec)
    assert ids[k] in tok.stop_ids
    honoring = GREEDY.replace(max_tokens=30, ignore_eos=False)
    res, pieces = collect(tiny_model, tok, PROMPTS, honoring)
    assert res[1].finish_reason == "stop"
    assert res[1].token_ids == ids[: k + 1]  # includes the stop token
    assert res[1].text == tok.decode(ids[:k]) == "".join(pieces[1])
    for b in (0, 2):  # the other rows run on unless they meet the same token
        want = free[b].token_ids
        if ids[k] in want:
            want = want[: want.index(ids[k]) + 1]
        assert res[b].token_ids == want
    # without streaming the text is decoded at the end, still without the stop token
    assert generate(tiny_model, tok, PROMPTS[1:2], honoring)[0].text == res[1].text


def test_stop_strings_cut_and_never_leak(tiny_model, tiny_tok):
    params = GREEDY.replace(max_tokens=40)
    free, _ = collect(tiny_model, tiny_tok, PROMPTS, params)
    for b, res in enumerate(free):
        text = res.text
        assert len(text) > 12
        stop = text[8:11]  # three characters from the middle, spanning tokens or not
        want = text[: text.index(stop)]
        got, pieces = collect(tiny_model, tiny_tok, [PROMPTS[b]], params.replace(stop=[stop]))
        assert got[0].text == want and got[0].finish_reason == "stop"
        streamed = "".join(pieces[0])
        assert streamed == want and stop not in streamed
        # tokens up to the one completing the stop string were generated, no more
        assert got[0].token_ids == res.token_ids[: len(got[0].token_ids)]
        assert tiny_tok.decode(got[0].token_ids).startswith(want + stop)
    # a stop string that never appears changes nothing; one of several may match
    other, _ = collect(tiny_model, tiny_tok, PROMPTS[:1], params.replace(stop=["\x00\x01zz"]))
    assert other[0].text == free[0].text and other[0].finish_reason == "length"
    stop = free[0].text[5:7]
    several, _ = collect(tiny_model, tiny_tok, PROMPTS[:1], params.replace(stop=["\x00q", stop]))
    assert several[0].text == free[0].text[: free[0].text.index(stop)]


def test_stop_strings_without_streaming(tiny_model, tiny_tok):
    params = GREEDY.replace(max_tokens=30)
    text = generate(tiny_model, tiny_tok, PROMPTS[:1], params)[0].text
    stop = text[10:12]
    res = generate(tiny_model, tiny_tok, PROMPTS[:1], params.replace(stop=[stop]))[0]
    assert res.text == text[: text.index(stop)] and res.finish_reason == "stop"


def test_max_tokens_and_context_limit(tiny_model, tiny_tok):
    ctx = tiny_model.config.max_seq_len
    long_prompt = [7] * (ctx - 3)
    res = generate(tiny_model, tiny_tok, [long_prompt, [9]], GREEDY.replace(max_tokens=5))
    assert len(res[0].token_ids) == 3 and res[0].finish_reason == "length"  # clamped
    assert res[0].usage["total_tokens"] == ctx
    assert len(res[1].token_ids) == 5 and res[1].finish_reason == "length"


def test_prompt_errors(tiny_model, tiny_tok):
    ctx = tiny_model.config.max_seq_len
    with pytest.raises(PromptError, match="empty"):
        generate(tiny_model, tiny_tok, [[1, 2], []], GREEDY)
    with pytest.raises(PromptError, match="no prompts"):
        generate(tiny_model, tiny_tok, [], GREEDY)
    with pytest.raises(PromptError) as err:
        generate(tiny_model, tiny_tok, [[5] * ctx], GREEDY.replace(max_tokens=10))
    msg = str(err.value)
    assert str(ctx) in msg and "max_tokens=10" in msg and "shorten the prompt" in msg
    with pytest.raises(PromptError, match="outside the vocabulary"):
        generate(tiny_model, tiny_tok, [[5, 512]], GREEDY)
    with pytest.raises(PromptError, match="empty"):
        next(stream(tiny_model, tiny_tok, [], GREEDY))
    with pytest.raises(PromptError, match="wrap a single prompt"):
        generate(tiny_model, tiny_tok, [5, 6, 7], GREEDY)
    with pytest.raises(PromptError, match="token ids"):
        generate(tiny_model, tiny_tok, [["a", "b"]], GREEDY)


def test_prompts_may_be_tensors(tiny_model, tiny_tok):
    params = GREEDY.replace(max_tokens=4)
    want = generate(tiny_model, tiny_tok, PROMPTS[:1], params)[0].token_ids
    assert generate(tiny_model, tiny_tok, [torch.tensor(PROMPTS[0])], params)[0].token_ids == want
    assert generate(tiny_model, tiny_tok, torch.tensor([PROMPTS[0]]), params)[0].token_ids == want


def test_should_stop_cancels_with_partial_result(tiny_model, tiny_tok):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) >= 4

    full = generate(tiny_model, tiny_tok, PROMPTS, GREEDY)
    results, pieces = collect(tiny_model, tiny_tok, PROMPTS, GREEDY, should_stop=should_stop)
    for b, res in enumerate(results):
        assert res.finish_reason == "cancelled"
        assert res.token_ids == full[b].token_ids[:4]
        assert res.text == tiny_tok.decode(res.token_ids) == "".join(pieces[b])
    # the model is usable afterwards
    assert generate(tiny_model, tiny_tok, PROMPTS, GREEDY)[1].token_ids == full[1].token_ids


def test_keyboard_interrupt_propagates_and_model_stays_usable(tiny_model, tiny_tok):
    before = generate(tiny_model, tiny_tok, PROMPTS, GREEDY)
    seen = []

    def on_piece(row: int, piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(tiny_model, tiny_tok, PROMPTS, GREEDY, on_piece)
    after = generate(tiny_model, tiny_tok, PROMPTS, GREEDY)
    assert [r.token_ids for r in after] == [r.token_ids for r in before]


def test_stream_yields_the_text_and_returns_the_result(tiny_model, tiny_tok):
    params = GREEDY.replace(max_tokens=15)
    want = generate(tiny_model, tiny_tok, PROMPTS[1:2], params)[0]
    gen = stream(tiny_model, tiny_tok, PROMPTS[1], params)
    pieces = []
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as done:
            result = done.value
            break
    assert "".join(pieces) == want.text == result.text
    assert result.token_ids == want.token_ids


def test_closing_the_stream_stops_generation(tiny_model, tiny_tok):
    calls = []
    gen = stream(
        tiny_model,
        tiny_tok,
        PROMPTS[0],
        GREEDY.replace(max_tokens=200),
        should_stop=lambda: calls.append(1) or False,
    )
    first = next(gen)
    assert first
    gen.close()
    n = len(calls)
    assert n <= 2  # no more steps ran after close
    # nothing runs in the background: the same model works for the next request
    assert generate(tiny_model, tiny_tok, PROMPTS[:1], GREEDY)[0].token_ids
    assert len(calls) == n


def test_seeded_sampling_is_reproducible_alone_or_batched(tiny_model, tiny_tok):
    params = GenerationParams(temperature=1.0, top_p=0.9, max_tokens=10, seed=42, ignore_eos=True)
    a = generate(tiny_model, tiny_tok, PROMPTS, params)
    b = generate(tiny_model, tiny_tok, PROMPTS, params)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    alone = generate(tiny_model, tiny_tok, PROMPTS[:1], params)[0]
    assert alone.token_ids == a[0].token_ids  # row 0 is seeded with `seed` in any batch
    c = generate(tiny_model, tiny_tok, PROMPTS, params.replace(seed=43))
    assert [r.token_ids for r in c] != [r.token_ids for r in a]


def test_rows_finishing_early_leave_the_others_untouched(tiny_model, tiny_tok):
    # row 0 is cut by a stop string early; rows 1 and 2 must match their solo runs.
    params = GREEDY.replace(max_tokens=16)
    solo = [generate(tiny_model, tiny_tok, [p], params)[0] for p in PROMPTS]
    stop = solo[0].text[2:4]
    res = generate(tiny_model, tiny_tok, PROMPTS, params.replace(stop=[stop]))
    assert res[0].finish_reason == "stop"
    for b in (1, 2):
        if stop in solo[b].text:
            continue
        assert res[b].token_ids == solo[b].token_ids


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("sampled", [False, True])
def test_rows_finishing_at_different_steps_match_their_solo_runs(tiny_model, tiny_tok, fused,
                                                                  sampled):
    # Finished rows leave the batch (the last running rows move into their cache slots),
    # so the survivors' caches, positions, seeds and repetition history must move with them.
    prompts = [[5 + i, 40 + 3 * i, 7, 90 - i][: 1 + i % 4] for i in range(7)]
    params = GREEDY.replace(max_tokens=14)
    if sampled:
        params = params.replace(temperature=0.9, top_k=50, seed=7, repetition_penalty=1.3)
    fused_before = tiny_model.fused_decode
    tiny_model.fused_decode = fused
    try:
        free = generate(tiny_model, tiny_tok, prompts, params)
        # Stop strings taken from different rows' texts end rows at different steps.
        stops = [r.text[k:k + 2] for r, k in zip(free[::2], (3, 6, 9, 12), strict=True)
                 if len(r.text) > k + 2]
        params = params.replace(stop=stops)
        batch = generate(tiny_model, tiny_tok, prompts, params)
        solo = [generate(tiny_model, tiny_tok, [p], params.replace(seed=(params.seed or 0) + i))
                [0] for i, p in enumerate(prompts)]
    finally:
        tiny_model.fused_decode = fused_before
    assert len({len(r.token_ids) for r in batch}) > 2  # rows really ended apart
    for b, (got, want) in enumerate(zip(batch, solo, strict=True)):
        assert got.token_ids == want.token_ids, b
        assert got.text == want.text and got.finish_reason == want.finish_reason, b


def test_prompts_past_the_kv_budget_run_as_successive_batches(tiny_model, tiny_tok,
                                                               monkeypatch):
    gen = importlib.import_module("llmos_jupyter.engine.generate")  # the module

    prompts = [[5 + i, 9, 11 + i][: 1 + i % 3] for i in range(7)]
    params = GenerationParams(temperature=0.8, top_k=40, max_tokens=6, seed=3, ignore_eos=True)
    whole, whole_pieces = collect(tiny_model, tiny_tok, prompts, params)
    c = tiny_model.config
    per_row = 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4 * (3 + 6)
    monkeypatch.setattr(gen, "KV_BUDGET_BYTES", 3 * per_row)  # three rows per batch
    assert gen.kv_chunks(tiny_model, prompts, [6] * 7) == [(0, 3), (3, 6), (6, 7)]
    split, split_pieces = collect(tiny_model, tiny_tok, prompts, params)
    assert [r.token_ids for r in split] == [r.token_ids for r in whole]
    assert split_pieces == whole_pieces  # streamed pieces carry each prompt's own index
    # Stopping during the first batch cancels the rest without running them.
    polls = iter([False, True])
    stopped = generate(tiny_model, tiny_tok, prompts, params,
                       should_stop=lambda: next(polls, True))
    assert [r.finish_reason for r in stopped] == ["cancelled"] * 7
    assert stopped[6].token_ids == [] and stopped[6].usage["prompt_tokens"] == 1


def test_should_stop_ends_a_long_prefill_between_layers(tiny_model, tiny_tok):
    # A batch of 32 long prompts: its prefill polls should_stop before every layer, and a
    # True ends it there — no further layer runs and no decode step follows.
    gen = importlib.import_module("llmos_jupyter.engine.generate")
    prompts = [[5 + (i + j) % 200 for j in range(100)] for i in range(32)]
    assert 32 * 100 >= gen.PREFILL_POLL_TOKENS
    events: list[str] = []
    hooks = [layer.register_forward_pre_hook(lambda m, a, i=i: events.append(f"layer {i}"))
             for i, layer in enumerate(tiny_model.layers)]
    real_decode = tiny_model.decode_step
    try:
        tiny_model.decode_step = lambda *a: events.append("decode") or real_decode(*a)

        def should_stop() -> bool:
            events.append("poll")
            return events.count("poll") == 2  # True before the second layer

        results = generate(tiny_model, tiny_tok, prompts, GREEDY, should_stop=should_stop)
    finally:
        del tiny_model.decode_step
        for h in hooks:
            h.remove()
    assert events == ["layer 0", "poll", "layer 1", "poll"]  # stopped before layer 1 ran
    assert [r.finish_reason for r in results] == ["cancelled"] * 32
    assert all(r.token_ids == [] and r.usage["prompt_tokens"] == 100 for r in results)
    # the hooks are gone and the model is usable: the same batch completes afterwards
    again = generate(tiny_model, tiny_tok, prompts[:2], GREEDY.replace(max_tokens=3))
    assert [len(r.token_ids) for r in again] == [3, 3]


@pytest.mark.parametrize("shared", [0, 20])
def test_chunked_prefill_equals_one_block(tiny_model, shared):
    # The cancellable prefill runs positions a chunk at a time, each continuing the
    # cache; every row's logits (its last token in any chunk) match the one-block prefill.
    gen = importlib.import_module("llmos_jupyter.engine.generate")
    prefix = [7 + j % 50 for j in range(shared)]
    prompts = [prefix + [5 + (3 * i + j) % 200 for j in range(n)]
               for i, n in enumerate([1, 9, 30, 31, 64, 17, 2, 45])]
    with torch.inference_mode():
        tiny_model.setup_caches(len(prompts), 128)
        whole, _ = gen.prefill(tiny_model, prompts)
        tiny_model.setup_caches(len(prompts), 128)
        chunked, _ = gen.prefill(tiny_model, prompts, chunk=8)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
