"""The unmodified `openai` client against a real `llmos serve`: greedy answers equal the
in-process `llmos.load(...).chat(...)`, streamed or not."""

from __future__ import annotations

import openai
import pytest

from tests.server.conftest import MODEL

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)


@pytest.fixture(scope="module")
def in_process(default_store):
    import os

    old = os.environ.get("LLMOS_HOME")
    os.environ["LLMOS_HOME"] = str(default_store)
    try:
        import llmos

        m = llmos.load(MODEL)
        yield m
    finally:
        os.environ["LLMOS_HOME"] = old


def test_models_list(client):
    assert MODEL in [m.id for m in client.models.list()]


def test_chat_equals_in_process_chat(client, in_process):
    want = in_process.chat(QUESTION, max_tokens=24, temperature=0).text
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24,
                                       temperature=0)
    assert r.choices[0].message.content == want and "Paris" in want
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0 and r.usage.total_tokens == (
        r.usage.prompt_tokens + r.usage.completion_tokens)


def test_streamed_chat_equals_in_process_chat(client, in_process):
    want = in_process.chat(QUESTION, max_tokens=24, temperature=0).text
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_completions_equal_in_process_generate(client, in_process):
    want = in_process.generate("The capital of France is", max_tokens=8, temperature=0).text
    r = client.completions.create(model=MODEL, prompt="The capital of France is",
                                  max_tokens=8, temperature=0)
    assert r.choices[0].text == want
    streamed = client.completions.create(model=MODEL, prompt="The capital of France is",
                                         max_tokens=8, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == want


def test_n_choices_with_a_seed_are_reproducible(client):
    kw = dict(model=MODEL, messages=QUESTION, max_tokens=12, temperature=1.0, seed=7, n=3)
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]


def test_stop_string_cuts_the_answer(client, in_process):
    want = in_process.chat(QUESTION, max_tokens=24, temperature=0, stop=["Paris"]).text
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24,
                                       temperature=0, stop=["Paris"])
    assert r.choices[0].message.content == want and "Paris" not in want


def test_preset_system_prompt_and_defaults_apply(client, in_process, store_home):
    import llmos

    llmos.create("terse-test", MODEL, system="Answer with one word.",
                 params={"temperature": 0, "max_tokens": 5})
    try:
        want = llmos.load("terse-test").chat(QUESTION).text
        r = client.chat.completions.create(model="terse-test", messages=QUESTION)
        assert r.choices[0].message.content == want
        assert r.usage.completion_tokens <= 5
    finally:
        llmos.rm("terse-test")


def test_chat_logprobs(client, in_process):
    want = in_process.chat(QUESTION, max_tokens=12, temperature=0).text
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12,
                                       temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert "".join(c.token for c in content) == r.choices[0].message.content == want
    for c in content:
        assert c.logprob <= 0 and len(c.top_logprobs) == 2
        assert c.top_logprobs[0].token == c.token  # greedy picks the most likely
        assert bytes(c.bytes).decode("utf-8", errors="replace") == c.token
    streamed = client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=12, temperature=0, logprobs=True,
        stream=True)
    tokens = [c.token for ch in streamed if ch.choices and ch.choices[0].logprobs
              for c in ch.choices[0].logprobs.content]
    assert "".join(tokens) == want


def test_completion_logprobs(client):
    r = client.completions.create(model=MODEL, prompt="The capital of France is",
                                  max_tokens=6, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text
    assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs)
    assert all(len(top) == 3 for top in lp.top_logprobs)
    assert lp.text_offset[0] == 0


def test_top_logprobs_needs_logprobs(client):
    with pytest.raises(openai.BadRequestError, match="needs 'logprobs'"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2,
                                       top_logprobs=2)


def test_json_object_response_format(client):
    import json

    r = client.chat.completions.create(
        model=MODEL, max_tokens=64, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give a JSON object with a city and its country."}])
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_schema_checks_the_shape(client):
    import json

    ask = [{"role": "user", "content": "Describe Paris as JSON."}]
    r = client.chat.completions.create(
        model=MODEL, max_tokens=64, temperature=0, messages=ask,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "any", "schema": {"type": "object"}}})
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    impossible = {"type": "object", "required": ["zz_never_written"],
                  "additionalProperties": False, "properties": {"zz_never_written": {}}}
    with pytest.raises(openai.UnprocessableEntityError, match="missing required key"):
        client.chat.completions.create(
            model=MODEL, max_tokens=64, temperature=0, messages=ask,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "x", "schema": impossible}})


def test_json_schema_answer_cut_by_a_stop_string_is_not_checked(client):
    # The stop string ends the answer before its object closes: no shape to check yet.
    r = client.chat.completions.create(
        model=MODEL, max_tokens=64, temperature=0, stop=['"'],
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "required": ["zz_never_written"]}}})
    assert r.choices[0].finish_reason == "stop"
    assert '"' not in r.choices[0].message.content


def test_a_chats_next_turn_continues_the_cache_and_answers_as_in_process(default_store,
                                                                         in_process):
    from tests.server.conftest import start_serve, stop_serve

    # A server of its own: nothing else may run beside the chat for its batch to empty.
    own = start_serve(default_store)
    try:
        client = openai.OpenAI(base_url=own.url + "/v1", api_key=own.key, max_retries=0)
        messages = [{"role": "user", "content": "Name three animals of the sea."}]
        first = client.chat.completions.create(model=MODEL, messages=messages,
                                               max_tokens=24, temperature=0)
        assert first.usage.prompt_tokens_details.cached_tokens == 0
        messages += [{"role": "assistant", "content": first.choices[0].message.content},
                     {"role": "user", "content": "Which of them is the largest?"}]
        second = client.chat.completions.create(model=MODEL, messages=messages,
                                                max_tokens=24, temperature=0)
    finally:
        stop_serve(own)
    # Nearly the whole first turn came from the cache (the answer is re-encoded from its
    # text by the chat template, so the last few tokens may differ).
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.total_tokens - 8
    want = in_process.chat(messages, max_tokens=24, temperature=0).text
    assert second.choices[0].message.content == want and want.strip()
