"""Hostile task specs: YAML aliases, deep nesting, huge values and seeds fail fast and clearly."""

from __future__ import annotations

import pytest

from llmos_jupyter.errors import SpecError
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.tasks import TaskStore
from llmos_jupyter.tasks import spec_yaml
from llmos_jupyter.tasks.spec_yaml import parse_task_spec

HEAD = "name: lol\ninputs: [text]\nprompt: '{text}'\n"


def spec_error(source, **kw) -> str:
    with pytest.raises(SpecError) as e:
        parse_task_spec(source, **kw)
    return str(e.value)


def test_billion_laughs_refused_at_the_first_alias():
    # As in the adversarial pass (a few hundred bytes): nine levels of nine aliases each.
    # Expanded, the last field is 9**9 strings; quoting it in an "expected text, got a
    # list" error took 21-56 s, 2.8 GB and printed a 663 MB message.
    laughs = HEAD + "description: &a [" + ", ".join(["lol"] * 9) + "]\n" + "".join(
        f"x{i}: &b{i} [" + ", ".join(["*a" if i == 0 else f"*b{i - 1}"] * 9) + "]\n"
        for i in range(8))
    assert len(laughs) < 600
    msg = spec_error(laughs)
    assert msg == "line 5: YAML aliases (*a) are not allowed in a task spec; write the value out"


def test_alias_in_a_known_field_is_refused_too(llmos_home):
    tasks = TaskStore(Catalog())
    text = HEAD + "params:\n  stop: &s [a, b]\ndescription: *s\n"
    with pytest.raises(SpecError, match=r"line 6: YAML aliases \(\*s\) are not allowed"):
        tasks.add("lol", text)
    assert "lol" not in [t.name for t in tasks.list()]  # nothing stored


def test_errors_quote_only_an_excerpt():
    huge = "x" * 1_000_000
    msg = spec_error(HEAD + f"description: [{huge}]\n")
    assert msg.startswith("line 4, field description: expected text, got a list")
    assert len(msg) < 200
    msg = spec_error({"name": "t", "inputs": ["a"], "prompt": "{a}", "model": ["m" * 10**6]})
    assert len(msg) < 200
    msg = spec_error(HEAD + "params: {stop: [a], max_tokens: " + "9" * 5000 + "}\n")
    assert msg == "line 4: a number too long to read (Python reads at most 4300 digits)"
    msg = spec_error(HEAD + "k" * 1000 + ": 1\n")  # YAML's longest plain key
    assert msg.startswith("line 4, field kkk") and "unknown field" in msg and len(msg) < 800


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000,
                                    "{a: " * 5000 + "1" + "}" * 5000])
def test_deep_nesting_is_an_error_not_a_recursion_traceback(nested):
    msg = spec_error(HEAD + "description: " + nested + "\n")
    assert msg == (f"line 4: the spec nests more than {spec_yaml.MAX_DEPTH} levels deep; "
                   "a task spec is a few fields deep")


def test_self_referencing_or_exploding_dict_source():
    spec = {"name": "t", "inputs": ["a"], "prompt": "{a}"}
    spec["description"] = spec
    assert "nests more than 64 levels deep (or refers to itself)" in spec_error(spec)
    lol: list = ["lol"] * 9
    for _ in range(8):
        lol = [lol] * 9  # 9**9 strings, made of 9 shared lists
    assert "holds more than 100000 values" in spec_error(
        {"name": "t", "inputs": ["a"], "prompt": "{a}", "description": lol})
    # A value shared by two fields (once an alias in the dump) is fine.
    shared = ["a"]
    parsed = parse_task_spec({"name": "t", "inputs": shared, "prompt": "{a}",
                              "params": {"stop": shared}})
    assert parsed.inputs == ["a"] and parsed.params["stop"] == ["a"]


@pytest.mark.parametrize("seed", ["100000000000000000000000", "-1", str(2**63)])
def test_seed_out_of_64_bits_is_a_spec_error(seed):
    msg = spec_error(HEAD + f"params: {{seed: {seed}}}\n")
    assert msg == f"line 4, field params.seed: must be an integer in [0, 2**63 - 1], got {seed}"


def test_seed_1e23_is_not_an_integer():
    assert spec_error(HEAD + "params: {seed: 1e23}\n") == \
        "line 4, field params.seed: must be an integer, got '1e23'"
