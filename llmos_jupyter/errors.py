"""Exception types of LLMOS.

Every error a user can cause is one of these, with a message that names the input and
says what to do. Interfaces (CLI, magics) print the message, never a traceback.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any


class LLMOSError(Exception):
    """Base class of every error LLMOS raises on purpose.

    `command_line` is the same message as `llmos` and `%llmos` spell it, given where the
    hint names an option or a call (`--replace` where Python says `replace=True`);
    command-line interfaces print it instead of str(e).
    """

    def __init__(self, *args: object, command_line: str | None = None):
        super().__init__(*args)
        self.command_line = command_line


# The command that lists each kind of thing, for "not found" hints.
LIST_COMMANDS = {"model": "llmos list", "dataset": "llmos data list",
                 "task": "llmos task list", "run": "llmos runs list"}


class NotFoundError(LLMOSError, KeyError):
    """A named thing (model, dataset, task, run) is not in the store."""

    def __init__(self, kind: str, name: str, known: Iterable[str] = ()):
        import difflib  # here: every `llmos` command imports this module, few need difflib

        self.kind, self.name = kind, name
        msg = f"unknown {kind} {name!r}"
        close = difflib.get_close_matches(name, list(dict.fromkeys(known)), n=3, cutoff=0.5)
        if close:
            msg += f"; did you mean {', '.join(repr(c) for c in close)}?"
        elif kind in LIST_COMMANDS:
            msg += f"; see `{LIST_COMMANDS[kind]}`"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ConfigError(LLMOSError, ValueError):
    """A bad option value: dtype, device, sampling parameter, config field."""


class CheckpointError(LLMOSError, ValueError):
    """A checkpoint file is corrupt, truncated, or of an unsupported kind."""


class PromptError(LLMOSError, ValueError):
    """A prompt is empty or does not fit the model's context."""


class SpecError(LLMOSError, ValueError):
    """A task spec (YAML) is malformed: the message names the line and field."""


class DataError(LLMOSError, ValueError):
    """A dataset source is malformed: the message names the row."""


def suggest(name: str, known: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest known name, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(dict.fromkeys(known)), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


_EXCERPT = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
_EXCERPT.maxlevel, _EXCERPT.maxstring, _EXCERPT.maxother, _EXCERPT.maxlong = 3, 60, 60, 40
_EXCERPT.maxlist = _EXCERPT.maxtuple = _EXCERPT.maxdict = _EXCERPT.maxset = 6


def excerpt(value: Any, limit: int = 80) -> str:
    """A short repr of `value` for an error message: at most about `limit` characters.

    Errors quote what the user gave; a hostile input (a megabyte string, a deeply nested
    list, a number with a million digits) must not make the message itself huge or slow,
    so containers and strings are cut with reprlib and the result is capped.
    """
    try:
        text = _EXCERPT.repr(value)
    except Exception:  # a repr that fails is still no reason to lose the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = 200) -> str:
    """`text` cut to at most `limit` characters (with "..."), for quoting in a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
