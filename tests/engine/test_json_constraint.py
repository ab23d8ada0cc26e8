"""The JSON recognizer against Python's json module, and constrained decoding on a real
model: whatever the model prefers, the text is a JSON object."""

from __future__ import annotations

import json
import random

import pytest

from llmos_jupyter.engine import GenerationParams
from llmos_jupyter.engine.continuous import InflightBatch
from llmos_jupyter.engine.json_constraint import JsonState

VALID = [
    '{}', '{"a": 1}', '{"a": [1, 2.5, -3e10, 0, -0.0, 1E+2], "b": {"c": null}}',
    '{"s": "quote \\" backslash \\\\ unicode \\u00e9 \\n", "t": true, "f": false}',
    '{"nested": [[[]], [{}], {"x": [{"y": "z"}]}]}', '{ "k" : "v" , "k2" : [ ] }',
    '{"é": "ünïcödé ✓"}',
]
INVALID = [
    '[]', '"text"', '1', '{a: 1}', "{'a': 1}", '{"a": 1,}', '{"a" 1}', '{"a": 01}',
    '{"a": 1.}', '{"a": .5}', '{"a": tru}', '{"a": [1, 2,]}', '{"a": "\\x"}', '{"a": 1}}',
    '{"a": "line\nbreak"}', '{"a": -}', '{"a": 1e}', '{"a": [}', '{"a": 1]',
]


def accepts(text: str) -> tuple[bool, bool]:
    """(every byte accepted, the object complete)."""
    state = JsonState()
    ok = state.feed(text.encode())
    return ok, ok and state.done


@pytest.mark.parametrize("text", VALID)
def test_valid_objects_and_all_their_prefixes_are_accepted(text):
    assert json.loads(text) is not None
    assert accepts(text) == (True, True)
    for i in range(len(text.encode())):
        ok, done = accepts(text.encode()[:i].decode("utf-8", errors="ignore"))
        assert ok and not done


@pytest.mark.parametrize("text", INVALID)
def test_invalid_texts_are_refused(text):
    assert accepts(text) != (True, True)


def test_agrees_with_json_loads_on_random_mutations():
    rng = random.Random(0)
    alphabet = '{}[]",:0123456789-+.eE truefalsn\\ux"ab'
    checked = 0
    for base in VALID:
        for _ in range(400):
            chars = list(base)
            for _ in range(rng.randint(1, 3)):
                op, i = rng.random(), rng.randrange(len(chars) + 1)
                if op < 0.4 and chars:
                    del chars[min(i, len(chars) - 1)]
                elif op < 0.8:
                    chars.insert(i, rng.choice(alphabet))
                elif chars:
                    chars[min(i, len(chars) - 1)] = rng.choice(alphabet)
            text = "".join(chars).strip()
            try:
                parsed = json.loads(text)
                valid = isinstance(parsed, dict)
            except ValueError:
                valid = False
            ok, done = accepts(text)
            if "  " * 9 not in text:  # runs of blanks past the limit are refused on purpose
                assert (ok and done) == valid, text
            checked += 1
    assert checked == 400 * len(VALID)


def test_json_object_decoding_makes_an_object_out_of_a_random_model(tiny_model, tiny_tok):
    batch = InflightBatch(tiny_model, tiny_tok)
    params = GenerationParams(temperature=0.9, seed=3, max_tokens=200)
    seqs = [batch.add([5 + i, 6, 7], params.replace(seed=i), json_object=True)
            for i in range(4)]
    while not batch.idle:
        batch.step()
    for seq in seqs:
        assert seq.result.finish_reason in ("stop", "length")
        if seq.result.finish_reason == "stop":
            assert isinstance(json.loads(seq.result.text), dict)
        else:  # cut by max_tokens: still a valid prefix
            assert JsonState().feed(seq.result.text.encode())
    assert any(s.result.finish_reason == "stop" for s in seqs)
