"""The SQLite catalog: what models, datasets, tasks and runs exist, shared by every process.

The notebook kernel, the Jupyter server and CLI processes open the same `catalog.db`.
Why it is set up the way it is:

- WAL journal: readers never block the one writer, so a notebook polling run progress
  does not stall the executor recording results.
- Writes go through `transaction()`, which starts with BEGIN IMMEDIATE: the write lock is
  taken up front, so concurrent writers queue on `busy_timeout` instead of failing with
  "database is locked" when a deferred read transaction tries to upgrade.
- One connection per thread (and per process: a forked child opens its own), because a
  sqlite3 connection must not be shared across threads or forks.
- The schema version lives in `PRAGMA user_version`; MIGRATIONS is an ordered list and
  the pending ones run inside one IMMEDIATE transaction that re-reads the version, so two
  processes opening a fresh store at the same moment apply each migration exactly once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import LLMOSError
from llmos_jupyter.store.home import HomeLayout, llmos_home

BUSY_TIMEOUT_S = 10.0

# Each entry moves the schema from version i to i + 1. Never edit a released entry:
# append a new one. Statements run one by one inside a single transaction.
MIGRATIONS: list[Sequence[str]] = [
    # 1: the initial schema.
    [
        """CREATE TABLE models (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('model', 'preset')),
            base TEXT REFERENCES models(name),      -- presets: the real model they run
            path TEXT,                              -- relative to LLMOS_HOME; NULL for presets
            format TEXT, arch TEXT, params INTEGER, quantization TEXT,
            context_length INTEGER, size_bytes INTEGER, sha256 TEXT,
            source TEXT, license TEXT,
            system TEXT,                            -- preset system prompt
            default_params TEXT,                    -- JSON: preset sampling parameters
            tokenizer TEXT,                         -- JSON summary: kind, vocab size, bos/eos
            chat_template TEXT,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE datasets (
            name TEXT PRIMARY KEY,
            path TEXT NOT NULL,                     -- snapshot file, relative to LLMOS_HOME
            format TEXT NOT NULL, rows INTEGER NOT NULL,
            columns TEXT NOT NULL,                  -- JSON list of column names
            sha256 TEXT NOT NULL,                   -- of the canonical snapshot
            source TEXT,                            -- where the rows came from
            stats TEXT,                             -- JSON
            parent TEXT,                            -- dataset this was prepared from
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE tasks (
            name TEXT PRIMARY KEY,
            spec TEXT NOT NULL,                     -- YAML as given (after validation)
            builtin INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,                    -- short, time-sortable
            task TEXT NOT NULL, spec_json TEXT NOT NULL, model TEXT NOT NULL,
            inputs_json TEXT, dataset TEXT, mapping_json TEXT,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
            total INTEGER NOT NULL DEFAULT 0, done INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            error TEXT, pid INTEGER, host TEXT, heartbeat_at TEXT,
            created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            params_json TEXT
        )""",
        """CREATE TABLE run_items (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            inputs_json TEXT NOT NULL,
            output TEXT, output_json TEXT, raw_text TEXT,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'succeeded', 'failed')),
            error TEXT, tokens INTEGER, seconds REAL,
            PRIMARY KEY (run_id, idx)
        )""",
        "CREATE INDEX runs_status ON runs(status)",
    ],
    # 2: cancellation requests, prompt-token accounting per item, and the database-level
    # guarantee that a recorded item result is never overwritten.
    [
        "ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE run_items ADD COLUMN prompt_tokens INTEGER",
        "ALTER TABLE run_items ADD COLUMN finished_at TEXT",
        """CREATE TRIGGER run_items_result_once BEFORE UPDATE ON run_items
           WHEN OLD.status != 'pending'
           BEGIN SELECT RAISE(ABORT, 'run item already has a result'); END""",
    ],
    # 3: token shards written from datasets (one row per dataset x model).
    [
        """CREATE TABLE tokenized (
            dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
            model TEXT NOT NULL,
            path TEXT NOT NULL,                     -- shard file/dir, relative to LLMOS_HOME
            stats TEXT,                             -- JSON from shards.py
            created_at TEXT NOT NULL,
            PRIMARY KEY (dataset, model)
        )""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)


def utc_now() -> str:
    """Current time as UTC ISO 8601 with milliseconds, e.g. 2026-11-29T03:40:00.123+00:00."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(s: str) -> datetime:
    """Inverse of `utc_now`."""
    return datetime.fromisoformat(s)


class Catalog:
    """The SQLite catalog of one LLMOS_HOME.

    `Catalog()` opens the store at `llmos_home()`; `Catalog(path)` opens another. Opening
    creates the directory layout and applies pending migrations. Reads use `query` /
    `query_one`; every write goes through `with catalog.transaction() as conn:`.
    """

    def __init__(self, home: Path | str | None = None):
        self.home = Path(home) if home is not None else llmos_home()
        self.layout = HomeLayout(self.home).ensure()
        self.path = self.layout.catalog_db
        self._local = threading.local()
        self._migrate()

    # -- connections -----------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use; reopened after a fork)."""
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            local.conn = self._connect()
            local.pid = os.getpid()
        return local.conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (see transaction()).
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        # Switching to WAL needs an exclusive lock and may report BUSY without waiting on
        # the busy handler when several processes create the file at once: retry.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # NORMAL is durable against process crashes in WAL mode (only power loss can drop
        # the last commits), and much faster than FULL for many small writes.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- transactions and queries ----------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE); commits on success, rolls back on error.

        Nested use joins the outer transaction, so store methods can call each other.
        """
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        """Run a read query and return all rows."""
        return self.conn.execute(sql, params).fetchall()

    def query_one(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> sqlite3.Row | None:
        """Run a read query and return the first row, or None."""
        return self.conn.execute(sql, params).fetchone()

    # -- schema ----------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The schema version stored in the file (PRAGMA user_version)."""
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self, target: int = SCHEMA_VERSION) -> None:
        if self.schema_version >= target:
            self._check_not_newer()
            return
        with self.transaction() as conn:
            # Re-read under the write lock: another process may have migrated meanwhile.
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for version in range(current, target):
                for stmt in MIGRATIONS[version]:
                    conn.execute(stmt)
            if current < target:
                # user_version is part of the database header, so this is transactional.
                conn.execute(f"PRAGMA user_version = {int(target)}")
        self._check_not_newer()

    def _check_not_newer(self) -> None:
        if self.schema_version > SCHEMA_VERSION:
            raise LLMOSError(
                f"the store at {self.home} has schema version {self.schema_version}, newer than "
                f"this llmos understands ({SCHEMA_VERSION}); upgrade llmos-jupyter"
            )

    def integrity_check(self) -> str:
        """SQLite's own consistency check: 'ok' when the file is sound."""
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]
