"""Snapshotting and exporting users' data files.

A dataset is a list of records (dicts with str keys). Reading files is `datareaders`
(streamed, a DataError naming the line or row at fault). A snapshot is the canonical
JSONL form the store keeps, written from a stream of records into staging, so a bad row
leaves nothing registered; its sha256 identifies a dataset version.

Decisions:
- Snapshots keep each record's own key order (the user's column order is what tables and
  CSV exports show), so reordering columns is a new version. Canonical means: UTF-8,
  no ASCII escaping, compact separators, one record per line, "\n" line ends.

Describing and preparing records in memory (`columns`, `compute_stats`, `prep`, ...) is
`dataprep`; it and `datareaders` are re-exported here so
`from llmos_jupyter.data.datafiles import ...` and `datafiles.prep(...)` keep working.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos_jupyter.data.dataprep import (
    PrepResult,
    StatsBuilder,
    columns,
    compute_stats,
    describe,
    prep,
    resolve_text_field,
)
from llmos_jupyter.data.datareaders import (
    EXTENSIONS,
    FORMATS,
    TEXT_MODES,
    Record,
    infer_format,
    iter_records,
    iter_records_from,
    read_records,
    records_from,
)
from llmos_jupyter.errors import DataError

__all__ = [
    # defined here
    "SNAPSHOT_NAME", "iter_snapshot", "stream_snapshot", "SnapshotInfo", "atomic_write",
    "write_snapshot", "read_snapshot", "export_records",
    # re-exported from datareaders
    "Record", "EXTENSIONS", "FORMATS", "TEXT_MODES", "infer_format", "iter_records",
    "read_records", "records_from", "iter_records_from",
    # re-exported from dataprep
    "columns", "describe", "compute_stats", "PrepResult", "resolve_text_field", "prep",
]

SNAPSHOT_NAME = "data.jsonl"  # the file write_snapshot creates inside its directory


# ---------------------------------------------------------------------------- snapshots

def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write through a temporary file in the same directory, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        text_args = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, "wb" if binary else "w", **text_args) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_line(record: Record, row: int) -> str:
    try:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise DataError(f"row {row}: cannot be stored as JSON ({e})") from None
    except RecursionError:
        raise DataError(f"row {row}: nested too deeply to store as JSON; flatten it") from None


@dataclass
class SnapshotInfo:
    """What `stream_snapshot` wrote: the file, its sha256, and what the rows hold."""

    path: Path
    sha256: str
    rows: int
    columns: list[str]
    stats: dict[str, Any]


def stream_snapshot(records: Iterable[Record], directory: str | os.PathLike) -> SnapshotInfo:
    """Write `records` as canonical JSONL to `directory/data.jsonl`, one at a time.

    Memory stays independent of the number of rows (but for a few numbers per row and
    string column, for the stats' percentiles): each record is written, hashed and
    counted, then dropped. The file appears under its name only when complete. Raises
    DataError for no records or a value JSON cannot hold (the row is named), and
    whatever the records' reader raises; nothing is left behind then.
    """
    path = Path(directory) / SNAPSHOT_NAME
    digest, stats = hashlib.sha256(), StatsBuilder()

    def write(f: Any) -> None:
        buffer: list[bytes] = []
        for row, record in enumerate(records, 1):
            line = (_json_line(record, row) + "\n").encode()
            digest.update(line)
            stats.add(record)
            buffer.append(line)
            if len(buffer) >= 1024:  # a few syscalls per thousand rows
                f.write(b"".join(buffer))
                buffer.clear()
        f.write(b"".join(buffer))
        if not stats.rows:
            raise DataError("no records: refusing to snapshot empty data")

    atomic_write(path, write, binary=True)
    return SnapshotInfo(path, digest.hexdigest(), stats.rows, stats.columns(), stats.result())


def write_snapshot(records: Sequence[Record], directory: str | os.PathLike) -> tuple[Path, str]:
    """Write `records` as canonical JSONL to `directory/data.jsonl`, atomically.

    Returns (path, sha256 hex digest of the file's bytes). Equal records in equal key
    order give equal bytes, hence equal hashes. Raises DataError for an empty list or a
    value JSON cannot hold (the row is named).
    """
    info = stream_snapshot(records, directory)
    return info.path, info.sha256


def iter_snapshot(path: str | os.PathLike) -> Iterator[Record]:
    """The records of a snapshot, streamed: reading the first n costs n lines."""
    return iter_records(path, "jsonl")


def read_snapshot(path: str | os.PathLike) -> list[Record]:
    """Read a snapshot written by `write_snapshot` (any JSONL file works)."""
    return read_records(path, "jsonl")


# ---------------------------------------------------------------------------- export

def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def export_records(records: Sequence[Record], path: str | os.PathLike, format: str | None = None,
                   *, text_field: str | None = None) -> Path:
    """Write records to `path` as jsonl/json/csv/tsv/parquet/txt (atomic); returns the path.

    csv/tsv write non-string values as JSON and None as "" (reading back gives strings).
    txt writes only the text field (see `resolve_text_field`), one per line — or, when a
    text spans lines, as blank-line-separated paragraphs (read back with "paragraph").
    """
    path = Path(path)
    fmt = format or infer_format(path)
    if not records:
        raise DataError("no records to export")
    if fmt == "jsonl":
        text = "".join(_json_line(r, i) + "\n" for i, r in enumerate(records, 1))
    elif fmt == "json":
        text = json.dumps(list(records), ensure_ascii=False, indent=1) + "\n"
    elif fmt in ("csv", "tsv"):
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        cols = columns(records)
        writer.writerow(cols)
        writer.writerows([_cell(r.get(c)) for c in cols] for r in records)
        text = buf.getvalue()
    elif fmt == "txt":
        field = resolve_text_field(records, text_field)
        texts = [str(r.get(field) or "") for r in records]
        for i, t in enumerate(texts, 1):
            if not t.strip() or any(not line.strip() for line in t.split("\n")):
                raise DataError(f"row {i}: text is empty or has a blank line; a .txt file "
                                "cannot keep it apart from its neighbours — use jsonl")
        multi = any("\n" in t for t in texts)
        text = ("\n\n" if multi else "\n").join(texts) + "\n"
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pa.Table.from_pylist(list(records))
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise DataError(f"cannot export to Parquet: columns need one type each ({e})"
                            ) from None
        atomic_write(path, lambda f: pq.write_table(table, f), binary=True)
        return path
    else:
        raise DataError(f"{path}: unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    atomic_write(path, lambda f: f.write(text))
    return path
