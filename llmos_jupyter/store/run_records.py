"""Records of runs and run items, run ids, and the small helpers RunStore builds on.

Kept apart from runs.py so that module stays about the lifecycle and its transactions.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import LLMOSError

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
ITEM_STATUSES = ("succeeded", "failed")
# A run on another host (or with no pid) counts as dead once its heartbeat is this old.
STALE_HEARTBEAT_S = 300.0
_B32 = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: sortable, no i/l/o/u


class ItemAlreadyRecordedError(LLMOSError):
    """record_item was called for an item that already has a result."""


def new_run_id() -> str:
    """12 characters: 9 of milliseconds since 1970 (base32, sorts by time) + 3 random."""
    ms, out = int(time.time() * 1000), []
    for _ in range(9):
        ms, r = divmod(ms, 32)
        out.append(_B32[r])
    return "".join(reversed(out)) + "".join(secrets.choice(_B32) for _ in range(3))


def dump_json(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, ensure_ascii=False, sort_keys=True)


def load_json(s: str | None) -> Any:
    return None if s is None else json.loads(s)


@dataclass
class RunRecord:
    """One row of the runs table, JSON fields decoded."""

    id: str
    task: str
    spec: dict[str, Any]
    model: str
    inputs: dict[str, Any] | None
    dataset: str | None
    mapping: dict[str, Any] | None
    status: str
    total: int
    done: int
    failed: int
    error: str | None
    pid: int | None
    host: str | None
    heartbeat_at: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    prompt_tokens: int
    completion_tokens: int
    params: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False

    @property
    def progress(self) -> float:
        """Fraction of items with a result (succeeded or failed), 0..1."""
        return self.done / self.total if self.total else (1.0 if self.is_final else 0.0)

    @property
    def kind(self) -> str:
        """'train' for a training run (task "train"), else 'task'."""
        return "train" if self.task == "train" else "task"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        return cls(
            id=row["id"], task=row["task"], spec=load_json(row["spec_json"]) or {},
            model=row["model"], inputs=load_json(row["inputs_json"]), dataset=row["dataset"],
            mapping=load_json(row["mapping_json"]), status=row["status"], total=row["total"],
            done=row["done"], failed=row["failed"], error=row["error"], pid=row["pid"],
            host=row["host"], heartbeat_at=row["heartbeat_at"], created_at=row["created_at"],
            started_at=row["started_at"], finished_at=row["finished_at"],
            prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
            params=load_json(row["params_json"]) or {},
            cancel_requested=bool(row["cancel_requested"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Stable keys for --json and the REST API; `progress` is a dict of counts."""
        d = asdict(self)
        d["kind"] = self.kind
        d["progress"] = {
            "fraction": round(self.progress, 4),
            "done": self.done,
            "succeeded": self.done - self.failed,
            "failed": self.failed,
            "total": self.total,
        }
        return d


@dataclass
class RunItem:
    """One item of a run: its inputs and, once recorded, its result."""

    run_id: str
    idx: int
    inputs: dict[str, Any]
    status: str  # pending | succeeded | failed
    output: str | None = None
    output_json: Any = None
    raw_text: str | None = None
    error: str | None = None
    tokens: int | None = None
    prompt_tokens: int | None = None
    seconds: float | None = None
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunItem:
        return cls(
            run_id=row["run_id"], idx=row["idx"], inputs=json.loads(row["inputs_json"]),
            status=row["status"], output=row["output"], output_json=load_json(row["output_json"]),
            raw_text=row["raw_text"], error=row["error"], tokens=row["tokens"],
            prompt_tokens=row["prompt_tokens"], seconds=row["seconds"],
            finished_at=row["finished_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pid_alive(pid: int) -> bool:
    """True if process `pid` exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        # A killed child stays a zombie until reaped; it will never heartbeat again.
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def write_items_csv(f: Any, items: list[RunItem]) -> None:
    """CSV of run items: idx, status, each input field, output, output.<field>, error, ..."""
    input_cols: dict[str, None] = {}
    out_cols: dict[str, None] = {}
    for it in items:
        input_cols.update(dict.fromkeys(it.inputs))
        if isinstance(it.output_json, dict):
            out_cols.update(dict.fromkeys(it.output_json))
    header = ["idx", "status", *input_cols, "output", *(f"output.{k}" for k in out_cols),
              "error", "tokens", "seconds"]
    w = csv.writer(f)
    w.writerow(header)

    def cell(v: Any) -> Any:
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v

    for it in items:
        oj = it.output_json if isinstance(it.output_json, dict) else {}
        w.writerow([
            it.idx, it.status, *(cell(it.inputs.get(k)) for k in input_cols),
            it.output, *(cell(oj.get(k)) for k in out_cols), it.error, it.tokens,
            it.seconds,
        ])
