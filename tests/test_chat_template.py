"""Chat templates: SmolLM2's own template must render exactly as transformers renders it."""

from __future__ import annotations

import pytest

from llmos_jupyter.chat_template import CHATML_TEMPLATE, render_chat_template
from llmos_jupyter.errors import CheckpointError, PromptError
from llmos_jupyter.tokenizer import Tokenizer
from tests.test_tokenizer import load_hf_tokenizers, load_smollm_spec, tiny_spec

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}],
    [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "大型语言模型 👍🏽 <|im_end|>"},
    ],
    [{"role": "user", "content": ""}],
]


@pytest.fixture(scope="module")
def smol(smollm2_gguf) -> Tokenizer:
    return Tokenizer.from_spec(load_smollm_spec(smollm2_gguf))


@pytest.fixture(scope="module")
def hf(smollm2_gguf):
    return load_hf_tokenizers(smollm2_gguf)[0]


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_matches_transformers(smol, hf, index, add_generation_prompt):
    messages = CONVERSATIONS[index]
    want = hf.apply_chat_template(messages, tokenize=False,
                                  add_generation_prompt=add_generation_prompt)
    assert smol.apply_chat_template(messages, add_generation_prompt) == want


def test_default_system_prompt_and_token_ids(smol):
    text = smol.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>assistant\n")
    ids = smol.encode(text, allow_special=True)
    assert ids[0] == smol.bos_id and ids.count(smol.eos_id) == 2


def test_chatml_fallback_without_template():
    tok = Tokenizer.from_spec(tiny_spec())
    assert tok.spec.chat_template is None
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert render_chat_template(None, [{"role": "user", "content": "hi"}],
                                add_generation_prompt=False) == "<|im_start|>user\nhi<|im_end|>\n"
    assert "im_start" in CHATML_TEMPLATE


@pytest.mark.parametrize(("messages", "match"), [
    ([{"role": "user", "content": "ok"}, {"content": "no role"}], "message 1 has no 'role'"),
    ([{"role": "user"}], "message 0 .* has no 'content'"),
    ([{"role": "user", "content": "a"}, {"role": 7, "content": "b"}], "message 1: 'role' must"),
    ([{"role": "user", "content": 3}], "message 0 .*'content' must be a string"),
    (["hello"], "message 0 must be a dict"),
    ("hello", "must be a list"),
])
def test_bad_messages_name_the_index(smol, messages, match):
    with pytest.raises(ValueError, match=match):
        smol.apply_chat_template(messages)


def test_template_can_reject_a_conversation():
    template = ("{% if messages[0]['role'] != 'user' %}"
                "{{ raise_exception('user first') }}{% endif %}")
    with pytest.raises(PromptError, match="user first"):
        render_chat_template(template, [{"role": "assistant", "content": "x"}])


def test_template_runs_in_a_sandbox():
    # The immutable sandbox refuses to mutate our objects and to reach Python internals.
    with pytest.raises(CheckpointError, match="unsafe"):
        render_chat_template("{{ messages.append(1) }}", [])
    with pytest.raises(CheckpointError, match="unsafe"):
        render_chat_template("{{ ''.__class__.__mro__ }}", [])
    with pytest.raises(CheckpointError, match="not valid Jinja"):
        render_chat_template("{% for %}", [])


def test_hf_helpers_are_available():
    template = ("{% for m in messages %}{{ m | tojson }}{% if loop.last %}{% break %}{% endif %}"
                "{% generation %}!{% endgeneration %}{% endfor %}{{ bos_token }}")
    out = render_chat_template(template, [{"role": "user", "content": "é"}], bos_token="<s>")
    assert out == '{"role": "user", "content": "é"}<s>'
