"""`llmos run MODEL [PROMPT]` with the real default model: chat template, --raw, piped
stdin, and the interactive chat driven through a real pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import sys
import termios

import pytest

from tests.cli.subprocess_cli import PATIENCE_S, REPO, cli_env, llmos

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


def test_prompt_goes_through_the_chat_template(store_home):
    r = llmos("run", MODEL, "Why is the sky blue?", "--temperature", "0", "--max-tokens", "24")
    assert r.returncode == 0, r.stderr
    answer = r.stdout.strip()
    # Raw, the instruct model ended at once with an empty line; as a chat turn it answers.
    assert len(answer.split()) >= 5, answer
    assert "<|im_start|>" not in answer and "<|im_end|>" not in answer


def test_raw_is_plain_completion(store_home):
    r = llmos("run", MODEL, "The capital of France is", "--raw", "--temperature", "0",
              "--max-tokens", "6", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "Paris" in out["text"]
    assert out["usage"]["completion_tokens"] <= 6


def test_piped_stdin_is_the_prompt(store_home):
    r = llmos("run", MODEL, "--temperature", "0", "--max-tokens", "16", "--json",
              stdin="What is the capital of France? Answer in one word.\n")
    assert r.returncode == 0, r.stderr
    assert "Paris" in json.loads(r.stdout)["text"]


def test_no_prompt_and_nothing_piped_is_a_usage_error(store_home):
    r = llmos("run", MODEL, stdin="")
    assert r.returncode == 2
    assert f'llmos run {MODEL} "' in r.stderr


class Terminal:
    """`llmos ARGV` on a pseudo-terminal that is its controlling terminal (so Ctrl-C and
    Ctrl-D typed into it act as they do for a user)."""

    def __init__(self, *argv: str):
        main, child = os.openpty()

        def take_terminal() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmos_jupyter.cli", *argv], stdin=child, stdout=child,
            stderr=child, env=cli_env(), cwd=REPO, preexec_fn=take_terminal, close_fds=True,
        )
        os.close(child)
        self.fd = main
        self.screen = ""

    def read_until(self, marker: str, count: int = 1) -> str:
        """Read until `marker` has appeared `count` times in all output so far."""
        chunks = b""
        while self.screen.count(marker) < count:
            ready, _, _ = select.select([self.fd], [], [], PATIENCE_S)
            assert ready, f"no {marker!r} after {PATIENCE_S} s; screen:\n{self.screen}"
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                data = b""
            assert data, f"exited before {marker!r}; screen:\n{self.screen}"
            chunks += data
            self.screen = self.screen + chunks.decode("utf-8", "replace")
            chunks = b""
        return self.screen

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, kind, *_exc) -> None:
        if kind is not None:  # a failed check: don't wait for a session left open
            self.proc.kill()
        self.returncode = self.proc.wait(timeout=PATIENCE_S)
        os.close(self.fd)


def test_interactive_chat_keeps_history_and_bye_leaves(store_home):
    with Terminal("run", MODEL, "--temperature", "0", "--max-tokens", "40") as t:
        t.read_until(">>> ")
        t.type("My name is Zorblax. Please remember my name.\n")
        t.read_until(">>> ", 2)
        t.type("What is my name?\n")
        screen = t.read_until(">>> ", 3)
        second = screen.split("What is my name?", 1)[1]
        # Only the first turn said the name: the second answer knows it from the history.
        assert "Zorblax" in second, screen
        t.type("/?\n")
        assert "/bye" in t.read_until(">>> ", 4).split(">>> /?", 1)[1]
        t.type("/bye\n")
    assert t.returncode == 0, t.screen


def test_verbose_chat_counts_what_each_turn_took_from_the_cache(store_home):
    with Terminal("run", MODEL, "--temperature", "0", "--max-tokens", "16", "--verbose") as t:
        t.read_until(">>> ")
        t.type("Name a color.\n")
        first = t.read_until(">>> ", 2).rsplit(">>> ", 2)[1]
        t.type("And another one?\n")
        second = t.read_until(">>> ", 3).rsplit(">>> ", 2)[1]
        t.type("/bye\n")
    assert t.returncode == 0, t.screen
    assert re.search(r"prompt: \d+ tokens; \d+ prefilled in \d+ ms", first), first
    assert re.search(r"answer: \d+ tokens in [\d.]+ s \([\d.]+ tok/s\)", first), first
    # The second turn continues the first turn's cache: its prompt, the answer, the template.
    cached = re.search(r"prompt: (\d+) tokens \((\d+) from the cache\); (\d+) prefilled",
                       second)
    assert cached, second
    total, reused, prefilled = map(int, cached.groups())
    assert reused > 16 and reused + prefilled == total, second


def test_verbose_is_for_models_not_tasks(store_home, tmp_path):
    spec = tmp_path / "echo.yaml"
    spec.write_text("inputs: [text]\nprompt: 'Repeat: {text}'\n", encoding="utf-8")
    r = llmos("task", "add", "echo-verbose", "-f", str(spec))
    assert r.returncode == 0, r.stderr
    r = llmos("run", "echo-verbose", "--input", "text=hi", "--verbose")
    assert r.returncode == 2 and "--verbose is for a model's answers" in r.stderr


def test_interactive_ctrl_c_at_the_prompt_and_ctrl_d(store_home):
    with Terminal("run", MODEL, "--temperature", "0", "--max-tokens", "4") as t:
        t.read_until(">>> ")
        t.type("\x03")  # Ctrl-C at an empty prompt: a hint, the session goes on
        assert "/bye" in t.read_until(">>> ", 2).rsplit(">>> ", 2)[1]
        t.type("\x04")  # Ctrl-D on an empty line leaves
    assert t.returncode == 0, t.screen
