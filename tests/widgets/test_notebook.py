"""One real kernel: notebooks/widgets-demo.ipynb builds both widgets and generates."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from llmos_jupyter import api
from tests.widgets.conftest import TINY, env_with

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "widgets-demo.ipynb"


def _stdout(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("name") == "stdout")


def test_demo_notebook_generates_from_the_playground_button(tiny_store, tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = env_with(LLMOS_HOME=str(tiny_store), LLMOS_DEMO_MODEL=TINY, LLMOS_DEMO_CHAT="0",
                   LLMOS_DEMO_PROMPT="hello world", LLMOS_DEMO_MAX_TOKENS="10")
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env)

    # Both widgets were displayed as widgets (not as text reprs of errors).
    views = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 2
    lines = dict(line.split(": ", 1) for line in _stdout(nb).splitlines() if ": " in line)
    assert ast.literal_eval(lines["ERROR"]) == ""
    expected = api.load(TINY).generate("hello world", temperature=0.0, max_tokens=10).text
    assert ast.literal_eval(lines["GENERATED"]) == expected
