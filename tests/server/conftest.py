"""A real `llmos serve` for the server tests: a subprocess on a free loopback port over
the session's store holding the default model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.seed_home import REPO

MODEL = "smollm2-135m-instruct"
KEY = "test-key-0123"


@dataclass
class Served:
    """A running `llmos serve`: its base URL, key, process and output lines so far (a
    thread keeps reading them, so the server never blocks on a full pipe)."""

    url: str
    key: str | None
    proc: subprocess.Popen
    output: list[str]
    reader: threading.Thread


def start_serve(home, *args: str, key: str | None = KEY) -> Served:
    """Start `python -m llmos_jupyter.server.standalone --port 0 ARGS`; wait for its
    'listening on' line (or its exit, raising with its output)."""
    env = {**os.environ, "LLMOS_HOME": str(home)}
    env.pop("LLMOS_API_KEY", None)
    cmd = [sys.executable, "-m", "llmos_jupyter.server.standalone", "--port", "0", *args]
    if key:
        cmd += ["--api-key", key]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    for line in proc.stdout:  # ends when the process exits
        lines.append(line)
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
            reader.start()
            return Served(found.group(1), key, proc, lines, reader)
    proc.wait()
    raise RuntimeError("llmos serve did not start:\n" + "".join(lines))


def stop_serve(served: Served) -> str:
    """SIGTERM (a drain), wait for the exit, return everything it printed."""
    served.proc.terminate()
    try:
        served.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait()
    served.reader.join(60)  # the pipe's end: everything the server printed is read
    return "".join(served.output)


@pytest.fixture(scope="session")
def served(default_store) -> Iterator[Served]:
    """One `llmos serve` with a key, shared by the server tests."""
    s = start_serve(default_store)
    yield s
    stop_serve(s)


def wait_until(check, timeout: float = 60.0, what: str = "condition"):
    """Poll check() until it returns a truthy value (the test's outcome never depends on
    how fast the machine is, only on the state being reached)."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)
