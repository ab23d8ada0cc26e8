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
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from llmos_jupyter.errors import CheckpointError, PromptError

# A render's budget. Chat templates loop over messages and format strings: a real one
# takes well under a millisecond and a few hundred steps per message. A stranger's
# template could loop 100000 x 100000 times or double a string until memory runs out,
# so every loop step, call, filter and attribute read counts against these.
RENDER_STEPS = 200_000  # plus STEPS_PER_MESSAGE for each message
STEPS_PER_MESSAGE = 1_000
RENDER_SECONDS = 2.0
RENDER_CHARS = 1 << 20  # output and any intermediate string: 1 MiB + 8x the input's size

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


class TemplateBudgetError(CheckpointError):
    """A chat template ran past its step, time or size budget while rendering."""


class _Budget:
    """What one render may still spend; `tick` raises TemplateBudgetError past it."""

    def __init__(self, steps: int, seconds: float, chars: int):
        self.steps_left, self.max_steps = steps, steps
        self.deadline, self.seconds = time.monotonic() + seconds, seconds
        self.chars = chars

    def tick(self, n: int = 1) -> None:
        self.steps_left -= n
        if self.steps_left < 0:
            self.exceeded(f"more than {self.max_steps:,} steps")
        if time.monotonic() > self.deadline:
            self.exceeded(f"more than {self.seconds:g} s")

    def size(self, n: int) -> None:
        if n > self.chars:
            self.exceeded(f"a string of more than {self.chars:,} characters")

    def exceeded(self, what: str) -> None:
        raise TemplateBudgetError(
            f"the model's chat template took {what} to render one prompt; it loops or grows "
            "without bound, which no chat format needs. Load the model with a fixed template")


_current = threading.local()  # the _Budget of the render running on this thread


def _tick(n: int = 1) -> None:
    budget = getattr(_current, "budget", None)
    if budget is not None:
        budget.tick(n)


def _size_of(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, dict)) else 0


class _BudgetRange:
    """`range` for templates: the sandbox's (at most 100000 items), ticking per item."""

    def __init__(self, *args: int):
        self.r = safe_range(*args)

    def __iter__(self) -> Iterator[int]:
        for i in self.r:
            _tick()
            yield i

    def __reversed__(self) -> Iterator[int]:
        return iter(_BudgetRange(self.r.start + (len(self.r) - 1) * self.r.step,
                                 self.r.start - self.r.step, -self.r.step)) if self.r else iter(())

    def __len__(self) -> int:
        return len(self.r)

    def __getitem__(self, i: Any) -> Any:
        return self.r[i]

    def __contains__(self, x: Any) -> bool:
        return x in self.r


class _BudgetedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, counting every call, attribute read and sized operator."""

    intercepted_binops = frozenset({"+", "*", "**"})

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        budget = getattr(_current, "budget", None)
        if budget is not None:  # e.g. "x".center(10**9): refuse before allocating
            for a in (*args, *kwargs.values()):
                if isinstance(a, int) and not isinstance(a, bool) and a > budget.chars:
                    budget.exceeded(f"an argument of {a:,}")
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        budget = getattr(_current, "budget", None)
        if budget is not None:
            if operator == "+":
                budget.size(_size_of(left) + _size_of(right))
            elif operator == "*":
                times = right if isinstance(right, int) else left if isinstance(left, int) else 1
                budget.size(max(_size_of(left), _size_of(right)) * max(int(times), 0))
            elif operator == "**" and isinstance(right, (int, float)) and abs(right) > 1024:
                budget.exceeded(f"a power of {right:g}")
        return super().call_binop(context, operator, left, right)


def _budgeted_filter(f: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that ticks per call (jinja calls filters directly, not via `call`)."""

    @functools.wraps(f)  # keeps jinja's pass_context/pass_environment markers
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _tick()
        budget = getattr(_current, "budget", None)
        if budget is not None:
            for a in (*args, *kwargs.values()):
                if isinstance(a, int) and not isinstance(a, bool) and a > budget.chars:
                    budget.exceeded(f"an argument of {a:,}")
        return f(*args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=32)
def compile_chat_template(source: str) -> jinja2.Template:
    """Compile `source` in the sandbox (cached: one template per model, reused per call).

    Raises CheckpointError when the template is not valid Jinja.
    """
    env = _BudgetedSandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.filters = {k: _budgeted_filter(f) for k, f in env.filters.items()}
    env.globals["range"] = _BudgetRange
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    # Jinja folds constant expressions while compiling (`'x' | center(10**9)` runs then),
    # so compiling gets a budget too; a fold that breaks it is left to run at render time,
    # where the render's budget refuses it.
    outer, _current.budget = getattr(_current, "budget", None), _Budget(
        RENDER_STEPS, RENDER_SECONDS, RENDER_CHARS)
    try:
        return env.from_string(source)
    except TemplateBudgetError as err:
        raise CheckpointError(f"the model's chat template is too big or slow to compile: {err}"
                              ) from None
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise CheckpointError(
            f"the model's chat template is not valid Jinja (line {err.lineno}: {err.message}); "
            "load the model with a fixed template"
        ) from err
    finally:
        _current.budget = outer


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
    input_chars = sum(len(str(m.get("content") or "")) for m in messages)
    budget = _Budget(RENDER_STEPS + STEPS_PER_MESSAGE * len(messages), RENDER_SECONDS,
                     RENDER_CHARS + 8 * input_chars)
    outer, _current.budget = getattr(_current, "budget", None), budget
    try:
        pieces, size = [], 0
        for piece in compiled.generate(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
            **extra,
        ):
            size += len(piece)
            budget.size(size)
            budget.tick()
            pieces.append(piece)
        return "".join(pieces)
    except jinja2.exceptions.SecurityError as err:
        raise CheckpointError(f"the model's chat template tried something unsafe: {err}") from err
    except jinja2.exceptions.TemplateError as err:
        raise PromptError(f"the chat template rejected the conversation: {err}") from err
    except (RecursionError, MemoryError, OverflowError) as err:  # e.g. a macro calling itself
        raise TemplateBudgetError(
            f"the model's chat template failed to render ({type(err).__name__}: "
            f"{str(err)[:100]}); load the model with a fixed template") from None
    finally:
        _current.budget = outer


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """`value` with `fn` applied to every string in it (dict keys kept as they are)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_strings(v, fn) for v in value]
    return value


def encode_chat(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    specials: Mapping[str, int],
    encode_text: Callable[[str], list[int]],
    *,
    add_generation_prompt: bool = True,
    **render_args: Any,
) -> list[int]:
    """Token ids of a conversation, where only the template's own text can be control tokens.

    `specials` maps each special token's text to its id; `encode_text` encodes plain text
    with special tokens disallowed. Fails closed, whatever the template does with the
    messages (renders one twice, drops one, transforms it):
    1. every string in the messages (contents, roles, names, content parts) has each
       special token's text replaced by a random sentinel before the template sees it;
    2. the rendered text is split at special-token text: each match is the template's
       own control token; the text between has its sentinels put back and is encoded
       as plain text, so "<|im_start|>" in a dataset row stays the characters it is;
    3. a template could still glue control text together from pieces of a message
       (`'<|im_' + content`, or `content[::-1]`): the render is repeated with every
       content replaced by an inert mark, and if the real render holds more of any
       control token than that one, the conversation is refused (PromptError).
    Raises PromptError / CheckpointError as `render_chat_template` does.
    """
    validate_messages(messages)
    if not specials:
        return encode_text(render_chat_template(
            template, messages, add_generation_prompt=add_generation_prompt, **render_args))
    pattern = re.compile("(" + "|".join(map(re.escape, sorted(specials, key=len, reverse=True)))
                         + ")")
    nonce = secrets.token_hex(8)
    hidden: list[str] = []

    def defuse(text: str) -> str:
        def sentinel(match: re.Match) -> str:
            hidden.append(match.group())
            return f"\x00{nonce}:{len(hidden) - 1}\x00"
        return pattern.sub(sentinel, text)

    defused = [_map_strings(dict(m), defuse) for m in messages]
    rendered = render_chat_template(template, defused,
                                    add_generation_prompt=add_generation_prompt, **render_args)
    marked = [{**m, "content": f"\x00{nonce}m\x00"} if isinstance(m["content"], str) else m
              for m in defused]
    own = Counter(pattern.findall(render_chat_template(
        template, marked, add_generation_prompt=add_generation_prompt, **render_args)))
    chunks = pattern.split(rendered)  # text, special, text, special, ..., text
    glued = [t for t, n in Counter(chunks[1::2]).items() if n > own[t]]
    if glued:
        raise PromptError(
            f"the chat template builds the control token {glued[0]} out of message text; "
            "LLMOS never lets message text become control tokens. Load the model with a "
            "template that writes its control tokens itself")
    restore = re.compile(f"\x00{nonce}:(\\d+)\x00")
    ids: list[int] = []
    for n, chunk in enumerate(chunks):
        if n % 2:
            ids.append(specials[chunk])
        elif chunk:
            ids += encode_text(restore.sub(lambda m: hidden[int(m.group(1))], chunk))
    return ids
