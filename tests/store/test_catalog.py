"""The SQLite catalog: layout, WAL, migrations, concurrent opening."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

import pytest

from llmos_jupyter.errors import LLMOSError
from llmos_jupyter.store.catalog import MIGRATIONS, SCHEMA_VERSION, Catalog
from llmos_jupyter.store.home import HomeLayout, llmos_home
from tests.store import workers


def test_llmos_home_reads_env_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMOS_HOME", str(tmp_path / "a"))
    assert llmos_home() == tmp_path / "a"
    monkeypatch.setenv("LLMOS_HOME", str(tmp_path / "b"))
    assert llmos_home() == tmp_path / "b"
    monkeypatch.delenv("LLMOS_HOME")
    assert llmos_home() == Path.home() / ".llmos"


def test_open_creates_layout_wal_and_schema(llmos_home):
    cat = Catalog()
    assert cat.home == llmos_home
    for sub in ("models", "datasets", "shards", "runs", "tmp"):
        assert (llmos_home / sub).is_dir()
    assert cat.query_one("PRAGMA journal_mode")[0] == "wal"
    assert cat.query_one("PRAGMA foreign_keys")[0] == 1
    assert cat.query_one("PRAGMA busy_timeout")[0] >= 5000
    assert cat.schema_version == SCHEMA_VERSION
    tables = {r[0] for r in cat.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"models", "datasets", "tasks", "runs", "run_items", "tokenized"} <= tables
    assert cat.integrity_check() == "ok"


def test_open_twice_is_idempotent(llmos_home):
    Catalog().close()
    cat = Catalog()
    assert cat.schema_version == SCHEMA_VERSION
    assert cat.integrity_check() == "ok"


def test_older_store_migrates_and_keeps_rows(tmp_path):
    home = tmp_path / "old"
    HomeLayout(home).ensure()
    # Build a version-1 store by hand, as the first release would have left it.
    conn = sqlite3.connect(home / "catalog.db", isolation_level=None)
    for stmt in MIGRATIONS[0]:
        conn.execute(stmt)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (id, task, spec_json, model, status, total, created_at)"
        " VALUES ('r1', 't', '{}', 'm', 'queued', 0, '2026-01-01T00:00:00+00:00')"
    )
    conn.close()
    cat = Catalog(home)
    assert cat.schema_version == SCHEMA_VERSION
    row = cat.query_one("SELECT id, cancel_requested FROM runs")
    assert tuple(row) == ("r1", 0)  # column added by migration 2, default applied


def test_newer_store_is_refused(tmp_path):
    cat = Catalog(tmp_path / "h")
    cat.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    cat.close()
    with pytest.raises(LLMOSError, match="newer"):
        Catalog(tmp_path / "h")


def test_transaction_rolls_back_on_error(llmos_home):
    cat = Catalog()
    with pytest.raises(RuntimeError):
        with cat.transaction() as conn:
            conn.execute(
                "INSERT INTO tasks (name, spec, created_at, updated_at) VALUES ('x', 'y', '', '')"
            )
            raise RuntimeError("boom")
    assert cat.query("SELECT * FROM tasks") == []


def test_two_processes_open_a_fresh_store_at_once(tmp_path):
    home, barrier = tmp_path / "fresh", tmp_path / "go"
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = [pool.apply_async(workers.open_catalog, (str(home), str(barrier)))
                   for _ in range(3)]
        workers.release(barrier, 3)
        versions = [r.get(timeout=60) for r in results]
    assert versions == [SCHEMA_VERSION] * 3
    assert Catalog(home).integrity_check() == "ok"


def test_store_bundle_opens_everything(llmos_home):
    from llmos_jupyter.store import Store

    store = Store()
    assert store.home == llmos_home
    assert store.models.list() == [] and store.datasets.list() == [] and store.runs.list() == []
    assert "summarize" in [t.name for t in store.tasks.list()]
