"""RunStore: lifecycle, exactly-once items, prefixes, cancellation, crash detection, export."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from llmos_jupyter.errors import LLMOSError, NotFoundError
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.runs import (
    CREATING,
    ITEM_CHUNK,
    ItemAlreadyRecordedError,
    RunStore,
    new_run_id,
)
from tests.store import workers

SPEC = {"name": "summarize", "prompt": "Summarize: {text}"}


def make_run(runs: RunStore, n: int = 3):
    items = [{"text": f"doc {i}"} for i in range(n)]
    return runs.create("summarize", SPEC, "smollm2-135m-instruct", None, "docs",
                       {"text": "body"}, items, {"temperature": 0})


@pytest.fixture
def runs(llmos_home) -> RunStore:
    return RunStore(Catalog())


def test_run_ids_are_short_and_sortable():
    a = new_run_id()
    time.sleep(0.002)
    b = new_run_id()
    assert len(a) == 12 and a < b


def test_lifecycle_and_progress(runs):
    rec = make_run(runs)
    assert rec.status == "queued" and rec.total == 3 and rec.done == 0
    assert rec.mapping == {"text": "body"} and rec.params == {"temperature": 0}
    assert [i for i, _ in runs.pending_items(rec.id)] == [0, 1, 2]
    runs.start(rec.id, os.getpid())
    runs.record_item(rec.id, 0, "sum 0", {"summary": "sum 0"}, "raw", "succeeded",
                     tokens=5, seconds=0.1, prompt_tokens=7)
    runs.record_item(rec.id, 2, None, status="failed", error="too long")
    got = runs.get(rec.id)
    assert (got.status, got.done, got.failed) == ("running", 2, 1)
    assert (got.completion_tokens, got.prompt_tokens) == (5, 7)
    assert runs.pending_items(rec.id) == [(1, {"text": "doc 1"})]
    d = got.to_dict()
    assert d["progress"] == {"fraction": 0.6667, "done": 2, "succeeded": 1, "failed": 1, "total": 3}
    for key in ("id", "status", "task", "model", "created_at"):
        assert key in d
    json.dumps(d)  # JSON-able
    runs.record_item(rec.id, 1, "sum 1")
    fin = runs.finish(rec.id, "succeeded")
    assert fin.status == "succeeded" and fin.finished_at and fin.progress == 1.0
    items = runs.items(rec.id)
    assert [it.status for it in items] == ["succeeded", "succeeded", "failed"]
    assert items[0].output_json == {"summary": "sum 0"} and items[0].raw_text == "raw"


def test_a_negative_page_is_refused_not_read_as_everything(runs):
    rec = make_run(runs)
    # SQLite reads LIMIT -1 as "no limit": the store refuses it instead.
    with pytest.raises(LLMOSError, match="limit must be a non-negative integer, got -1"):
        runs.list(limit=-1)
    with pytest.raises(LLMOSError, match="offset must be a non-negative integer, got -3"):
        runs.items(rec.id, offset=-3)
    assert len(runs.items(rec.id, offset=1, limit=1)) == 1 and runs.list(limit=0) == []


def test_item_cannot_get_two_results(runs):
    rec = make_run(runs)
    runs.record_item(rec.id, 0, "first")
    with pytest.raises(ItemAlreadyRecordedError, match="already has a result"):
        runs.record_item(rec.id, 0, "second")
    # The database itself refuses too, whoever writes to it.
    with pytest.raises(sqlite3.IntegrityError):
        runs.catalog.conn.execute(
            "UPDATE run_items SET output = 'x' WHERE run_id = ? AND idx = 0", (rec.id,))
    with pytest.raises(sqlite3.IntegrityError):
        runs.catalog.conn.execute(
            "INSERT INTO run_items (run_id, idx, inputs_json) VALUES (?, 0, '{}')", (rec.id,))
    assert runs.items(rec.id)[0].output == "first"
    assert runs.get(rec.id).done == 1
    with pytest.raises(NotFoundError):
        runs.record_item(rec.id, 99, "nope")
    with pytest.raises(LLMOSError, match="status"):
        runs.record_item(rec.id, 1, "x", status="done")


def test_get_by_prefix_and_not_found(runs):
    a, b = make_run(runs), make_run(runs)
    assert runs.get(a.id[:10] if a.id[:10] != b.id[:10] else a.id).id == a.id
    with pytest.raises(LLMOSError, match="ambiguous"):
        runs.get(a.id[:3])
    with pytest.raises(NotFoundError):
        runs.get("zzzz")
    with pytest.raises(NotFoundError, match="did you mean"):
        runs.get(a.id[:-1] + ("x" if a.id[-1] != "x" else "y") + "q")


def test_list_newest_first_and_by_status(runs):
    ids = [make_run(runs).id for _ in range(3)]
    runs.start(ids[1])
    assert [r.id for r in runs.list()] == ids[::-1]
    assert [r.id for r in runs.list(status="running")] == [ids[1]]
    assert len(runs.list(limit=2)) == 2
    with pytest.raises(LLMOSError):
        runs.list(status="bogus")


def test_cancel(runs):
    queued = make_run(runs)
    assert runs.cancel(queued.id).status == "cancelled"
    running = make_run(runs)
    runs.start(running.id)
    assert not runs.is_cancel_requested(running.id)
    rec = runs.cancel(running.id)
    assert rec.status == "running" and runs.is_cancel_requested(running.id)
    assert runs.finish(running.id, "cancelled").status == "cancelled"
    assert runs.cancel(running.id).status == "cancelled"  # no-op when final
    with pytest.raises(LLMOSError):
        runs.start(running.id)


def test_killed_executor_is_detected_and_run_resumes(runs, llmos_home):
    rec = make_run(runs)
    code = ("import sys; from tests.store.workers import run_forever; "
            "run_forever(sys.argv[1], sys.argv[2])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(llmos_home), rec.id],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 60
        while runs.get(rec.id).status != "running":
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert runs.mark_interrupted() == []  # alive: left alone
        assert runs.get(rec.id).pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Whoever polls the run sees it interrupted, without reopening the store.
    got = runs.get(rec.id)
    assert got.status == "interrupted" and str(proc.pid) in got.error
    fresh = RunStore(Catalog())
    # Resume: the same items are still pending, and it can run again.
    assert len(fresh.pending_items(rec.id)) == 3
    assert fresh.start(rec.id).status == "running"


def test_stale_heartbeat_from_another_host_is_interrupted(runs):
    rec = make_run(runs)
    runs.start(rec.id, os.getpid())
    with runs.catalog.transaction() as conn:
        conn.execute("UPDATE runs SET host = 'elsewhere', heartbeat_at ="
                     " '2020-01-01T00:00:00.000+00:00' WHERE id = ?", (rec.id,))
    assert runs.mark_interrupted() == [rec.id]
    assert runs.get(rec.id).status == "interrupted"


@pytest.mark.parametrize("overlap", [False, True])
def test_two_processes_record_items_without_loss(runs, llmos_home, tmp_path, overlap):
    """2 processes x 50 items each (disjoint), or both trying all 100 in opposite orders:
    every item ends with exactly one result, and the counters agree."""
    n = 100
    rec = make_run(runs, n)
    barrier = tmp_path / "go"
    if overlap:
        orders = (list(range(n)), list(range(n))[::-1])
    else:
        orders = (list(range(0, n, 2)), list(range(1, n, 2)))
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        jobs = [pool.apply_async(workers.record_items,
                                 (str(llmos_home), rec.id, order, str(barrier)))
                for order in orders]
        workers.release(barrier, 2)
        counts = [j.get(timeout=120) for j in jobs]
    assert sum(counts) == n
    if not overlap:
        assert counts == [n // 2, n // 2]
    got = runs.get(rec.id)
    assert got.done == n and got.completion_tokens == n
    assert runs.pending_items(rec.id) == []
    assert runs.catalog.integrity_check() == "ok"
    assert runs.catalog.query_one(
        "SELECT COUNT(*) FROM run_items WHERE run_id = ? AND status = 'succeeded'", (rec.id,)
    )[0] == n


def test_export_jsonl_and_csv(runs, tmp_path):
    rec = make_run(runs, 2)
    runs.record_item(rec.id, 0, "s0", {"summary": "s0", "score": 3})
    runs.record_item(rec.id, 1, None, status="failed", error="bad, \"quoted\"")
    lines = runs.export(rec.id, tmp_path / "out.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["inputs"] == {"text": "doc 0"} and first["output_json"]["score"] == 3
    assert json.loads(lines[1])["error"] == "bad, \"quoted\""
    with open(runs.export(rec.id, tmp_path / "out.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["text"] == "doc 0" and rows[0]["output.summary"] == "s0"
    assert rows[1]["status"] == "failed" and rows[1]["error"] == "bad, \"quoted\""
    with pytest.raises(LLMOSError, match="jsonl"):
        runs.export(rec.id, tmp_path / "out.xlsx")


def test_bad_items_run_dir_and_remove(runs, llmos_home):
    with pytest.raises(LLMOSError, match="item 1"):
        runs.create("t", {}, "m", None, None, None, [{"a": 1}, ["not", "a", "dict"]])
    with pytest.raises(LLMOSError, match="item 0"):
        runs.create("t", {}, "m", None, None, None, [{"a": object()}])
    assert runs.list() == []
    rec = make_run(runs)
    (runs.run_dir(rec.id) / "log.txt").write_text("x")
    with pytest.raises(LLMOSError, match="cancel it"):
        runs.remove(rec.id)
    runs.cancel(rec.id)
    runs.remove(rec.id)
    assert runs.list() == [] and not (llmos_home / "runs" / rec.id).exists()
    assert runs.catalog.query("SELECT * FROM run_items") == []


def test_threads_share_one_catalog(runs):
    import threading

    rec = make_run(runs, 40)
    errors = []

    def work(k):
        try:
            for i in range(k, 40, 4):
                runs.record_item(rec.id, i, f"t{k}")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and runs.get(rec.id).done == 40


def count_transactions(catalog: Catalog) -> list[str]:
    """Every BEGIN this thread's connection issues from now on (SQLite's own trace)."""
    seen: list[str] = []
    catalog.conn.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("BEGIN")
                                    else None)
    return seen


def test_large_run_inserts_items_in_chunks(runs):
    # Creating a run over 872k rows used to hold the write lock 5.7 s (busy timeout 10 s).
    n = 2 * ITEM_CHUNK + 5
    begins = count_transactions(runs.catalog)
    rec = runs.create("summarize", SPEC, "m", None, "docs", None,
                      ({"text": f"doc {i}"} for i in range(n)))  # a stream, never a list
    runs.catalog.conn.set_trace_callback(None)
    assert rec.total == n and rec.status == "queued" and rec.error is None
    # The run row, three chunks of items, then the "created" mark: each its own transaction.
    assert len(begins) == 1 + 3 + 1
    assert len(runs.pending_items(rec.id)) == n
    assert runs.start(rec.id).status == "running"


def test_bad_item_midway_leaves_no_run_and_no_items(runs):
    def items():
        for i in range(ITEM_CHUNK + 10):
            yield {"text": f"doc {i}"}
        yield {"text": object()}

    with pytest.raises(LLMOSError, match=f"run item {ITEM_CHUNK + 10}: inputs cannot be stored"):
        runs.create("summarize", SPEC, "m", None, "docs", None, items())
    assert runs.list() == []
    assert runs.catalog.query_one("SELECT COUNT(*) FROM run_items")[0] == 0


def test_run_of_a_killed_creator_is_removed(runs, llmos_home):
    code = ("import sys; from tests.store.workers import create_run_forever; "
            "create_run_forever(sys.argv[1], 2)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(llmos_home)],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 60
        while not (rows := runs.list()) or rows[0].total < 2 * ITEM_CHUNK:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        creating = rows[0]
        assert creating.error == CREATING and creating.status == "queued"
        with pytest.raises(LLMOSError, match="still being created"):
            runs.start(creating.id)
        assert runs.mark_interrupted() == [] and len(runs.list()) == 1  # alive: left alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    fresh = RunStore(Catalog())  # opening the store clears what the dead creator left
    assert fresh.list() == []
    assert fresh.catalog.query_one("SELECT COUNT(*) FROM run_items")[0] == 0
