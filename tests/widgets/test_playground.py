"""Playground: driven through its widgets against the tiny model (and, slow, the real one)."""

from __future__ import annotations

import pytest

from llmos_jupyter import api
from llmos_jupyter.widgets import Playground
from tests.widgets.conftest import TINY


@pytest.fixture
def playground(tiny_store):
    pg = Playground(model=TINY, prompt="hello world", temperature=0.0, max_tokens=12, chat=False)
    yield pg
    pg.stop()
    pg.wait(30)
    pg.close()


def test_generate_button_streams_the_models_greedy_text(playground):
    expected = api.load(TINY).generate("hello world", temperature=0.0, max_tokens=12)
    seen: list[str] = []
    playground.observe(lambda c: seen.append(c["new"]), names="text")

    playground.generate_button.click()
    assert playground.wait(60)

    assert playground.error == ""
    assert playground.text == expected.text
    assert playground.output.value == expected.text
    # Streamed: every update is a prefix of the final text, the first one a partial one.
    assert seen[-1] == expected.text and all(expected.text.startswith(x) for x in seen)
    assert len(seen) >= 2 and len(seen[0]) < len(expected.text)
    assert playground.finish_reason in ("stop", "length")
    assert playground.tokens_per_s >= 0.0
    assert playground.speed.value.endswith("tokens/s")
    assert not playground.busy
    assert not playground.generate_button.disabled and playground.stop_button.disabled


def test_chat_checkbox_uses_the_chat_template(playground):
    playground.chat.value = True
    playground.generate()
    playground.wait(60)
    messages = [{"role": "user", "content": "hello world"}]
    expected = api.load(TINY).chat(messages, temperature=0.0, max_tokens=12)
    assert playground.error == ""
    assert playground.text == expected.text


def test_stop_button_cancels_the_generation(playground):
    playground.max_tokens.value = 200
    # Press Stop from inside the generation (at its first streamed piece): deterministic,
    # however fast the model is.
    playground.observe(lambda c: c["new"] and playground.stop_button.click(), names="text")
    playground.generate_button.click()
    assert playground.wait(60)
    assert playground.finish_reason == "cancelled"
    assert not playground.busy


def test_errors_show_in_the_widget(tiny_store, capsys):
    pg = Playground(model="no-such-model", prompt="hi")
    pg.generate()
    assert pg.wait(60)
    assert "no-such-model" in pg.error
    assert "no-such-model" in pg.status.value
    assert not pg.busy and not pg.generate_button.disabled
    assert capsys.readouterr().out == ""  # nothing printed into the running cell
    pg.close()


@pytest.mark.slow
def test_default_model_answers_a_chat_prompt(llmos_home, smollm2_gguf):
    name = "smollm2-135m-instruct"
    api.import_model(name, smollm2_gguf)
    pg = Playground(model=name, prompt="What is the capital of France?", temperature=0.0,
                    max_tokens=16, chat=True)
    try:
        pg.generate_button.click()
        assert pg.wait(120)
        assert pg.error == ""
        assert "Paris" in pg.text
        assert pg.tokens_per_s > 0
    finally:
        pg.close()
        api.unload()
