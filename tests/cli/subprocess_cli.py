"""Running the real `llmos` command in a subprocess, as a user's shell does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A guard against a hung child, not a speed check: loading a model and answering take
# seconds, more on a busy machine.
PATIENCE_S = 600


def cli_env() -> dict[str, str]:
    """The environment of this test (LLMOS_HOME included), resolving imports to this tree."""
    path = os.pathsep.join([str(REPO), str(REPO / "kernels"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def llmos(*argv: str, stdin: str | None = None, python_flags: tuple[str, ...] = ()
          ) -> subprocess.CompletedProcess:
    """Run `llmos ARGV` (python -m llmos_jupyter.cli) and return what it did, as text."""
    return subprocess.run([sys.executable, *python_flags, "-m", "llmos_jupyter.cli", *argv],
                          input=stdin, capture_output=True, text=True, env=cli_env(), cwd=REPO,
                          timeout=PATIENCE_S)
