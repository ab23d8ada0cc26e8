"""GenerationParams.validate: every bad value is a ConfigError naming the field and range."""

from __future__ import annotations

import pytest

from llmos_jupyter.engine import GenerationParams
from llmos_jupyter.errors import ConfigError


def test_defaults_are_valid():
    p = GenerationParams()
    assert p.validate() is p
    assert (p.max_tokens, p.temperature, p.top_k, p.top_p) == (256, 0.8, 0, 1.0)
    assert (p.min_p, p.repetition_penalty, p.stop, p.seed, p.ignore_eos) == (
        0.0,
        1.0,
        [],
        None,
        False,
    )
    assert not p.greedy and GenerationParams(temperature=0).greedy


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("max_tokens", 0, ">= 1"),
        ("max_tokens", -5, ">= 1"),
        ("max_tokens", 2.5, "integer"),
        ("temperature", -0.1, ">= 0"),
        ("temperature", float("nan"), ">= 0"),
        ("top_k", -1, ">= 0"),
        ("top_p", 0.0, "(0, 1]"),
        ("top_p", 1.5, "(0, 1]"),
        ("min_p", -0.1, "[0, 1]"),
        ("min_p", 1.1, "[0, 1]"),
        ("repetition_penalty", 0.0, "> 0"),
        ("presence_penalty", 2.5, "[-2, 2]"),
        ("frequency_penalty", -3, "[-2, 2]"),
        ("frequency_penalty", float("inf"), "[-2, 2]"),
        ("stop", "###", "list of strings"),
        ("stop", ["ok", ""], "non-empty"),
        ("seed", 1.5, "integer"),
        ("seed", 10**23, "[0, 2**63 - 1]"),  # torch said "Overflow when unpacking long long"
        ("seed", -1, "[0, 2**63 - 1]"),
        ("ignore_eos", "yes", "True or False"),
    ],
)
def test_bad_values_name_field_and_range(field, value, words):
    with pytest.raises(ConfigError) as err:
        GenerationParams(**{field: value}).validate()
    msg = str(err.value)
    assert field in msg and words in msg


def test_edges_are_allowed():
    GenerationParams(temperature=0, top_p=1.0, min_p=1.0, top_k=1, seed=0).validate()
    GenerationParams(seed=2**63 - 1).validate()
    GenerationParams(top_p=1e-9, repetition_penalty=0.5, stop=["a", "bc"]).validate()


def test_replace_rejects_unknown_names_with_suggestion():
    assert GenerationParams().replace(top_k=5).top_k == 5
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        GenerationParams().replace(temprature=0.5)
