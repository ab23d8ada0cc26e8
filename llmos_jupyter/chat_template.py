"""Chat templates: a model's Jinja template rendered the way Hugging Face renders it.

Templates come from checkpoints, i.e. from strangers, so they run in Jinja's immutable
sandbox: a template can format strings but cannot reach Python internals or mutate our
objects. The environment mirrors `transformers` (trim_blocks, lstrip_blocks, the
`loopcontrols` extension, `raise_exception`, `tojson`, `strftime_now`, a no-op
`{% generation %}` tag) so the same template gives the same text here as there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmos_jupyter.errors import CheckpointError, PromptError

# What a model without a template gets: plain ChatML, the format most small chat models use.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class _GenerationTag(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: HF marks assistant spans with it for
    training masks; for rendering it is transparent, so we only keep its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[jinja2.nodes.Node]:
        next(parser.stream)  # the `generation` name token
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str) -> None:
    # Templates call this to reject a conversation (e.g. roles that do not alternate).
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson HTML-escapes; HF overrides it with plain json.dumps, so do we.
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=32)
def compile_chat_template(source: str) -> jinja2.Template:
    """Compile `source` in the sandbox (cached: one template per model, reused per call).

    Raises CheckpointError when the template is not valid Jinja.
    """
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise CheckpointError(
            f"the model's chat template is not valid Jinja (line {err.lineno}: {err.message}); "
            "load the model with a fixed template"
        ) from err


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    """Check the shape of a conversation before any template sees it.

    Each message needs a string `role` and a `content` (a string, a list of content
    parts for multimodal templates, or None for tool-call-only assistant turns).
    Raises PromptError (a ValueError) naming the first bad message's index.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise PromptError(f"messages must be a list of dicts, got {type(messages).__name__}")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise PromptError(f"message {i} must be a dict, got {type(message).__name__}")
        if "role" not in message:
            raise PromptError(f"message {i} has no 'role'; add e.g. 'role': 'user'")
        if not isinstance(message["role"], str):
            raise PromptError(
                f"message {i}: 'role' must be a string, got {type(message['role']).__name__}"
            )
        if "content" not in message:
            raise PromptError(f"message {i} ({message['role']}) has no 'content'")
        content = message["content"]
        if content is not None and not isinstance(content, (str, list)):
            raise PromptError(
                f"message {i} ({message['role']}): 'content' must be a string, "
                f"got {type(content).__name__}"
            )


def render_chat_template(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render `messages` with `template` (or ChatML when None) into one prompt string.

    `extra` is passed to the template as variables (e.g. `tools`, `pad_token`).
    Raises PromptError for malformed messages or when the template rejects the
    conversation via `raise_exception`; CheckpointError when the template is broken.
    """
    validate_messages(messages)
    if template is None:
        bad = [i for i, m in enumerate(messages) if not isinstance(m["content"], str)]
        if bad:
            raise PromptError(f"message {bad[0]}: ChatML needs string 'content'")
        template = CHATML_TEMPLATE
    compiled = compile_chat_template(template)
    try:
        return compiled.render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        )
    except jinja2.exceptions.SecurityError as err:
        raise CheckpointError(f"the model's chat template tried something unsafe: {err}") from err
    except jinja2.exceptions.TemplateError as err:
        raise PromptError(f"the chat template rejected the conversation: {err}") from err
