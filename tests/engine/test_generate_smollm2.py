"""generate() on the real default model, SmolLM2-135M-Instruct (Q4_1 GGUF). Slow."""

from __future__ import annotations

import pytest

from llmos_jupyter.engine import GenerationParams, generate, stream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def load(smollm2_gguf):
    """load(mode) -> (model, tokenizer) of the default model in weight mode `mode`."""
    from llmos_jupyter.formats.gguf import read_gguf
    from llmos_jupyter.model.loading import build_model
    from llmos_jupyter.tokenizer import Tokenizer

    ckpt = read_gguf(smollm2_gguf)
    tok = Tokenizer.from_spec(ckpt.tokenizer)
    models = {}

    def get(mode: str):
        if mode not in models:
            models[mode] = build_model(ckpt, "cpu", mode)
        return models[mode], tok

    return get


@pytest.fixture(scope="module")
def smollm2(load):
    """The default model in its default CPU weight mode ("auto": its GGML blocks as stored)."""
    return load("auto")


def chat(tok, text: str) -> list[int]:
    prompt = tok.apply_chat_template([{"role": "user", "content": text}])
    ids = tok.encode(prompt, allow_special=True)
    return [tok.bos_id, *ids] if tok.add_bos and ids[0] != tok.bos_id else ids


# float32 proves the engine: batching changes row 0's prefill logits by ~2e-5 there. In
# "auto" (GGML blocks read by our CPU kernels) a batch runs other kernels than one row
# does, so the logits may differ slightly and a near-tie could flip late in a
# completion; these chat prompts are far from one for 24 tokens.
@pytest.mark.parametrize("mode", ["float32", "auto"])
def test_greedy_chat_batch_equals_single(load, mode):
    model, tok = load(mode)
    prompts = [
        chat(tok, "What is the capital of France?"),
        chat(tok, "Write a haiku about the sea, please, in English."),
    ]
    params = GenerationParams(temperature=0, max_tokens=24)
    batch = generate(model, tok, prompts, params)
    for prompt, res in zip(prompts, batch, strict=True):
        alone = generate(model, tok, [prompt], params)[0]
        assert res.token_ids == alone.token_ids
        assert res.text == alone.text and res.text.strip()
    assert "Paris" in batch[0].text


def test_chat_reply_ends_on_im_end(smollm2):
    model, tok = smollm2
    res = generate(model, tok, [chat(tok, "Say hi.")], GenerationParams(temperature=0))[0]
    assert res.finish_reason == "stop"
    assert res.token_ids[-1] in tok.stop_ids and "<|im_end|>" not in res.text


def test_multibyte_streaming_never_splits_a_character(load):
    model, tok = load("float32")
    # Chinese and emoji: SmolLM2 spells most of these characters with 2-3 tokens each.
    prompts = [
        tok.encode("中文：你好，世界！我们今天"),
        tok.encode("Emoji: 😀😃😄😁😆😅😂🤣"),
        chat(tok, "Translate to Chinese: I love my cat."),
    ]
    pieces: dict[int, list[str]] = {b: [] for b in range(len(prompts))}
    params = GenerationParams(temperature=0, max_tokens=24)
    results = generate(model, tok, prompts, params, lambda b, s: pieces[b].append(s))
    split_chars = 0
    for b, res in enumerate(results):
        assert "".join(pieces[b]) == res.text
        # No replacement character mid-stream. The last piece may end in one only when
        # max_tokens cut the final character short (the same as tok.decode gives).
        assert not any("\ufffd" in p for p in pieces[b][:-1])
        if "\ufffd" in pieces[b][-1]:
            assert res.finish_reason == "length" and pieces[b][-1].endswith("\ufffd")
            assert tok.decode(res.token_ids).endswith("\ufffd")
        assert sum(not 0x20 <= ord(c) < 0x7F for c in res.text) >= 5
        # the case under test happened: many tokens alone are not whole UTF-8 text
        for t in res.token_ids:
            try:
                tok.token_bytes(t).decode("utf-8")
            except UnicodeDecodeError:
                split_chars += 1
    assert split_chars >= 10
    streamed = list(stream(model, tok, prompts[0], params))
    assert "".join(streamed) == results[0].text  # float32: batch and single agree
    assert not any("\ufffd" in p for p in streamed[:-1])


def test_a_chats_next_turn_continues_the_cache_with_identical_answers(smollm2):
    from llmos_jupyter.engine import prompt_cache

    model, tok = smollm2
    params = GenerationParams(max_tokens=24, temperature=0)
    messages = [{"role": "user", "content": "Name three animals of the sea."}]
    prompt_cache.forget(model)
    first = generate(model, tok, [tok.encode(tok.apply_chat_template(messages),
                                             allow_special=True)], params)[0]
    messages += [{"role": "assistant", "content": first.text},
                 {"role": "user", "content": "Which of them is the largest?"}]
    ids = tok.encode(tok.apply_chat_template(messages), allow_special=True)
    second = generate(model, tok, [ids], params)[0]
    # The template re-encodes the first answer as it was generated, so nearly all of the
    # conversation so far comes from the cache.
    assert second.usage["cached_tokens"] >= len(ids) - 20
    prompt_cache.forget(model)
    full = generate(model, tok, [ids], params)[0]
    assert full.usage["cached_tokens"] == 0
    assert second.token_ids == full.token_ids and second.text.strip()
