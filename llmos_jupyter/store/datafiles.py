"""Reading, snapshotting and exporting users' data files.

A dataset is a list of records (dicts with str keys). Readers turn every supported file
format into records and raise `DataError` naming the file and the line or row at fault
*before* returning anything, so the store never registers half a file. A snapshot is the
canonical JSONL form the store keeps; its sha256 identifies a dataset version.

Decisions:
- CSV/TSV values stay strings: no type guessing, so "007" stays "007".
- Snapshots keep each record's own key order (the user's column order is what tables and
  CSV exports show), so reordering columns is a new version. Canonical means: UTF-8,
  no ASCII escaping, compact separators, one record per line, "\n" line ends.
- Text files default to `text_mode="line"` (predictable); "auto" picks paragraphs when the
  file has at least one blank line between non-empty lines, else lines.

Describing and preparing records in memory (`columns`, `compute_stats`, `prep`, ...) is
`dataprep`, re-exported here so `from llmos_jupyter.store.datafiles import ...` and
`datafiles.prep(...)` keep working.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import DataError
from llmos_jupyter.store.dataprep import (
    PrepResult,
    columns,
    compute_stats,
    describe,
    prep,
    resolve_text_field,
)

__all__ = [
    # defined here
    "Record", "EXTENSIONS", "FORMATS", "TEXT_MODES", "SNAPSHOT_NAME", "infer_format",
    "read_records", "records_from", "atomic_write", "write_snapshot", "read_snapshot",
    "export_records",
    # re-exported from dataprep
    "columns", "describe", "compute_stats", "PrepResult", "resolve_text_field", "prep",
]

Record = dict[str, Any]

EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
              ".tsv": "tsv", ".txt": "txt", ".md": "txt", ".parquet": "parquet"}
FORMATS = ("jsonl", "json", "csv", "tsv", "txt", "parquet")
TEXT_MODES = ("line", "paragraph", "auto")
SNAPSHOT_NAME = "data.jsonl"  # the file write_snapshot creates inside its directory


# ---------------------------------------------------------------------------- reading

def infer_format(path: str | os.PathLike) -> str:
    """Return the format name ("jsonl", "csv", ...) of `path` from its extension.

    Raises DataError naming the path and the supported extensions when it is unknown.
    """
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        what = (f"{path}: unknown data format {Path(path).suffix or '(no extension)'!r}; "
                f"supported: {', '.join(EXTENSIONS)} — or pass")
        raise DataError(f"{what} format= one of {', '.join(FORMATS)}",
                        command_line=f"{what} --format, one of {', '.join(FORMATS)}")
    return fmt


def read_records(path: str | os.PathLike, format: str | None = None, *,
                 text_mode: str = "line") -> list[Record]:
    """Read every record of a data file; the format comes from the extension unless given.

    jsonl: one JSON object per non-blank line. json: a list of objects, or an object with
    exactly one list field. csv/tsv: a header row, then rows of as many fields (values stay
    strings). txt: {"text": ...} per non-empty line or blank-line-separated paragraph (see
    `text_mode`). parquet: one record per table row.
    Raises DataError naming the file and the line/row at fault, or when there is no record.
    """
    path = Path(path)
    fmt = format or infer_format(path)
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    if text_mode not in TEXT_MODES:
        raise DataError(f"text_mode must be one of {', '.join(TEXT_MODES)}, not {text_mode!r}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "parquet":
        records = _read_parquet(path)
    else:
        text = _read_text(path)
        reader = {"jsonl": _parse_jsonl, "json": _parse_json, "csv": _parse_delimited,
                  "tsv": _parse_delimited, "txt": _parse_txt}[fmt]
        records = reader(text, path.name, fmt=fmt, text_mode=text_mode)
    if not records:
        raise DataError(f"{path}: no records in the file")
    return records


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # -sig: spreadsheet tools prepend a BOM
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path.name} line {line}: not valid UTF-8 (byte {e.start}); "
                        "re-save the file as UTF-8") from None
    return text


def _parse_jsonl(text: str, name: str, **_: Any) -> list[Record]:
    records = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{name} line {lineno}: invalid JSON ({e.msg} at column {e.colno})"
                            ) from None
        if not isinstance(obj, dict):
            raise DataError(f"{name} line {lineno}: expected a JSON object, "
                            f"got {type(obj).__name__}")
        records.append(obj)
    return records


def _parse_json(text: str, name: str, **_: Any) -> list[Record]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{name} line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
                        ) from None
    if isinstance(obj, dict):
        lists = [k for k, v in obj.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{name}: expected a list of objects, or an object with exactly one "
                            f"list field (found list fields: {lists or 'none'})")
        obj = obj[lists[0]]
    if not isinstance(obj, list):
        raise DataError(f"{name}: expected a list of objects, got {type(obj).__name__}")
    for i, item in enumerate(obj, 1):
        if not isinstance(item, dict):
            raise DataError(f"{name} record {i}: expected a JSON object, "
                            f"got {type(item).__name__}")
    return obj


def _parse_delimited(text: str, name: str, *, fmt: str, **_: Any) -> list[Record]:
    # strict=True turns malformed quoting into csv.Error instead of silently merging fields.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",",
                        strict=True)
    records: list[Record] = []
    header: list[str] | None = None
    try:
        for fields in reader:
            if not fields:  # a blank line
                continue
            if header is None:
                header = fields
                dupes = sorted({h for h in header if header.count(h) > 1})
                if dupes or "" in header:
                    raise DataError(f"{name} line {reader.line_num}: header has "
                                    f"{'duplicate' if dupes else 'empty'} column names "
                                    f"{dupes or ''}".rstrip())
                continue
            if len(fields) != len(header):
                raise DataError(f"{name} row {len(records) + 1} (line {reader.line_num}): "
                                f"expected {len(header)} fields, got {len(fields)}")
            records.append(dict(zip(header, fields, strict=True)))
    except csv.Error as e:
        raise DataError(f"{name} row {len(records) + 1} (line {reader.line_num}): malformed "
                        f"{fmt.upper()} ({e})") from None
    return records


def _parse_txt(text: str, name: str, *, text_mode: str, **_: Any) -> list[Record]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blank = [not line.strip() for line in lines]
    if text_mode == "auto":
        # A blank line with content on both sides means the author wrote paragraphs.
        first = blank.index(False) if False in blank else 0
        last = len(blank) - blank[::-1].index(False) if False in blank else 0
        text_mode = "paragraph" if any(blank[first:last]) else "line"
    if text_mode == "line":
        return [{"text": line} for line, b in zip(lines, blank, strict=True) if not b]
    paragraphs, current = [], []
    for line, b in zip(lines, blank, strict=True):
        if b:
            if current:
                paragraphs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        paragraphs.append("\n".join(current))
    return [{"text": p} for p in paragraphs]


def _read_parquet(path: Path) -> list[Record]:
    import pyarrow.parquet as pq  # heavy: only on use

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path.name}: not a readable Parquet file ({e})") from None
    return table.to_pylist()


def records_from(source: Any, format: str | None = None, *,
                 text_mode: str = "line") -> list[Record]:
    """Records from a file path, a list of dicts, or a pandas DataFrame.

    Lists are validated (every item a dict with str keys) and shallow-copied. DataFrame
    missing values (NaN, NA, NaT) become None and numpy scalars become Python values.
    Raises DataError naming the bad row, or when there is no record.
    """
    if isinstance(source, (str, os.PathLike)):
        return read_records(source, format, text_mode=text_mode)
    if hasattr(source, "to_dict") and hasattr(source, "columns"):
        records = _records_from_frame(source)
    elif isinstance(source, (list, tuple)):
        records = []
        for i, item in enumerate(source, 1):
            if not isinstance(item, dict):
                raise DataError(f"row {i}: expected a dict, got {type(item).__name__}")
            bad = [k for k in item if not isinstance(k, str)]
            if bad:
                raise DataError(f"row {i}: keys must be strings, got {bad[0]!r}")
            records.append(dict(item))
    else:
        raise DataError(f"cannot read data from a {type(source).__name__}; pass a file path, "
                        "a list of dicts or a pandas DataFrame")
    if not records:
        raise DataError("no records: the data is empty")
    return records


def _records_from_frame(frame: Any) -> list[Record]:
    bad = [c for c in frame.columns if not isinstance(c, str)]
    if bad:
        raise DataError(f"DataFrame column names must be strings, got {bad[0]!r}")
    # Here, not at the top: catalog commands (`llmos list`) import this module and must
    # start fast; a DataFrame means pandas, hence numpy, is already imported anyway.
    import numpy as np
    import pandas as pd

    def clean(v: Any) -> Any:
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):  # NaN, NA, NaT
            return None
        return v.tolist() if isinstance(v, np.ndarray) else v

    return [{k: clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


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


def write_snapshot(records: Sequence[Record], directory: str | os.PathLike) -> tuple[Path, str]:
    """Write `records` as canonical JSONL to `directory/data.jsonl`, atomically.

    Returns (path, sha256 hex digest of the file's bytes). Equal records in equal key
    order give equal bytes, hence equal hashes. Raises DataError for an empty list or a
    value JSON cannot hold (the row is named).
    """
    if not records:
        raise DataError("no records: refusing to snapshot empty data")
    payload = "".join(_json_line(r, i) + "\n" for i, r in enumerate(records, 1)).encode()
    path = Path(directory) / SNAPSHOT_NAME
    atomic_write(path, lambda f: f.write(payload), binary=True)
    return path, hashlib.sha256(payload).hexdigest()


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
