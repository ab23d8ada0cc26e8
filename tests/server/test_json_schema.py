"""The schema subset answers are checked against."""

from __future__ import annotations

from llmos_jupyter.server.json_schema import schema_errors

SCHEMA = {"type": "object", "required": ["name", "age"], "additionalProperties": False,
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                         "tags": {"type": "array", "items": {"enum": ["a", "b"]},
                                  "maxItems": 2}}}


def test_a_matching_object_has_no_errors():
    assert schema_errors({"name": "Ada", "age": 36, "tags": ["a"]}, SCHEMA) == []


def test_each_kind_of_mismatch_is_named():
    errors = schema_errors({"name": 5, "age": True, "tags": ["a", "c", "b"], "x": 1}, SCHEMA)
    assert errors == [
        "$.name: expected string, got int",
        "$.age: expected integer, got bool",
        "$.tags: more than 2 items",
        "$.tags[1]: 'c' is not one of ['a', 'b']",
        "$: unexpected key 'x'",
    ]
    assert schema_errors({"name": "x"}, SCHEMA) == ["$: missing required key 'age'"]


def test_hostile_schemas_do_not_crash():
    deep: dict = {}
    node = deep
    for _ in range(1000):
        node["items"] = {}
        node = node["items"]
    value: list = []
    cur = value
    for _ in range(50):
        cur.append([])
        cur = cur[0]
    assert schema_errors(value, deep) == []
    assert schema_errors({"a": 1}, "not a schema") == []
