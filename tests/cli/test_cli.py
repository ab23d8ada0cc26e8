"""Every `llmos` verb against a real store (in-process main() and real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from llmos_jupyter.cli import main
from llmos_jupyter.runtime.task_runs import BATCH_SIZE

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


def llmos_json(capsys, *argv: str):
    """Run `llmos ARGV --json` in-process and return the parsed output."""
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def llmos_fails(capsys, *argv: str) -> str:
    capsys.readouterr()
    rc = main(list(argv))
    assert rc != 0
    return capsys.readouterr().err


def test_model_verbs(store_home, tmp_path, capsys):
    assert llmos_json(capsys, "pull", MODEL)["name"] == MODEL  # already pulled: a no-op
    assert isinstance(llmos_json(capsys, "ps"), list)
    rows = llmos_json(capsys, "list")
    assert {"name", "kind", "arch", "quantization", "created_at"} <= set(rows[0])
    assert MODEL in [r["name"] for r in rows]
    info = llmos_json(capsys, "show", MODEL)
    for key in ("arch", "params", "quantization", "context_length", "size_on_disk", "tokenizer",
                "chat_template", "source", "sha256"):
        assert key in info, key
    preset = f"pirate-{tmp_path.name[-6:]}"
    llmos_json(capsys, "create", preset, "--from", MODEL, "--system", "Talk like a pirate.",
               "--param", "temperature=0", "--param", "max_tokens=8")
    assert llmos_json(capsys, "show", preset)["system"] == "Talk like a pirate."
    assert main(["cp", preset, preset + "-2"]) == 0
    assert main(["rm", preset + "-2"]) == 0
    assert "unknown model" in llmos_fails(capsys, "show", "nope-model")
    assert "did you mean" in llmos_fails(capsys, "show", "smollm2-135m-instrct")
    assert main(["rm", preset]) == 0


def test_import_verb(store_home, tmp_path, capsys):
    from tests.checkpoint_factory import write_tiny_gguf

    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    name = f"tiny-{tmp_path.name[-6:]}"
    rec = llmos_json(capsys, "import", name, str(path))
    assert rec["name"] == name and rec["arch"] == "llama"
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(path.read_bytes()[:1000])
    assert "bad.gguf" in llmos_fails(capsys, "import", name + "-bad", str(bad))
    assert name + "-bad" not in [r["name"] for r in llmos_json(capsys, "list")]
    assert main(["rm", name]) == 0


def test_data_verbs(store_home, tmp_path, capsys):
    src = tmp_path / "notes.csv"
    src.write_text("title,body\na,first note here\nb,second note here\nb,second note here\n")
    name = f"notes-{tmp_path.name[-6:]}"
    rec = llmos_json(capsys, "data", "add", name, str(src))
    assert rec["rows"] == 3
    assert name in [d["name"] for d in llmos_json(capsys, "data", "list")]
    shown = llmos_json(capsys, "data", "show", name, "--head", "2")
    assert len(shown["head"]) == 2
    stats = llmos_json(capsys, "data", "stats", name)
    assert stats["rows"] == 3
    llmos_json(capsys, "data", "prep", name, name + "-clean", "--dedupe", "--text-field", "body")
    assert llmos_json(capsys, "data", "show", name + "-clean")["rows"] == 2
    out = tmp_path / "out.jsonl"
    assert main(["data", "export", name + "-clean", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2
    tok = llmos_json(capsys, "data", "tokenize", name, "--model", MODEL, "--text-field", "body")
    assert tok["path"].endswith(".tok")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"a": 1}\n{"a": 2,\n')
    assert "line 2" in llmos_fails(capsys, "data", "add", name + "-broken", str(broken))
    assert main(["data", "rm", name + "-clean"]) == 0


def test_task_and_runs_verbs(store_home, tmp_path, capsys):
    names = [t["name"] for t in llmos_json(capsys, "task", "list")]
    assert {"generate", "summarize", "translate", "classify", "extract", "qa"} <= set(names)
    spec = tmp_path / "echo.yaml"
    spec.write_text("inputs: [text]\nprompt: 'Say: {text}'\nparams: {max_tokens: 6}\n")
    task = f"echo-{tmp_path.name[-6:]}"
    llmos_json(capsys, "task", "add", task, "-f", str(spec))
    assert llmos_json(capsys, "task", "show", task)["inputs"] == ["text"]
    res = llmos_json(capsys, "task", "run", task, "--input", "text=hello")
    assert res["status"] == "succeeded" and res["output"]
    runs = llmos_json(capsys, "runs", "list", "--limit", "5")
    assert {"id", "status", "task", "model", "created_at", "progress"} <= set(runs[0])
    run_id = res["run_id"]
    assert llmos_json(capsys, "runs", "show", run_id[:8])["id"] == run_id
    out = tmp_path / "run.csv"
    assert main(["runs", "export", run_id, str(out)]) == 0
    assert "output" in out.read_text().splitlines()[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: [text]\nprompt: 'Say {txt}'\n")
    assert "line 2" in llmos_fails(capsys, "task", "add", task + "-bad", "-f", str(bad))
    bad.write_bytes("prompt: 'Say {text}'\n".encode("utf-16"))  # a BOM, then NULs
    assert "the YAML is not UTF-8 text (byte 0)" in llmos_fails(capsys, "task", "add",
                                                                task + "-bad", "-f", str(bad))
    assert main(["task", "rm", task]) == 0


def _cli(*argv: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llmos_jupyter.cli", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "llmos_jupyter.cli", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for verb in ("pull", "list", "show", "rm", "run", "data", "task", "runs", "ps", "create"):
        assert verb in out


def test_sigkill_mid_run_then_resume_gives_each_item_one_result(store_home, tmp_path, capsys):
    # Several batches (task_runs.BATCH_SIZE each), so the kill lands after the first is
    # recorded and well before the last.
    n = 3 * BATCH_SIZE + 4
    data = tmp_path / "many.jsonl"
    data.write_text("".join(json.dumps({"text": f"Item {i}: the number {i} is nice."}) + "\n"
                            for i in range(n)))
    name = f"many-{tmp_path.name[-6:]}"
    assert main(["data", "add", name, str(data)]) == 0
    proc = _cli("task", "run", "summarize", "--data", name, "--max-tokens", "8", "--json",
                env={**os.environ, "LLMOS_HOME": str(store_home)})
    db = sqlite3.connect(store_home / "catalog.db", timeout=30)
    deadline = time.time() + 600
    run_id, done = None, 0
    while time.time() < deadline:
        row = db.execute("SELECT id, done FROM runs WHERE dataset = ? ORDER BY created_at DESC",
                         (name,)).fetchone()
        if row and row[1] > 0:
            run_id, done = row
            break
        time.sleep(0.2)
    assert run_id, proc.communicate()[1]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < done < n
    listed = {r["id"]: r for r in llmos_json(capsys, "runs", "list", "--limit", "50")}
    assert listed[run_id]["status"] == "interrupted"
    resumed = llmos_json(capsys, "runs", "resume", run_id)
    assert resumed["status"] == "succeeded"
    rows = db.execute("SELECT idx, status, output FROM run_items WHERE run_id = ? ORDER BY idx",
                      (run_id,)).fetchall()
    assert [r[0] for r in rows] == list(range(n))
    assert all(r[1] == "succeeded" and r[2] for r in rows)
    assert resumed["progress"]["done"] == n
