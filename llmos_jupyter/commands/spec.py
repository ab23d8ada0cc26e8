"""The shape of a verb definition, and how an interface's argument parser is built from it.

A `Verb` is one typed definition: its words (`data add`), handler, help, `Param`s (name,
kind, default, help) and HTTP route. The CLI and `%llmos` parsers are built from it here;
the REST routes and the OpenAPI document are built from the same definitions by
`llmos_jupyter.server`, so no interface can grow a verb or an option the others lack
unless its definition says so (`on`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from llmos_jupyter.core.params import SETTINGS
from llmos_jupyter.errors import LLMOSError

# The interfaces a verb or parameter can be offered on: the `llmos` command line, the
# `%llmos` line magic, the `%%llmos` cell magic, and the REST API.
CLI, NOTEBOOK, CELL, REST = "cli", "notebook", "cell", "rest"
EVERYWHERE = frozenset({CLI, NOTEBOOK, REST})
KINDS = ("str", "int", "float", "bool", "list", "map", "file_in", "file_out")


class CommandError(LLMOSError):
    """Bad command-line usage; the message says what to type instead."""


class HelpShown(Exception):
    """`-h` was given: carry the help text to the interface instead of exiting."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises CommandError instead of exiting the process.

    A verb's own parser takes its options and positionals in any order, so
    `llmos run MODEL --max-tokens 8 "PROMPT"` reads like `llmos run --max-tokens 8 MODEL
    "PROMPT"` (plain argparse takes MODEL and the optional PROMPT in one go at the first
    positional, then calls the prompt unrecognized).
    """

    _intermixing = False  # inside parse_known_intermixed_args (which calls back in here)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        """argparse's parse_known_args; intermixed for a parser without sub-verbs."""
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing, usage = True, self.usage
        if usage is None:
            # argparse freezes the usage text here, then %-formats it: escape the % of
            # the magics' "%llmos".
            self.usage = self.format_usage().removeprefix("usage: ").strip().replace("%", "%%")
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing, self.usage = False, usage

    def error(self, message: str):  # type: ignore[override]
        """Bad usage: a CommandError with the message and the usage line."""
        raise CommandError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None):  # type: ignore[override]
        """What argparse would exit with, raised instead."""
        if message:
            raise CommandError(message.strip())
        raise HelpShown(self.format_help())

    def print_help(self, file=None):  # type: ignore[override]
        """The help text, raised as HelpShown."""
        # argparse's -h prints the help and then exits; carry the text to the interface
        # instead, which prints it once (the CLI to stdout, a notebook as the cell's output).
        raise HelpShown(self.format_help())


@dataclass
class Context:
    """What a handler may use from the interface that called it."""

    notebook: bool = False
    namespace: dict[str, Any] | None = None  # notebook variables, for --with EXPR
    write: Callable[[str], None] = field(
        default=lambda s: (sys.stdout.write(s), sys.stdout.flush())
    )
    progress: bool = True
    # Where `llmos run MODEL` reads a prompt when none is given: a terminal opens a chat,
    # a pipe is the prompt. None in a notebook, which has no stdin to read.
    stdin: TextIO | None = None
    rest: bool = False  # a REST request: nothing may block on a person, long work detaches
    # Where a verb that reports progress (pull) sends it instead of drawing a bar:
    # called with (done, total, stage).
    on_progress: Callable[..., None] | None = None

    @property
    def background(self) -> bool:
        """Whether long work (a run over a dataset, training) returns at once and goes on
        in this process: a notebook keeps its kernel free, a server answers the request."""
        return self.notebook or self.rest


_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float}


@dataclass(frozen=True)
class Param:
    """One parameter of a verb: a positional or an option on the command line, a path
    segment, query field or body field over REST.

    kind: str, int, float, bool (a switch), list (repeatable; a JSON array), map
    (repeatable KEY=VALUE; a JSON object), file_in (a path to read; over REST the request
    body is the file), file_out (a path to write; over REST the response is the file).
    """

    name: str
    kind: str = "str"
    help: str = ""
    default: Any = None
    positional: bool = False
    optional: bool = False  # a positional that may be left out
    required: bool = False  # an option that must be given
    choices: tuple[str, ...] | None = None
    flag: str | None = None  # the option's spelling when not --name-with-dashes
    aliases: tuple[str, ...] = ()  # short spellings such as -m
    metavar: str | None = None
    on: frozenset[str] | None = None  # the interfaces offering it; None: all its verb's
    minimum: float | None = None  # int and float kinds: the smallest value allowed
    maximum: float | None = None  # ... and the largest

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"param {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if (self.minimum is not None or self.maximum is not None) and self.kind not in _TYPES:
            raise ValueError(f"param {self.name}: only int and float kinds take bounds")

    def out_of_range(self, value: Any) -> str | None:
        """What is wrong with a number given for this parameter (outside its bounds), or
        None when nothing is; every interface words its error with it."""
        if value is None or self.kind not in _TYPES:
            return None
        low, high = self.minimum, self.maximum
        if (low is None or value >= low) and (high is None or value <= high):
            return None
        if high is None:
            return f"must be at least {_number(low)}, got {value}"
        if low is None:
            return f"must be at most {_number(high)}, got {value}"
        return f"must be between {_number(low)} and {_number(high)}, got {value}"

    @property
    def option(self) -> str:
        """The command-line spelling: --max-tokens for max_tokens."""
        return self.flag or "--" + self.name.rstrip("_").replace("_", "-")

    @property
    def must(self) -> bool:
        """Whether every call has to give it."""
        return (self.positional and not self.optional) or self.required


@dataclass(frozen=True)
class Verb:
    """One verb: `words` as typed after `llmos`, the handler's name, and its parameters.

    http: "METHOD path" with {param} segments (e.g. "GET api/models/{name}"), or None for
    a verb the REST API does not offer (then `on` leaves out "rest"). json: the verb has
    a --json switch on the command line and in notebooks (REST always answers JSON).
    """

    words: tuple[str, ...]
    handler: str
    help: str
    params: tuple[Param, ...] = ()
    http: str | None = None
    on: frozenset[str] = EVERYWHERE
    json: bool = True

    @property
    def name(self) -> str:
        """The verb as typed: `data add`."""
        return " ".join(self.words)

    def params_on(self, interface: str) -> list[Param]:
        """The parameters this interface offers."""
        return [p for p in self.params if p.on is None or interface in p.on]


def sampling(on: frozenset[str] | None = None) -> tuple[Param, ...]:
    """The sampling settings as parameters, one per GenerationParams field (unset: None,
    so a preset's or task's own defaults apply)."""
    return tuple(Param(s.name, kind=s.kind, help=f"{s.help} ({s.allowed})", on=on)
                 for s in SETTINGS.values())


def sampling_args(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling settings given (unset ones left out)."""
    return {k: getattr(args, k) for k in SETTINGS if getattr(args, k, None) is not None}


def _kv(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    k, v = text.split("=", 1)
    return k.strip(), v


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _bounded(p: Param) -> Callable[[str], Any]:
    """argparse's type for a number parameter: converts, then checks its bounds."""
    convert = _TYPES[p.kind]

    def parse(text: str) -> Any:
        value = convert(text)
        problem = p.out_of_range(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = p.kind  # argparse names the type in "invalid int value: 'x'"
    return parse


def add_param(parser: argparse.ArgumentParser, p: Param) -> None:
    """Add parameter `p` to an argparse parser as its definition says."""
    kw: dict[str, Any] = {"help": p.help or None}
    if p.choices:
        kw["choices"] = p.choices
    if p.metavar:
        kw["metavar"] = p.metavar
    if p.positional:
        if p.kind == "list":
            kw["nargs"] = "*"
        elif p.optional:
            kw["nargs"] = "?"
        if p.kind in _TYPES:
            kw["type"] = _bounded(p)
        parser.add_argument(p.name, **kw)
        return
    kw["dest"] = p.name
    if p.kind == "bool":
        kw.update(action="store_true", default=p.default)
    elif p.kind == "list":
        kw.update(action="append", default=p.default)
    elif p.kind == "map":
        kw.update(action="append", type=_kv, default=[], metavar=p.metavar or "KEY=VALUE")
    else:
        kw.update(default=p.default, required=p.required)
        if p.kind in _TYPES:
            kw["type"] = _bounded(p)
    parser.add_argument(p.option, *p.aliases, **kw)


def add_verbs(root: argparse.ArgumentParser, verbs: Iterable[Verb], groups: dict[str, str],
              interface: str) -> None:
    """Add every verb offered on `interface` to `root`, nesting group verbs (`data add`)
    under a sub-parser per group; a group alone names the handler `help_GROUP`."""
    subs = root.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    nested: dict[str, Any] = {}
    for verb in verbs:
        if interface not in verb.on:
            continue
        where = subs
        if len(verb.words) == 2:
            group = verb.words[0]
            if group not in nested:
                gp = subs.add_parser(group, help=groups[group], description=groups[group])
                gp.set_defaults(handler=f"help_{group}")
                nested[group] = gp.add_subparsers(dest=f"{group}_verb",
                                                  metavar=f"{group.upper()}_VERB",
                                                  parser_class=Parser)
            where = nested[group]
        p = where.add_parser(verb.words[-1], help=verb.help, description=verb.help)
        p.set_defaults(handler=verb.handler)
        for param in verb.params_on(interface):
            add_param(p, param)
        if verb.json and interface in (CLI, NOTEBOOK):
            p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
