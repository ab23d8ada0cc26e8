"""Prompt text with `{name}` placeholders filled from a namespace (notebook variables).

The same safe template language as task specs: names only, nothing else of Python is
reachable, `{{` and `}}` are literal braces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmos_jupyter.errors import PromptError
from llmos_jupyter.tasks.templates import render_template, template_fields


def fill_prompt(body: str, namespace: Mapping[str, Any]) -> str:
    """Replace `{name}` with str(namespace[name]).

    Raises PromptError naming an unknown variable, SpecError (a ValueError) for a
    malformed placeholder such as `{a.b}` or an unclosed `{`.
    """
    names = template_fields(body)
    missing = [n for n in names if n not in namespace]
    if missing:
        raise PromptError(
            f"{{{missing[0]}}} names no variable; define it first or write "
            f"{{{{{missing[0]}}}}} for literal braces"
        )
    return render_template(body, {n: str(namespace[n]) for n in names})
