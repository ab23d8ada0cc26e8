"""%llmos / %%llmos through a real IPython InteractiveShell."""

from __future__ import annotations

import subprocess
import sys

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import llmos

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "llmos")
    return shell


def test_load_ext_imports_neither_torch_nor_triton():
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'llmos')\n"
        "print(sorted(m for m in ('torch', 'triton') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_help_lists_verbs(ip, capsys):
    out = ip.run_line_magic("llmos", "help").text()  # the cell's result, shown once
    assert capsys.readouterr().out == ""
    for verb in ("pull", "load", "run", "data", "task", "runs", "dashboard", "playground"):
        assert verb in out
    assert out.count("usage: %llmos") == 1


def test_help_prints_once_in_magic_spelling(ip, capsys):
    ip.run_line_magic("llmos", "list --help")
    out = capsys.readouterr().out
    assert out.count("usage:") == 1 and "usage: %llmos list" in out
    assert ip.run_line_magic("llmos", "help data stats").text().count("usage:") == 1
    ip.run_line_magic("llmos", "data")  # a group alone: its help
    out = capsys.readouterr().out
    assert out.count("usage:") == 1 and "usage: %llmos data" in out


def test_hints_use_magic_spelling(ip, llmos_home, tmp_path):
    with pytest.raises(UsageError, match="see `%llmos data list`"):
        ip.run_line_magic("llmos", "data show nope")
    with pytest.raises(UsageError, match=f"give a prompt: `%llmos run {MODEL} "):
        ip.run_line_magic("llmos", f"run {MODEL}")  # a notebook has no stdin to chat on
    llmos.datasets.add("dup", [{"text": "a"}])
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "b"}\n')
    with pytest.raises(UsageError, match="add --replace") as err:
        ip.run_line_magic("llmos", f"data add dup {other}")
    assert "=True" not in str(err.value)


def test_usage_errors_are_usage_errors(ip):
    with pytest.raises(UsageError, match="invalid choice"):
        ip.run_line_magic("llmos", "frobnicate")
    with pytest.raises(UsageError, match="quotes"):
        ip.run_line_magic("llmos", 'run "unclosed')
    with pytest.raises(UsageError, match="cell verb"):
        ip.run_cell_magic("llmos", "", "body")


@pytest.mark.slow
def test_issue_notebook_cells_exactly(ip, store_home, capsys):
    """The cell sequence of issue #5, as written."""
    ip.run_line_magic("llmos", f"pull {MODEL}")
    ip.run_line_magic("llmos", f"load {MODEL}")
    ip.run_cell_magic("llmos", "generate --max-tokens 16 --temperature 0 -o out",
                      "The capital of France is")
    streamed = capsys.readouterr().out
    out = ip.user_ns["out"]
    expected = llmos.load(MODEL).generate("The capital of France is", max_tokens=16,
                                          temperature=0).text
    assert out.text == expected
    assert out.text in streamed
    ip.run_cell_magic("llmos", "task brief",
                      "inputs: [text]\nprompt: 'Summarize in one short sentence: {text}'\n"
                      "params: {max_tokens: 24}\n")
    ip.user_ns["doc"] = "The meeting moved to Tuesday.\nBring the quarterly report."
    ip.run_line_magic("llmos", "run brief --with text=doc -o res")
    res = ip.user_ns["res"]
    assert res.status == "succeeded"
    assert isinstance(res.output, str) and res.output


@pytest.mark.slow
def test_generate_fills_notebook_variables(ip, store_home):
    ip.run_line_magic("llmos", f"load {MODEL}")
    ip.user_ns["country"] = "France"
    ip.run_cell_magic("llmos", "generate --max-tokens 4 --temperature 0 -o g",
                      "The capital of {country} is")
    direct = llmos.load(MODEL).generate("The capital of France is", max_tokens=4, temperature=0)
    assert ip.user_ns["g"].text == direct.text
    with pytest.raises(UsageError, match="nowhere"):
        ip.run_cell_magic("llmos", "generate --max-tokens 4", "Hi {nowhere}")


@pytest.mark.slow
def test_chat_keeps_the_conversation(ip, store_home):
    ip.run_line_magic("llmos", f"load {MODEL}")
    ip.run_line_magic("llmos", "chat --reset")
    ip.run_cell_magic("llmos", "chat --max-tokens 8 --temperature 0 -o a", "My name is Ada.")
    ip.run_cell_magic("llmos", "chat --max-tokens 8 --temperature 0 -o b", "What is my name?")
    a, b = ip.user_ns["a"], ip.user_ns["b"]
    magics = ip.magics_manager.registry["LLMOSMagics"]
    assert magics.conversation == [
        {"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": a.text},
        {"role": "user", "content": "What is my name?"}, {"role": "assistant", "content": b.text},
    ]
    # The second turn's prompt carried the first turn: it is longer than the question alone.
    ip.run_line_magic("llmos", "chat --reset")
    ip.run_cell_magic("llmos", "chat --max-tokens 8 --temperature 0 -o c", "What is my name?")
    assert b.usage["prompt_tokens"] > ip.user_ns["c"].usage["prompt_tokens"] + 8


@pytest.mark.slow
def test_lists_render_html(ip, store_home):
    table = ip.run_line_magic("llmos", "list")
    assert "<table" in table._repr_html_()
    assert MODEL in table._repr_html_()
    assert MODEL in repr(table)
    tasks = ip.run_line_magic("llmos", "task list")
    assert "summarize" in tasks._repr_html_()


@pytest.mark.slow
def test_task_cell_reports_spec_errors_with_line(ip, store_home):
    with pytest.raises(UsageError, match="line 2"):
        ip.run_cell_magic("llmos", "task broken", "inputs: [text]\nprompt: 'x {txt}'\n")


def test_a_line_verb_written_as_a_cell_says_what_to_type(ip):
    with pytest.raises(UsageError, match=r"%%llmos task t1 defines .* `%llmos task add t1 -f"):
        ip.run_cell_magic("llmos", "task add t1", "prompt: hi\n")
    with pytest.raises(UsageError,
                       match=r"no cell verb 'data'.*use one %: %llmos data add d x.csv$"):
        ip.run_cell_magic("llmos", "data add d x.csv", "a,b\n")
    with pytest.raises(UsageError, match="usage: %%llmos generate"):  # real cell verbs as before
        ip.run_cell_magic("llmos", "generate --max-tokens x", "hi")
