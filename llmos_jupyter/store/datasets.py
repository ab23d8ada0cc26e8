"""DatasetStore: named, immutable snapshots of users' data.

`add` reads a file (streamed), a list of dicts or a DataFrame (a bad row is a DataError
naming it, and nothing is registered), writes the rows as canonical JSONL to
datasets/<name>/<sha>/data.jsonl and records the sha256 of that file. Runs read the
snapshot, never the source, so editing the source later changes no result.

Writes follow the same order as models: snapshot into tmp/stage-*, rename into place,
then INSERT the row; a snapshot directory without a row is invisible and replaced.

`prep` with a `split` makes one dataset per part, named "<dst>-<part>" (e.g. "docs-train"
and "docs-val"), all registered in one transaction or none; without a split it makes
"<dst>". Each records its `parent` and the prep report in its stats.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmos_jupyter.data import datafiles
from llmos_jupyter.errors import LLMOSError, NotFoundError
from llmos_jupyter.store.catalog import Catalog, utc_now
from llmos_jupyter.store.home import check_name


@dataclass
class DatasetRecord:
    """One row of the datasets table. `path` is the snapshot file, relative to LLMOS_HOME;
    `format` is what the rows came from (jsonl, csv, ..., records, dataframe)."""

    name: str
    path: str
    format: str
    rows: int
    columns: list[str]
    sha256: str
    source: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    created_at: str = ""

    COLUMNS = ("name", "path", "format", "rows", "columns", "sha256", "source", "stats",
               "parent", "created_at")

    @classmethod
    def from_row(cls, row: Any) -> DatasetRecord:
        d = {k: row[k] for k in cls.COLUMNS}
        d["columns"] = json.loads(d["columns"])
        d["stats"] = json.loads(d["stats"]) if d["stats"] else {}
        return cls(**d)

    def to_row(self) -> tuple[Any, ...]:
        d = asdict(self)
        d["columns"] = json.dumps(self.columns, ensure_ascii=False)
        d["stats"] = json.dumps(self.stats, ensure_ascii=False, sort_keys=True)
        return tuple(d[k] for k in self.COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        """Stable keys (the table's columns) for --json output."""
        return asdict(self)


def _describe_source(source: Any, format: str | None) -> tuple[str, str | None]:
    """(format, source description) of what `add` was given."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        return format or datafiles.infer_format(path), str(path.resolve())
    if hasattr(source, "columns") and hasattr(source, "to_dict"):
        return "dataframe", None
    return "records", None


class DatasetStore:
    """Datasets of one store."""

    def __init__(self, catalog: Catalog | None = None):
        self.catalog = catalog if catalog is not None else Catalog()
        self.layout = self.catalog.layout

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return [r[0] for r in self.catalog.query("SELECT name FROM datasets ORDER BY name")]

    def list(self) -> list[DatasetRecord]:
        """Every dataset, by name."""
        rows = self.catalog.query("SELECT * FROM datasets ORDER BY name")
        return [DatasetRecord.from_row(r) for r in rows]

    def get(self, name: str) -> DatasetRecord:
        """The record of `name`; NotFoundError with close names if there is none."""
        row = self.catalog.query_one("SELECT * FROM datasets WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError("dataset", name, self.names())
        return DatasetRecord.from_row(row)

    def snapshot_path(self, name: str) -> Path:
        """Absolute path of the dataset's snapshot file (canonical JSONL)."""
        return self.catalog.home / self.get(name).path

    def rows(self, name: str) -> list[dict[str, Any]]:
        """Every row of the snapshot, in order."""
        return datafiles.read_snapshot(self.snapshot_path(name))

    def iter_rows(self, name: str) -> Iterator[dict[str, Any]]:
        """The rows of the snapshot, streamed: taking the first n reads n lines."""
        return datafiles.iter_snapshot(self.snapshot_path(name))

    def head(self, name: str, n: int = 5) -> list[dict[str, Any]]:
        """The first `n` rows, read without loading the whole snapshot."""
        out: list[dict[str, Any]] = []
        with open(self.snapshot_path(name), encoding="utf-8") as f:
            for line in f:
                if len(out) >= n:
                    break
                if line.strip():
                    out.append(json.loads(line))
        return out

    def stats(self, name: str, tokenizer: Any = None) -> dict[str, Any]:
        """datafiles.compute_stats of the snapshot (stored at add; recomputed with a tokenizer)."""
        rec = self.get(name)
        if tokenizer is None and rec.stats:
            return rec.stats
        stats = datafiles.compute_stats(self.rows(name), tokenizer)
        if "prep" in rec.stats:
            stats["prep"] = rec.stats["prep"]
        return stats

    # -- writing ---------------------------------------------------------------------------

    def add(self, name: str, source: Any, format: str | None = None, *, replace: bool = False,
            text_mode: str = "line", described_as: str | None = None) -> DatasetRecord:
        """Snapshot `source` (path, list of dicts or DataFrame) as dataset `name`;
        `described_as` is what the record names as its source (default: the file's path).

        Adding the same content under the same name again is a no-op. Different content
        under an existing name raises LLMOSError unless `replace`, which makes the new
        snapshot current and deletes the old one. Raises DataError (naming the row) for
        bad data; nothing is registered then.
        """
        check_name("dataset", name)
        fmt, src = _describe_source(source, format)
        # A file is streamed row by row into the snapshot (memory independent of its size);
        # a bad row raises from inside the staging directory, so nothing is registered.
        records = datafiles.iter_records_from(source, format, text_mode=text_mode)
        return self._write(name, records, fmt, described_as or src, parent=None,
                           replace=replace)

    def _write(self, name: str, records: Iterable[dict[str, Any]], fmt: str,
               source: str | None, parent: str | None, replace: bool) -> DatasetRecord:
        with self.layout.name_lock("dataset", name), ExitStack() as stages:
            stage = stages.enter_context(self.layout.staging(f"dataset-{name}"))
            info = datafiles.stream_snapshot(records, stage / "snap")
            staged, sha = stage / "snap", info.sha256
            old = self._row(name)
            if old is not None and old.sha256 == sha:
                return old
            if old is not None and not replace:
                what = f"dataset {name!r} already exists with other rows; pick another name or"
                raise LLMOSError(
                    f"{what} pass replace=True to make this the new version",
                    command_line=f"{what} add --replace to make this the new version",
                )
            rec = DatasetRecord(
                name=name, path=f"datasets/{name}/{sha}/{datafiles.SNAPSHOT_NAME}",
                format=fmt, rows=info.rows, columns=info.columns,
                sha256=sha, source=source, stats=info.stats,
                parent=parent, created_at=utc_now(),
            )
            self.layout.install(staged, self.layout.datasets / name / sha)
            self._upsert([rec])
            if old is not None:
                self.layout.discard(self.layout.datasets / name / old.sha256)
            return rec

    def _snapshot(self, stages: ExitStack, name: str, records: list[dict[str, Any]],
                  ) -> tuple[Path, str]:
        """Write the snapshot into a staging dir owned until `stages` closes: (dir, sha256)."""
        stage = stages.enter_context(self.layout.staging(f"dataset-{name}"))
        _, sha = datafiles.write_snapshot(records, stage / "snap")
        return stage / "snap", sha

    def _row(self, name: str) -> DatasetRecord | None:
        row = self.catalog.query_one("SELECT * FROM datasets WHERE name = ?", (name,))
        return DatasetRecord.from_row(row) if row else None

    def _upsert(self, recs: list[DatasetRecord]) -> None:
        cols = ", ".join(DatasetRecord.COLUMNS)
        marks = ", ".join("?" * len(DatasetRecord.COLUMNS))
        sets = ", ".join(f"{c} = excluded.{c}" for c in DatasetRecord.COLUMNS[1:])
        with self.catalog.transaction() as conn:
            for rec in recs:
                conn.execute(f"INSERT INTO datasets ({cols}) VALUES ({marks})"
                             f" ON CONFLICT(name) DO UPDATE SET {sets}", rec.to_row())

    def remove(self, name: str) -> None:
        """Forget dataset `name` and delete its snapshots and token shards in LLMOS_HOME.

        Datasets prepared from it keep their own snapshots (their `parent` is a note)."""
        self.get(name)
        with self.layout.name_lock("dataset", name):
            shards = self.tokenized(name)
            with self.catalog.transaction() as conn:
                conn.execute("DELETE FROM datasets WHERE name = ?", (name,))
            self.layout.discard(self.layout.datasets / name)
            for t in shards:
                path = Path(t["path"])
                if path.is_relative_to(self.catalog.home) and path.exists():
                    if path.is_dir():
                        self.layout.discard(path)
                    else:
                        path.unlink()

    def export(self, name: str, path: str | Path, format: str | None = None) -> Path:
        """Write the rows to `path`; the format comes from the extension unless given."""
        return datafiles.export_records(self.rows(name), path, format)

    def prep(
        self, src: str, dst: str, *, replace: bool = False, **opts: Any
    ) -> list[DatasetRecord]:
        """Clean (and split) dataset `src` into new datasets; see datafiles.prep for `opts`.

        Without `split`: one dataset `dst`. With split={"train": .9, "val": .1}: datasets
        "dst-train" and "dst-val". All of them are registered together or not at all.
        """
        check_name("dataset", dst)
        result = datafiles.prep(self.rows(src), **opts)
        split = "split" in opts and opts["split"] is not None
        names = {part: (f"{dst}-{part}" if split else dst) for part in result}
        for n in names.values():
            check_name("dataset", n)
            if not replace and self._row(n) is not None:
                what = f"dataset {n!r} already exists; pick another name for the prepared data or"
                raise LLMOSError(f"{what} pass replace=True", command_line=f"{what} add --replace")
        for part, n in names.items():
            if not result[part]:
                raise LLMOSError(f"prep left no rows for {n!r}; loosen the filters or the split")
        recs = []
        with ExitStack() as stages:
            staged = []
            for part, n in names.items():
                path, sha = self._snapshot(stages, n, result[part])
                staged.append(path)
                recs.append(DatasetRecord(
                    name=n, path=f"datasets/{n}/{sha}/{datafiles.SNAPSHOT_NAME}",
                    format="prep", rows=len(result[part]),
                    columns=datafiles.columns(result[part]), sha256=sha, source=src,
                    stats={**datafiles.compute_stats(result[part]),
                           "prep": {**result.report, "part": part, "options": _jsonable(opts)}},
                    parent=src, created_at=utc_now(),
                ))
            olds = [self._row(rec.name) for rec in recs]
            for rec, path in zip(recs, staged, strict=True):
                self.layout.install(path, self.layout.datasets / rec.name / rec.sha256)
            self._upsert(recs)
            for old, rec in zip(olds, recs, strict=True):
                if old is not None and old.sha256 != rec.sha256:
                    self.layout.discard(self.layout.datasets / old.name / old.sha256)
        return recs

    # -- token shards ----------------------------------------------------------------------

    def shard_path(self, name: str, model: str) -> Path:
        """Where the token shard of dataset `name` for `model` should be written."""
        rec = self.get(name)
        return self.layout.shards / name / f"{rec.sha256[:12]}-{model}.bin"

    def record_tokenized(self, name: str, model: str, shard_path: str | Path,
                         stats: dict[str, Any] | None = None) -> None:
        """Register the token shard written (by shards.py) for dataset `name` and `model`."""
        self.get(name)
        path = Path(shard_path).resolve()
        try:
            stored = str(path.relative_to(self.catalog.home.resolve()))
        except ValueError:
            stored = str(path)
        with self.catalog.transaction() as conn:
            conn.execute(
                "INSERT INTO tokenized (dataset, model, path, stats, created_at) VALUES"
                " (?, ?, ?, ?, ?) ON CONFLICT(dataset, model) DO UPDATE SET path = excluded.path,"
                " stats = excluded.stats, created_at = excluded.created_at",
                (name, model, stored, json.dumps(_jsonable(stats or {})), utc_now()),
            )

    def tokenized(self, name: str) -> list[dict[str, Any]]:
        """The token shards registered for dataset `name`: model, absolute path, stats."""
        rows = self.catalog.query(
            "SELECT * FROM tokenized WHERE dataset = ? ORDER BY model", (name,))
        return [{"dataset": r["dataset"], "model": r["model"],
                 "path": str(self.catalog.home / r["path"]), "stats": json.loads(r["stats"]),
                 "created_at": r["created_at"]} for r in rows]


def _jsonable(obj: Any) -> Any:
    """A JSON round-trip, with anything exotic (numpy numbers, Paths) made plain."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
