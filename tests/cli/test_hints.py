"""Every command a hint names exists, and command-line errors use command-line spelling.

Hints are written as `llmos VERB ...` in backquotes (the notebook shows `%llmos VERB ...`).
The first test collects every such command from the sources and parses it with the real
verb table; the others cause each error whose hint names an option, check that the CLI
spells it as an option (never `replace=True`), and then follow the hint.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from llmos_jupyter.commands.table import CommandError, HelpShown, parse
from llmos_jupyter.errors import LIST_COMMANDS
from tests.cli.subprocess_cli import REPO, llmos

MODEL = "smollm2-135m-instruct"
HINT = re.compile(r"`(%?llmos [^`\n]*)`")  # one line: multi-line ones are built by code
# Placeholders a hint may use, and a value to try in their place.
PLACEHOLDER = re.compile(r"\{[^}]*\}|\b[A-Z][A-Z_]+\b")


def hinted_commands() -> set[str]:
    """Every `llmos ...` / `%llmos ...` command written in backquotes in llmos_jupyter/."""
    found = set(f"`{c}`" for c in LIST_COMMANDS.values())  # built from this table
    for path in (REPO / "llmos_jupyter").rglob("*.py"):
        found.update(HINT.findall(path.read_text(encoding="utf-8")))
    commands = set()
    for text in found:
        text = text.strip("`").replace('\\"', '"').split("|")[0].strip()
        if "VERB" in text or '"' == text[len("llmos "):][:1]:
            continue  # grammar (`llmos VERB ...`) or code that builds a hint, not a hint
        commands.add(text)
    return commands


def as_argv(command: str) -> tuple[list[str], bool]:
    """argv of a hinted command with sample values for its placeholders; notebook or not."""
    text = PLACEHOLDER.sub("x", command.replace("[", "").replace("]", ""))
    argv = shlex.split(text)
    return argv[1:], argv[0] == "%llmos"


COMMANDS = sorted(hinted_commands())


def test_hints_were_found():
    # The scan works: it sees the hints we know are there.
    assert {"llmos list", "llmos data list", "llmos runs list", "llmos pull {name}"} <= set(
        COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_hinted_command_parses(command):
    argv, notebook = as_argv(command)
    try:
        parse(argv, prog="%llmos" if notebook else "llmos", notebook=notebook)
    except HelpShown:
        pass  # `llmos data` shows the data verbs: a fine answer
    except CommandError as e:
        pytest.fail(f"hint {command!r} does not parse: {e}")


def fails(*argv: str) -> str:
    r = llmos(*argv)
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    assert "=True" not in r.stderr and "text_field=" not in r.stderr, r.stderr
    return r.stderr


def hinted(stderr: str) -> list[str]:
    return [c for c in HINT.findall(stderr)]


def test_not_found_hints_name_real_list_commands(store_home):
    for argv, command in ((("show", "zzz-q"), "llmos list"),
                          (("data", "show", "zzz-q"), "llmos data list"),
                          (("task", "show", "zzz-q"), "llmos task list"),
                          (("runs", "show", "zzz-q"), "llmos runs list")):
        err = fails(*argv)
        assert hinted(err) == [command], err
        assert llmos(*command.split()[1:]).returncode == 0


def test_replace_hint_is_an_option_that_works(store_home, tmp_path):
    name = f"hint-{tmp_path.name[-6:]}"
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"text": "one"}\n')
    b.write_text('{"text": "two"}\n')
    assert llmos("data", "add", name, str(a)).returncode == 0
    assert "--replace" in fails("data", "add", name, str(b))
    assert llmos("data", "add", name, str(b), "--replace").returncode == 0
    assert llmos("data", "prep", name, name + "-p").returncode == 0
    assert "--replace" in fails("data", "prep", name, name + "-p")
    assert llmos("data", "prep", name, name + "-p", "--replace").returncode == 0


def test_text_field_and_format_hints_are_options_that_work(store_home, tmp_path):
    name = f"cols-{tmp_path.name[-6:]}"
    src = tmp_path / "two.jsonl"
    src.write_text('{"title": "a", "body": "first"}\n{"title": "b", "body": "second"}\n')
    assert llmos("data", "add", name, str(src)).returncode == 0
    err = fails("data", "prep", name, name + "-p", "--min-chars", "1")
    assert "--text-field" in err
    r = llmos("data", "prep", name, name + "-p", "--min-chars", "1", "--text-field", "body")
    assert r.returncode == 0, r.stderr
    odd = tmp_path / "notes.data"
    odd.write_text('{"text": "one"}\n')
    assert "--format" in fails("data", "add", name + "-odd", str(odd))
    assert llmos("data", "add", name + "-odd", str(odd), "--format", "jsonl").returncode == 0
    out = tmp_path / "out.data"
    assert "--format" in fails("data", "export", name, str(out))
    assert llmos("data", "export", name, str(out), "--format", "csv").returncode == 0
    assert Path(out).read_text().startswith("title,body")


def test_cascade_hint_is_an_option_that_works(store_home, tmp_path):
    from tests.checkpoint_factory import write_tiny_gguf

    base = f"tiny-{tmp_path.name[-6:]}"
    assert llmos("import", base, str(write_tiny_gguf(tmp_path / "t.gguf"))).returncode == 0
    assert llmos("create", base + "-p", "--from", base).returncode == 0
    assert "--cascade" in fails("rm", base)
    r = llmos("rm", base, "--cascade")
    assert r.returncode == 0 and base + "-p" in r.stdout
    assert base not in llmos("list").stdout


def test_task_input_hint_is_a_command_line(store_home):
    err = fails("task", "run", "summarize", "--input", "txt=hello")
    [command] = hinted(err)
    assert command == "llmos task run summarize --input text=...", err
    assert "llmos.run(" not in err


def test_pull_hint_lists_pullable_models(store_home):
    err = fails("pull", "no-such-model")
    assert MODEL in err and "llmos list" not in err
    assert "llmos import NAME PATH" in hinted(err)
