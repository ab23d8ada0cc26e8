"""Runs: one execution of a task over inputs or a dataset, and its per-item results.

Lifecycle: `create` (queued, every item's inputs recorded up front so a resumed run knows
what is left) -> `start` (running, with the executing pid + host) -> `record_item` per
item, `heartbeat` now and then -> `finish` (succeeded | failed | cancelled). A run whose
executor died is found by `mark_interrupted` and becomes 'interrupted'; `start` on it
again resumes with `pending_items`.

Exactly-once results: every item is a row of run_items (PRIMARY KEY (run_id, idx)) created
as 'pending'. `record_item` is a conditional UPDATE ... WHERE status = 'pending' and a
trigger aborts any update of an item that already has a result, so a second result for
the same item is REJECTED (ItemAlreadyRecordedError), never silently overwritten. The
item update and the run's done/failed/token counters change in one transaction.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmos_jupyter.core.config import check_count
from llmos_jupyter.errors import LLMOSError, NotFoundError
from llmos_jupyter.store.catalog import Catalog, parse_time, utc_now
from llmos_jupyter.store.run_records import (
    FINAL_STATUSES,
    ITEM_STATUSES,
    RUN_STATUSES,
    STALE_HEARTBEAT_S,
    ItemAlreadyRecordedError,
    RunItem,
    RunRecord,
    dump_json,
    new_run_id,
    pid_alive,
    write_items_csv,
)

# Items inserted per transaction when a run is created: ~10 ms of writing each, so a run
# over a million rows never holds the write lock near the 10 s busy timeout of others.
ITEM_CHUNK = 2000
# The error a run carries while `create` is still inserting its items.
CREATING = "being created: its items are still being recorded"


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _encode_item(i: int, item: Any) -> str:
    if not isinstance(item, dict):
        raise LLMOSError(f"run item {i}: inputs must be a dict, not {type(item).__name__}")
    try:
        return json.dumps(item, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise LLMOSError(f"run item {i}: inputs cannot be stored as JSON ({exc})") from None


class RunStore:
    """Runs and run items in the catalog. Opening one marks dead 'running' runs interrupted."""

    def __init__(self, catalog: Catalog | None = None, stale_after_s: float = STALE_HEARTBEAT_S):
        self.catalog = catalog if catalog is not None else Catalog()
        self.stale_after_s = stale_after_s
        self.mark_interrupted()

    # -- lifecycle -------------------------------------------------------------------------

    def create(
        self,
        task: str,
        spec_dict: dict[str, Any],
        model: str,
        inputs: dict[str, Any] | None,
        dataset: str | None,
        mapping: dict[str, Any] | None,
        items: Iterable[dict[str, Any]],
        params: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Record a queued run and the inputs of each of its items (idx = position).

        `items` may be a generator (rows streamed from a dataset): they are inserted
        ITEM_CHUNK at a time, each chunk its own short transaction, so other processes
        are never kept from writing for long. Until the last chunk the run is marked as
        being created (its error says so, and `start` refuses it); a bad item removes the
        run and every item inserted so far; a process killed meanwhile leaves a run that
        `mark_interrupted` removes once its pid is gone. Raises LLMOSError naming a bad
        item.
        """
        now, run_id = utc_now(), None
        with self.catalog.transaction() as conn:
            for _ in range(5):  # ids collide only within one millisecond; retry
                run_id = new_run_id()
                try:
                    conn.execute(
                        "INSERT INTO runs (id, task, spec_json, model, inputs_json, dataset,"
                        " mapping_json, status, total, created_at, params_json, error, pid,"
                        " host) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?)",
                        (run_id, task, dump_json(spec_dict), model, dump_json(inputs), dataset,
                         dump_json(mapping), now, dump_json(params or {}), CREATING,
                         os.getpid(), socket.gethostname()),
                    )
                    break
                except sqlite3.IntegrityError:
                    continue
            else:
                raise LLMOSError("could not allocate a run id; try again")
        total = 0
        try:
            for chunk in _chunks(items, ITEM_CHUNK):
                rows = [(run_id, total + i, _encode_item(total + i, it))
                        for i, it in enumerate(chunk)]
                with self.catalog.transaction() as conn:
                    conn.executemany(
                        "INSERT INTO run_items (run_id, idx, inputs_json) VALUES (?, ?, ?)", rows)
                    conn.execute("UPDATE runs SET total = ? WHERE id = ?",
                                 (total + len(rows), run_id))
                total += len(rows)
            with self.catalog.transaction() as conn:
                conn.execute("UPDATE runs SET error = NULL, pid = NULL, host = NULL"
                             " WHERE id = ?", (run_id,))
        except BaseException:
            with self.catalog.transaction() as conn:  # run_items go with it (ON DELETE CASCADE)
                conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            raise
        return self.get(run_id)

    def start(self, run_id: str, pid: int | None = None) -> RunRecord:
        """Mark a queued (or interrupted, to resume) run as running in process `pid`."""
        rec = self.get(run_id)
        if rec.status == "queued" and rec.error == CREATING:
            raise LLMOSError(f"run {rec.id} is still being created (its items are being "
                             "recorded); wait for its creator to start it")
        now, pid = utc_now(), pid if pid is not None else os.getpid()
        with self.catalog.transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = 'running', pid = ?, host = ?, heartbeat_at = ?,"
                " started_at = COALESCE(started_at, ?), error = NULL"
                " WHERE id = ? AND status IN ('queued', 'interrupted')",
                (pid, socket.gethostname(), now, now, rec.id),
            )
            if cur.rowcount == 0:
                status = self.get(rec.id).status
                raise LLMOSError(f"run {rec.id} is {status}; only queued or interrupted runs start")
        return self.get(rec.id)

    def heartbeat(self, run_id: str) -> None:
        """Tell other processes the executor of this run is alive."""
        with self.catalog.transaction() as conn:
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (utc_now(), run_id))

    def record_item(
        self,
        run_id: str,
        idx: int,
        output: str | None,
        output_json: Any = None,
        raw_text: str | None = None,
        status: str = "succeeded",
        error: str | None = None,
        tokens: int | None = None,
        seconds: float | None = None,
        prompt_tokens: int | None = None,
    ) -> None:
        """Store the result of item `idx` exactly once.

        Raises ItemAlreadyRecordedError if it already has one, NotFoundError if the run or
        item does not exist, LLMOSError for a bad status.
        """
        if status not in ITEM_STATUSES:
            raise LLMOSError(f"item status must be one of {ITEM_STATUSES}, not {status!r}")
        failed = int(status == "failed")
        with self.catalog.transaction() as conn:
            cur = conn.execute(
                "UPDATE run_items SET output = ?, output_json = ?, raw_text = ?, status = ?,"
                " error = ?, tokens = ?, prompt_tokens = ?, seconds = ?, finished_at = ?"
                " WHERE run_id = ? AND idx = ? AND status = 'pending'",
                (output, dump_json(output_json), raw_text, status, error, tokens, prompt_tokens,
                 seconds, utc_now(), run_id, idx),
            )
            if cur.rowcount == 0:
                row = conn.execute(
                    "SELECT status FROM run_items WHERE run_id = ? AND idx = ?", (run_id, idx)
                ).fetchone()
                if row is None:
                    raise NotFoundError("run item", f"{run_id}[{idx}]")
                raise ItemAlreadyRecordedError(
                    f"item {idx} of run {run_id} already has a result ({row['status']})"
                )
            conn.execute(
                "UPDATE runs SET done = done + 1, failed = failed + ?,"
                " completion_tokens = completion_tokens + ?, prompt_tokens = prompt_tokens + ?,"
                " heartbeat_at = ? WHERE id = ?",
                (failed, tokens or 0, prompt_tokens or 0, utc_now(), run_id),
            )

    def set_progress(self, run_id: str, done: int, total: int | None = None) -> None:
        """Set a run's done (and total) counts directly: training runs count optimizer
        steps, not items. Also a heartbeat."""
        with self.catalog.transaction() as conn:
            conn.execute(
                "UPDATE runs SET done = ?, total = COALESCE(?, total), heartbeat_at = ?"
                " WHERE id = ?",
                (int(done), total, utc_now(), run_id),
            )

    def mark_stopped(self, run_id: str, reason: str) -> RunRecord:
        """A running run stopped on purpose but resumable (Ctrl-C): 'interrupted'."""
        with self.catalog.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = 'interrupted', error = ? WHERE id = ?"
                " AND status = 'running'",
                (reason, run_id),
            )
        return self.get(run_id)

    def pending_items(self, run_id: str) -> list[tuple[int, dict[str, Any]]]:
        """(idx, inputs) of the items without a result, in order."""
        rows = self.catalog.query(
            "SELECT idx, inputs_json FROM run_items WHERE run_id = ? AND status = 'pending'"
            " ORDER BY idx",
            (self.get(run_id).id,),
        )
        return [(r["idx"], json.loads(r["inputs_json"])) for r in rows]

    def finish(self, run_id: str, status: str, error: str | None = None) -> RunRecord:
        """End a run: status is succeeded, failed or cancelled."""
        if status not in FINAL_STATUSES:
            raise LLMOSError(f"a run finishes as one of {FINAL_STATUSES}, not {status!r}")
        rec = self.get(run_id)
        with self.catalog.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                (status, error, utc_now(), rec.id),
            )
        return self.get(rec.id)

    def cancel(self, run_id: str) -> RunRecord:
        """Ask for a run to stop.

        A queued or interrupted run (no live executor) becomes 'cancelled' at once; a running
        one gets cancel_requested, which its executor polls (`is_cancel_requested`) before
        finishing it as 'cancelled'. Cancelling a finished run changes nothing.
        """
        rec = self.get(run_id)
        with self.catalog.transaction() as conn:
            conn.execute(
                "UPDATE runs SET status = 'cancelled', finished_at = ?, cancel_requested = 1"
                " WHERE id = ? AND status IN ('queued', 'interrupted')",
                (utc_now(), rec.id),
            )
            conn.execute(
                "UPDATE runs SET cancel_requested = 1 WHERE id = ? AND status = 'running'",
                (rec.id,),
            )
        return self.get(rec.id)

    def is_cancel_requested(self, run_id: str) -> bool:
        row = self.catalog.query_one("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise NotFoundError("run", run_id, self._recent_ids())
        return bool(row[0])

    # -- reading ---------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        """The run with this id or unique id prefix (as git does for commits)."""
        if not run_id:
            raise NotFoundError("run", run_id, self._recent_ids())
        escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.catalog.query(
            "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 6",
            (escaped + "%",),
        )
        exact = [r for r in rows if r["id"] == run_id]
        if exact:
            rows = exact
        if not rows:
            raise NotFoundError("run", run_id, self._recent_ids())
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise LLMOSError(f"run id prefix {run_id!r} is ambiguous: {ids}; give more characters")
        row = rows[0]
        # Someone polling a run whose executor died must see 'interrupted', not 'running'.
        if row["status"] == "running" and self._is_gone(row) and self._mark(row["id"], row["pid"]):
            row = self.catalog.query_one("SELECT * FROM runs WHERE id = ?", (row["id"],))
        return RunRecord.from_row(row)

    def list(self, limit: int | None = 50, status: str | None = None) -> list[RunRecord]:
        """Newest first (by creation); optionally only runs with `status`."""
        if status is not None and status not in RUN_STATUSES:
            raise LLMOSError(f"unknown run status {status!r}; one of {RUN_STATUSES}")
        _check_page(limit=limit)
        self.mark_interrupted()
        sql, args = "SELECT * FROM runs", []
        if status:
            sql, args = sql + " WHERE status = ?", [status]
        sql += " ORDER BY rowid DESC"  # insertion order: exact even within one millisecond
        if limit is not None:
            sql, args = sql + " LIMIT ?", [*args, int(limit)]
        return [RunRecord.from_row(r) for r in self.catalog.query(sql, args)]

    def items(self, run_id: str, offset: int = 0, limit: int | None = None) -> list[RunItem]:
        """The run's items in order, pending ones included: all, or a page of `limit`
        items from `offset`."""
        _check_page(limit=limit, offset=offset)
        sql, args = "SELECT * FROM run_items WHERE run_id = ? ORDER BY idx", [self.get(run_id).id]
        if limit is not None or offset:
            sql, args = sql + " LIMIT ? OFFSET ?", [*args, -1 if limit is None else int(limit),
                                                    int(offset)]
        return [RunItem.from_row(r) for r in self.catalog.query(sql, args)]

    def _recent_ids(self) -> list[str]:
        rows = self.catalog.query("SELECT id FROM runs ORDER BY rowid DESC LIMIT 200")
        return [r[0] for r in rows]

    # -- crash detection -------------------------------------------------------------------

    def mark_interrupted(self) -> list[str]:
        """Mark 'running' runs whose executor is gone as 'interrupted'; return their ids.

        On this host the pid decides (dead or zombie => gone). Elsewhere, or without a pid,
        a heartbeat older than `stale_after_s` does.
        """
        self._drop_abandoned_creations()
        rows = self.catalog.query(
            "SELECT id, pid, host, heartbeat_at, started_at FROM runs WHERE status = 'running'"
        )
        return [r["id"] for r in rows if self._is_gone(r) and self._mark(r["id"], r["pid"])]

    def _drop_abandoned_creations(self) -> None:
        """Delete runs whose creating process died before recording every item."""
        rows = self.catalog.query(
            "SELECT id, pid, host FROM runs WHERE status = 'queued' AND error = ?", (CREATING,))
        for r in rows:
            if r["host"] == socket.gethostname() and r["pid"] is not None \
                    and not pid_alive(r["pid"]):
                with self.catalog.transaction() as conn:
                    conn.execute("DELETE FROM runs WHERE id = ? AND status = 'queued'"
                                 " AND error = ? AND pid = ?", (r["id"], CREATING, r["pid"]))

    def _is_gone(self, row: sqlite3.Row) -> bool:
        """Whether the executor of a 'running' row is dead (see mark_interrupted)."""
        if row["host"] == socket.gethostname() and row["pid"] is not None:
            return not pid_alive(row["pid"])
        beat = row["heartbeat_at"] or row["started_at"]
        if beat is None:
            return True
        age = (datetime.now(timezone.utc) - parse_time(beat)).total_seconds()
        return age > self.stale_after_s

    def _mark(self, run_id: str, pid: int | None) -> bool:
        with self.catalog.transaction() as conn:
            # Re-check under the write lock: it may have finished or been resumed since.
            cur = conn.execute(
                "UPDATE runs SET status = 'interrupted', error = ? WHERE id = ?"
                " AND status = 'running' AND pid IS ?",
                (f"executor (pid {pid}) stopped without finishing the run", run_id, pid),
            )
        return cur.rowcount > 0

    # -- files -----------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        """runs/<id>/ under LLMOS_HOME, for files a run writes (created on first use)."""
        path = self.catalog.layout.runs / self.get(run_id).id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove(self, run_id: str) -> None:
        """Delete a run, its items and its files; LLMOSError while it is queued or running."""
        rec = self.get(run_id)
        if rec.status in ("queued", "running"):
            raise LLMOSError(f"run {rec.id} is {rec.status}; cancel it before removing it")
        with self.catalog.transaction() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (rec.id,))
        self.catalog.layout.discard(self.catalog.layout.runs / rec.id)

    # -- export ----------------------------------------------------------------------------

    def export(self, run_id: str, path: str | Path) -> Path:
        """Write the run's items to `path`: .jsonl (one object per item) or .csv.

        CSV columns: idx, status, each input field, output, output.<field> for structured
        outputs, error, tokens, seconds. Written to a temporary name, then renamed.
        """
        path = Path(path)
        items = self.items(run_id)
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            raise LLMOSError(f"cannot export to {path.name!r}: use a .jsonl or .csv file name")
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        with open(part, "w", encoding="utf-8", newline="") as f:
            if suffix == ".jsonl":
                for it in items:
                    d = {k: v for k, v in it.to_dict().items() if k != "run_id"}
                    f.write(json.dumps(d, ensure_ascii=False) + "\n")
            else:
                write_items_csv(f, items)
        os.replace(part, path)
        return path


def _check_page(**bounds: int | None) -> None:
    """Refuse a negative limit or offset (SQLite reads LIMIT -1 as "no limit")."""
    for name, value in bounds.items():
        if value is not None:
            check_count(name, value, 0)
