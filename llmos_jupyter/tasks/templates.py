"""Task templates: our own tiny language for prompts, not `str.format`.

`str.format` can reach attributes (`{x.__class__}`), so a template here allows only
`{name}`, where the name is a declared input or an earlier step of a flow, and `{{`/`}}`
for literal braces; anything else is a TemplateSyntaxError with the offending offset
(which the spec parser turns into a line number).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from llmos_jupyter.errors import DataError, SpecError

# A name a template can refer to: also what input names and step ids must look like.
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class TemplateSyntaxError(SpecError):
    """A template is malformed; `pos` is the offset of the offending brace."""

    def __init__(self, msg: str, pos: int):
        super().__init__(msg)
        self.pos = pos


def _field_problem(inner: str) -> str | None:
    """Why `{inner}` is not a plain placeholder, or None when it is one."""
    if IDENT.fullmatch(inner):
        return None
    for sign, what in (("!", "a conversion (!r)"), (":", "a format spec (:...)"),
                       (".", "attribute access"), ("[", "indexing")):
        if sign in inner:
            return f"placeholder {{{inner}}}: {what} is not allowed; write a plain name"
    if not inner.strip():
        return "empty placeholder {}; name an input, e.g. {text}"
    return f"placeholder {{{inner}}} is not a plain name (letters, digits and _)"


@functools.lru_cache(maxsize=512)  # the executor renders one template for many rows
def parse_template(template: str) -> tuple[tuple[str, str | None, int], ...]:
    """Split a template into (literal text, placeholder name or None, offset) parts.

    Raises TemplateSyntaxError (a SpecError) for an unclosed `{`, a lone `}`, or a
    placeholder that is not a plain name (`{a.b}`, `{a[0]}`, `{a!r}`, `{a:>5}`, `{}`).
    """
    parts: list[tuple[str, str | None, int]] = []
    buf: list[str] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c in "{}" and template.startswith(c * 2, i):  # {{ and }} are literal braces
            buf.append(c)
            i += 2
        elif c == "{":
            close, reopen = template.find("}", i + 1), template.find("{", i + 1)
            if close < 0 or 0 <= reopen < close:
                raise TemplateSyntaxError("unclosed { (write {{ for a literal brace)", i)
            inner = template[i + 1:close]
            problem = _field_problem(inner)
            if problem:
                raise TemplateSyntaxError(problem, i)
            parts.append(("".join(buf), inner, i))
            buf, i = [], close + 1
        elif c == "}":
            raise TemplateSyntaxError("single } (write }} for a literal brace)", i)
        else:
            buf.append(c)
            i += 1
    if buf or not parts:
        parts.append(("".join(buf), None, n))
    return tuple(parts)


def template_fields(template: str) -> list[str]:
    """Placeholder names of a template, each once, in order of first use."""
    return list(dict.fromkeys(f for _, f, _ in parse_template(template) if f))


def render_template(template: str, values: Mapping[str, Any]) -> str:
    """Fill a template's placeholders from `values`; `{{`/`}}` become `{`/`}`.

    Strings go in as they are, lists and dicts as JSON, None as "", anything else via
    str(). Raises TemplateSyntaxError for a malformed template and DataError naming a
    placeholder that has no value.
    """
    out = []
    for literal, name, _ in parse_template(template):
        out.append(literal)
        if name is None:
            continue
        if name not in values:
            raise DataError(f"no value for placeholder {{{name}}}; given: "
                            f"{', '.join(values) or 'none'}")
        value = values[name]
        if isinstance(value, (list, dict)):
            value = json.dumps(value, ensure_ascii=False)
        out.append("" if value is None else str(value))
    return "".join(out)
