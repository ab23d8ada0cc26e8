"""The CLI, the magics and the REST API expose the same verbs with the same parameters:
each interface is read back from what was built (argparse parsers, tornado routes, the
OpenAPI document) and compared with the one verb table."""

from __future__ import annotations

import argparse
import re

import pytest

from llmos_jupyter.commands.dispatch import HANDLERS
from llmos_jupyter.commands.spec import CELL, CLI, NOTEBOOK, REST
from llmos_jupyter.commands.table import (
    CELL_VERBS,
    VERBS,
    CommandError,
    build_cell_parser,
    build_parser,
    parse,
)
from llmos_jupyter.core.params import SETTINGS
from llmos_jupyter.magics.verbs import NOTEBOOK_HANDLERS
from llmos_jupyter.server.openapi import document
from llmos_jupyter.server.routes import ROUTES

# Verbs an interface lacks on purpose; a new verb missing anywhere else fails the test.
NOT_OVER_REST = {"serve", "dashboard", "playground", "help", "chat"}  # a process / widgets
NOT_ON_CLI = {"load", "unload", "dashboard", "playground", "help", "chat"}  # no process kept
NOT_IN_NOTEBOOK = {"serve"}  # it would hold the kernel


def leaves(parser: argparse.ArgumentParser, words=()):
    """(words, leaf parser) of every verb a built parser accepts."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
                if nested:
                    yield from leaves(sub, (*words, name))
                else:
                    yield (*words, name), sub


def options(parser: argparse.ArgumentParser) -> set[str]:
    """The parameter names (dests) a parser takes, without -h."""
    return {a.dest for a in parser._actions if a.dest != "help"}


def expected(interface: str, verbs=VERBS) -> dict[tuple[str, ...], set[str]]:
    return {v.words: {p.name for p in v.params_on(interface)}
            | ({"json"} if v.json and interface in (CLI, NOTEBOOK) else set())
            for v in verbs if interface in v.on}


@pytest.mark.parametrize("interface", [CLI, NOTEBOOK])
def test_line_parsers_are_the_table(interface):
    built = {words: options(p) for words, p in
             leaves(build_parser(notebook=interface == NOTEBOOK))}
    assert built == expected(interface)


def test_cell_parser_is_the_table():
    built = {words: options(p) for words, p in leaves(build_cell_parser())}
    assert built == expected(CELL, CELL_VERBS)


def test_rest_routes_and_openapi_are_the_table():
    doc = document(ROUTES)["paths"]
    served = {}
    for pattern, handler in ROUTES:
        for method, verb in (getattr(handler, "verbs", None) or {}).items():
            path = re.sub(r"\(\[\^/\]\+\)", "{}", pattern)
            assert re.sub(r"\{\w+\}", "{}", verb.http.split(" ")[1]) == path
            op = doc["/" + verb.http.split(" ")[1]][method.lower()]
            names = {p["name"] for p in op.get("parameters", [])}
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                names |= set(body["schema"]["properties"])
            served[verb.words] = names
    want = {words: {n for n in names}
            for words, names in expected(REST).items()}
    # Files travel as the request or response body, not as named fields.
    files = {v.words: {p.name for p in v.params if p.kind in ("file_in", "file_out")}
             for v in VERBS}
    assert served == {w: names - files[w] for w, names in want.items()}


def test_every_verb_is_everywhere_unless_said_why():
    names = {v.name: v.on for v in VERBS}
    assert {n for n, on in names.items() if REST not in on} == NOT_OVER_REST
    assert {n for n, on in names.items() if CLI not in on} == NOT_ON_CLI
    assert {n for n, on in names.items() if NOTEBOOK not in on} == NOT_IN_NOTEBOOK
    for v in VERBS:
        assert (v.http is not None) == (REST in v.on), v.name
        handlers = HANDLERS | NOTEBOOK_HANDLERS
        # load/unload: the notebook's and the server's own; serve: the command line's.
        assert v.handler in handlers or v.handler in ("load", "unload", "serve"), v.handler


def test_sampling_settings_are_generation_params_everywhere():
    """Every verb that takes sampling settings takes exactly GenerationParams' fields."""
    for v in (*VERBS, *CELL_VERBS):
        names = {p.name for p in v.params}
        if "temperature" in names:  # a verb that samples (seed alone is a shuffle's)
            assert set(SETTINGS) <= names, v.name
    args = parse(["task", "run", "t", "--presence-penalty", "0.5", "--ignore-eos"])
    assert args.presence_penalty == 0.5 and args.ignore_eos is True


def test_a_verb_of_another_interface_says_where_it_is():
    with pytest.raises(CommandError, match="only available in a notebook: %llmos load"):
        parse(["load", "x"])
    with pytest.raises(CommandError, match="only available in the command line: llmos serve"):
        parse(["serve"], prog="%llmos", notebook=True)


def test_rest_reference_in_docs_is_generated_from_the_table():
    from llmos_jupyter.server.openapi import markdown
    from tests.seed_home import REPO

    assert (REPO / "docs" / "rest-api.md").read_text(encoding="utf-8") == markdown(), \
        "regenerate it: python -m llmos_jupyter.server.openapi > docs/rest-api.md"


def test_number_bounds_hold_on_every_interface():
    """A bounded number below its minimum or above its maximum is refused by the command
    line's and the magics' parsers, and the OpenAPI schema publishes the bounds (a real
    server refusing them: tests/server/test_verb_routes.py)."""
    bounded = [(v, p) for v in VERBS for p in v.params
               if p.minimum is not None or p.maximum is not None]
    assert {p.name for _, p in bounded} >= {"limit", "steps", "batch_size", "port"}
    doc = document(ROUTES)["paths"]
    for notebook in (False, True):
        parsers = dict(leaves(build_parser(notebook=notebook)))
        for v, p in bounded:
            if v.words not in parsers or p.positional:
                continue
            for bad, says in ((p.minimum, "at least"), (p.maximum, "at most")):
                if bad is None:
                    continue
                outside = int(bad) - 1 if says == "at least" else int(bad) + 1
                with pytest.raises(CommandError, match="must be (at least|at most|between)"):
                    parsers[v.words].parse_args([p.option, str(outside)])
            # A bound itself is allowed (the verb's other required arguments aside).
            action = next(a for a in parsers[v.words]._actions if a.dest == p.name)
            for edge in (p.minimum, p.maximum):
                if edge is not None:
                    assert action.type(str(int(edge))) == edge, (v.name, p.name)
    for v, p in bounded:
        if REST not in v.on:
            continue
        op = doc["/" + v.http.split(" ")[1]][v.http.split(" ")[0].lower()]
        schemas = {q["name"]: q["schema"] for q in op.get("parameters", [])}
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        schemas |= body["schema"]["properties"] if body else {}
        assert schemas[p.name].get("minimum") == p.minimum, (v.name, p.name)
        assert schemas[p.name].get("maximum") == p.maximum, (v.name, p.name)


@pytest.mark.parametrize("notebook", [False, True])
def test_options_may_come_between_positionals(notebook):
    # Plain argparse took MODEL and the optional PROMPT together at the first positional,
    # so `run MODEL --max-tokens 3 PROMPT` called the prompt an unrecognized argument.
    prog = "%llmos" if notebook else "llmos"
    args = parse(["run", "m", "--max-tokens", "3", "hi there", "--temperature", "0"],
                 prog=prog, notebook=notebook)
    assert (args.name, args.prompt, args.max_tokens, args.temperature) == ("m", "hi there", 3, 0)
    args = parse(["data", "prep", "a", "--dedupe", "b", "--min-chars", "5"], prog=prog,
                 notebook=notebook)
    assert (args.src, args.dst, args.dedupe, args.min_chars) == ("a", "b", True, 5)
    with pytest.raises(CommandError, match=f"usage: {prog} run"):  # usage keeps its "%"
        parse(["run", "m", "--max-tokens", "x"], prog=prog, notebook=notebook)
