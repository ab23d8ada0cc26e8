"""Catalog, data, task and run-record verbs start without torch or triton.

Each verb runs as a real `llmos` subprocess under `python -X importtime`, which lists
every module the process imported; torch and triton must not be among them. Only verbs
that run a model may import them. (Speed itself is measured by
benchmarks/bench_cli_start.py, never asserted here.)
"""

from __future__ import annotations

import pytest

from tests.cli.subprocess_cli import llmos

MODEL = "smollm2-135m-instruct"
HEAVY = {"torch", "triton"}


def imported_modules(stderr: str) -> set[str]:
    """Top-level packages named in `-X importtime` lines ("import time: self | cum | name")."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    return names


def llmos_light(*argv: str, ok: bool = True) -> str:
    """Run `llmos ARGV`, assert it imported neither torch nor triton; return its stdout."""
    r = llmos(*argv, python_flags=("-X", "importtime"))
    modules = imported_modules(r.stderr)
    assert "llmos_jupyter" in modules  # the import listing is really there
    assert not modules & HEAVY, f"`llmos {' '.join(argv)}` imported {modules & HEAVY}"
    if ok:
        errors = [s for s in r.stderr.splitlines() if not s.startswith("import time:")]
        assert r.returncode == 0, errors
    return r.stdout


@pytest.fixture
def run_id(store_home) -> str:
    """A finished run recorded in the store (as a task run records one)."""
    from llmos_jupyter.runtime.services import services

    s = services()
    spec = s.tasks.get("summarize")
    rec = s.runs.create(spec.name, spec.to_dict(), MODEL, None, None, None,
                        [{"text": "a"}, {"text": "b"}], None)
    s.runs.start(rec.id)
    s.runs.record_item(rec.id, 0, "A.", None, "A.", "succeeded", None, 2, 0.1, 5)
    return rec.id


def test_catalog_verbs_do_not_import_torch(store_home, tmp_path):
    assert "usage: llmos" in llmos_light("--help")
    assert "135M" in llmos_light("list")
    llmos_light("show", MODEL)
    llmos_light("ps")
    preset = f"light-{tmp_path.name[-6:]}"
    llmos_light("create", preset, "--from", MODEL, "--system", "Be brief.")
    llmos_light("cp", preset, preset + "-2")
    llmos_light("rm", preset + "-2")
    llmos_light("rm", preset)
    llmos_light("show", "no-such-model", ok=False)


def test_data_verbs_do_not_import_torch(store_home, tmp_path):
    src = tmp_path / "notes.jsonl"
    src.write_text('{"text": "one two"}\n{"text": "three"}\n{"text": "three"}\n')
    name = f"notes-{tmp_path.name[-6:]}"
    llmos_light("data", "--help")
    llmos_light("data", "add", name, str(src))
    assert name in llmos_light("data", "list")
    llmos_light("data", "show", name)
    llmos_light("data", "stats", name)
    llmos_light("data", "prep", name, name + "-clean", "--dedupe")
    llmos_light("data", "export", name, str(tmp_path / "out.csv"))
    llmos_light("data", "rm", name + "-clean")
    llmos_light("data", "rm", name)


def test_task_verbs_do_not_import_torch(store_home, tmp_path):
    spec = tmp_path / "shout.yaml"
    spec.write_text("description: shout\ninputs: [text]\nprompt: 'Shout: {text}'\n")
    name = f"shout-{tmp_path.name[-6:]}"
    assert "summarize" in llmos_light("task", "list")
    llmos_light("task", "show", "summarize")
    llmos_light("task", "add", name, "-f", str(spec))
    llmos_light("task", "rm", name)


def test_run_record_verbs_do_not_import_torch(store_home, run_id, tmp_path):
    assert run_id in llmos_light("runs", "list")
    llmos_light("runs", "list", "--json")
    assert "A." in llmos_light("runs", "show", run_id)
    llmos_light("runs", "export", run_id, str(tmp_path / "run.jsonl"))
    llmos_light("runs", "cancel", run_id)
