"""Templates: plain-name placeholders only, literal braces, rendering values."""

from __future__ import annotations

import pytest

from llmos_jupyter.errors import DataError
from llmos_jupyter.tasks.templates import (
    TemplateSyntaxError,
    parse_template,
    render_template,
    template_fields,
)


def test_render_template():
    template = "{{literal}} {a} and {b}}} {{{a}}}"
    assert template_fields(template) == ["a", "b"]
    assert render_template(template, {"a": "A", "b": "{x.y}"}) == "{literal} A and {x.y}} {A}"
    # Values are inserted verbatim, never re-parsed as templates.
    assert render_template("{a}", {"a": "{b}"}) == "{b}"
    assert render_template("{a}|{b}|{c}", {"a": None, "b": 3, "c": ["x"]}) == '|3|["x"]'
    assert render_template("no fields", {}) == "no fields"
    with pytest.raises(DataError, match=r"no value for placeholder \{b\}; given: a"):
        render_template("{a}{b}", {"a": "x"})


def test_syntax_error_pos_is_the_offending_brace():
    # The spec parser turns `pos` into the exact line inside a literal block.
    assert parse_template("a {x} b") == (("a ", "x", 2), (" b", None, 7))
    for template, pos in (("ab {x", 3), ("ab } c", 3), ("{x} {y.z}", 4)):
        with pytest.raises(TemplateSyntaxError) as e:
            parse_template(template)
        assert e.value.pos == pos
