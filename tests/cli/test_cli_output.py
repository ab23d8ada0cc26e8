"""What the real `llmos` command prints: help once, quiet broken pipes, no empty progress
bars, errors that blame the right input, task outputs, token counts, readable numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.cli.subprocess_cli import PATIENCE_S, REPO, cli_env, llmos

MODEL = "smollm2-135m-instruct"
BAR_MARKS = ("B/s", "it/s", "item/s", "?", "%|")  # what a tqdm bar line contains


def has_bar(stderr: str) -> bool:
    return any(mark in stderr for mark in BAR_MARKS)


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"], ["data", "stats", "-h"],
                                  ["runs", "show", "--help"], ["data"], []])
def test_help_prints_once_in_cli_spelling(argv):
    r = llmos(*argv)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("usage:") == 1, r.stdout
    assert "usage: llmos" in r.stdout and "%llmos" not in r.stdout


@pytest.mark.parametrize("argv", [["runs", "list", "--json"], ["list"], ["--help"]])
def test_broken_pipe_exits_quietly(store_home, argv):
    # As in `llmos runs list --json | head -c 0`: the reader is gone before the first
    # write (its end of the pipe is closed before the command starts), so the write fails.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "llmos_jupyter.cli", *argv],
                           stdout=write_end, stderr=subprocess.PIPE, text=True, env=cli_env(),
                           cwd=REPO, timeout=PATIENCE_S)
    finally:
        os.close(write_end)
    assert r.stderr == "", r.stderr  # no BrokenPipeError traceback
    assert r.returncode == 128 + signal.SIGPIPE  # what a shell reports for `cat`, `ls`


def test_pull_unknown_model_fails_before_any_bar(store_home):
    r = llmos("pull", "no-such-model")
    assert r.returncode == 1
    assert not has_bar(r.stderr), r.stderr
    assert r.stderr.startswith("error: cannot pull 'no-such-model'")
    assert MODEL in r.stderr


def test_pull_of_a_pulled_model_draws_no_bar(store_home):
    r = llmos("pull", MODEL)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "135M" in r.stdout


def test_show_reads_as_people_say_it(store_home):
    out = llmos("show", MODEL).stdout
    assert "135M" in out and "134515008" not in out and " MB" in out
    assert json.loads(llmos("show", MODEL, "--json").stdout)["params"] == 134515008


@pytest.fixture
def docs(store_home, tmp_path) -> str:
    """A dataset with an integer `id` and a text column not named `text`."""
    name = f"docs-{tmp_path.name[-6:]}"
    src = tmp_path / "docs.jsonl"
    src.write_text('{"id": 1, "body": "The river flooded the market on Monday."}\n'
                   '{"id": 2, "body": "A new library opened downtown this week."}\n')
    assert llmos("data", "add", name, str(src)).returncode == 0
    return name


def test_map_to_a_missing_column_blames_the_column(docs):
    r = llmos("task", "run", "summarize", "--data", docs, "--map", "text=nosuchcol")
    assert r.returncode == 1
    assert "'nosuchcol'" in r.stderr and "['id', 'body']" in r.stderr, r.stderr
    assert not has_bar(r.stderr), r.stderr  # a run that fails at once draws no bar
    r = llmos("task", "run", "summarize", "--data", docs)
    # No `text` column: the hint maps the text column, not the integer id.
    assert "--map text=body" in r.stderr and "--map text=id" not in r.stderr, r.stderr
    assert not has_bar(r.stderr), r.stderr


@pytest.mark.slow
def test_task_run_prints_its_outputs(docs):
    r = llmos("task", "run", "summarize", "--data", docs, "--map", "text=body",
              "--max-tokens", "12", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "succeeded, 2/2 items" in lines[0]
    assert lines[1].split() == ["TEXT", "OUTPUT"]
    assert "The river flooded" in lines[2] and len(lines) == 4
    r = llmos("task", "run", "summarize", "--data", docs, "--map", "text=body",
              "--max-tokens", "12", "--temperature", "0", "--json")
    items = json.loads(r.stdout)["items"]
    assert [it["inputs"]["text"][:9] for it in items] == ["The river", "A new lib"]
    assert all(it["output"] for it in items)
    one = llmos("task", "run", "summarize", "--input", "text=The sky was grey all day.",
                "--max-tokens", "12", "--temperature", "0")
    assert one.returncode == 0 and one.stdout.strip(), one.stderr
    assert "run_id" not in one.stdout  # the output itself, not the run's record


def test_data_stats_prints_token_counts(docs):
    plain = llmos("data", "stats", docs).stdout
    assert "--model MODEL" in plain and "TOKENS" not in plain
    r = llmos("data", "stats", docs, "--model", MODEL)
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()[1:]
    assert "TOKENS" in header.split()
    body = next(row for row in rows if row.startswith("body"))
    counts = json.loads(llmos("data", "stats", docs, "--model", MODEL, "--json").stdout)
    tokens = counts["columns"]["body"]["tokens"]
    assert f"{tokens['min']:.0f} / {tokens['p50']:.0f}" in body
    assert 5 <= tokens["max"] <= 20  # ~10 words of English
