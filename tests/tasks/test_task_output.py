"""Task outputs: reading JSON and choice answers, run-time label sets."""

from __future__ import annotations

import pytest

from llmos_jupyter.errors import DataError
from llmos_jupyter.tasks.builtin_tasks import builtin_task
from llmos_jupyter.tasks.task_output import (
    OutputFormatError,
    normalize_choice,
    parse_json_output,
)


def test_parse_json_output():
    fenced = 'Sure! Here it is:\n```json\n{"name": "Ada", "year": 1843, "note": "a {b}"}\n```'
    assert parse_json_output(fenced, ["name", "year"]) == {"name": "Ada", "year": 1843,
                                                           "note": "a {b}"}
    assert parse_json_output("{'a': 1, 'b': True,}") == {"a": 1, "b": True}
    assert parse_json_output('{"a": 1,}') == {"a": 1}
    assert parse_json_output('x {"a": 1} then {"a": 1, "b": 2}', ["b"]) == {"a": 1, "b": 2}
    with pytest.raises(OutputFormatError, match="missing required keys: year, place") as e:
        parse_json_output('{"name": "Ada"}', ["name", "year", "place"])
    assert e.value.missing == ["year", "place"]
    with pytest.raises(OutputFormatError, match="no JSON object found"):
        parse_json_output("I cannot answer that.")


def test_normalize_choice():
    labels = ["positive", "negative", "very negative"]
    assert normalize_choice("Positive.", labels) == "positive"
    assert normalize_choice("  'negative'\n", labels) == "negative"
    assert normalize_choice("Answer: very negative", labels) == "very negative"
    assert normalize_choice("negative, because it is rude", labels) == "negative"
    assert normalize_choice("I think it's positive overall", labels) == "positive"
    assert normalize_choice("positive or negative", labels) == "positive"  # starts with it
    assert normalize_choice("maybe positive, maybe negative", labels) is None  # ambiguous
    assert normalize_choice("no idea", labels) is None


def test_choice_labels_from_input():
    spec = builtin_task("classify")
    assert spec.output.choice_labels({"labels": "spam, ham ,, spam"}) == ["spam", "ham"]
    with pytest.raises(DataError, match="input 'labels' must list the labels"):
        spec.output.choice_labels({"labels": " , "})
