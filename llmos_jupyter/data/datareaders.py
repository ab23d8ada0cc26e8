"""Reading users' data files: every supported format streamed as records.

Readers turn each file format into records (dicts with str keys) and raise `DataError`
naming the file and the line or row at fault. jsonl, csv/tsv, txt and parquet are read
one record at a time (`iter_records`), so memory does not grow with the file; a .json
file is one document and is parsed whole. `read_records` collects them into a list, so it
raises before returning anything.

Decisions:
- CSV/TSV values stay strings: no type guessing, so "007" stays "007".
- Text files default to `text_mode="line"` (predictable); "auto" picks paragraphs when the
  file has at least one blank line between non-empty lines, else lines.
- Nesting past Python's recursion limit is a DataError naming the line, not a traceback.

Use it through `datafiles`, which re-exports it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import DataError, excerpt

Record = dict[str, Any]

EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
              ".tsv": "tsv", ".txt": "txt", ".md": "txt", ".parquet": "parquet"}
FORMATS = ("jsonl", "json", "csv", "tsv", "txt", "parquet")
TEXT_MODES = ("line", "paragraph", "auto")


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


def iter_records(path: str | os.PathLike, format: str | None = None, *,
                 text_mode: str = "line") -> Iterator[Record]:
    """Yield the records of a data file one by one, in memory independent of its size.

    jsonl, csv/tsv, txt and parquet are streamed; a .json file is one document and is
    parsed whole. A bad line or row raises DataError naming it, possibly after earlier
    records were yielded, so callers that must register all or nothing write what they
    get into staging first (as `DatasetStore.add` does). No record at all: DataError.
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
        records = _iter_parquet(path)
    elif fmt == "json":
        records = iter(_parse_json(_read_text(path), path.name))
    elif fmt == "jsonl":
        records = _iter_jsonl(path)
    elif fmt == "txt":
        records = _iter_txt(path, text_mode)
    else:
        records = _iter_delimited(path, fmt)
    empty = True
    for record in records:
        empty = False
        yield record
    if empty:
        raise DataError(f"{path}: no records in the file")


def read_records(path: str | os.PathLike, format: str | None = None, *,
                 text_mode: str = "line") -> list[Record]:
    """Read every record of a data file; the format comes from the extension unless given.

    jsonl: one JSON object per non-blank line. json: a list of objects, or an object with
    exactly one list field. csv/tsv: a header row, then rows of as many fields (values stay
    strings). txt: {"text": ...} per non-empty line or blank-line-separated paragraph (see
    `text_mode`). parquet: one record per table row.
    Raises DataError naming the file and the line/row at fault, or when there is no record.
    """
    return list(iter_records(path, format, text_mode=text_mode))


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # -sig: spreadsheet tools prepend a BOM
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path.name} line {line}: not valid UTF-8 (byte {e.start}); "
                        "re-save the file as UTF-8") from None
    return text


def _utf8_error(path: Path) -> DataError:
    """The DataError naming the first line of `path` that is not UTF-8 (found by a rescan:
    a buffered text reader reports the failing chunk, not the line)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                decoder.decode(raw)
            except UnicodeDecodeError as e:
                return DataError(f"{path.name} line {lineno}: not valid UTF-8 (byte "
                                 f"{offset + e.start}); re-save the file as UTF-8")
            offset += len(raw)
    return DataError(f"{path.name}: not valid UTF-8 at the end; re-save the file as UTF-8")


def _text_lines(path: Path, newline: str | None) -> Iterator[str]:
    """Decoded lines of `path`, streamed (`newline` as for open(); a BOM is dropped)."""
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline=newline)
        try:
            yield from text
        except UnicodeDecodeError:
            raise _utf8_error(path) from None


def _json_value(line: str, where: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    except ValueError:  # an integer longer than Python converts
        raise DataError(f"{where}: a number of over {sys.get_int_max_str_digits()} digits; "
                        "quote it as a string") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply (Python reads about "
                        f"{sys.getrecursionlimit()} levels); flatten the record") from None


def _iter_jsonl(path: Path) -> Iterator[Record]:
    # Binary lines split at "\n" only (as the format says), and name the exact bad line.
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path.name} line {lineno}: not valid UTF-8 (byte "
                                f"{f.tell() - len(raw) + e.start}); re-save the file as "
                                "UTF-8") from None
            if not line.strip():
                continue
            obj = _json_value(line, f"{path.name} line {lineno}")
            if not isinstance(obj, dict):
                raise DataError(f"{path.name} line {lineno}: expected a JSON object, "
                                f"got {type(obj).__name__}")
            yield obj


def _parse_json(text: str, name: str) -> list[Record]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{name} line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})"
                        ) from None
    except ValueError:  # an integer longer than Python converts
        raise DataError(f"{name}: a number of over {sys.get_int_max_str_digits()} digits; "
                        "quote it as a string") from None
    except RecursionError:
        raise DataError(f"{name}: JSON nested too deeply (Python reads about "
                        f"{sys.getrecursionlimit()} levels); flatten the records") from None
    if isinstance(obj, dict):
        lists = [k for k, v in obj.items() if isinstance(v, list)]
        if len(lists) != 1:
            found = excerpt(lists) if lists else "none"
            raise DataError(f"{name}: expected a list of objects, or an object with exactly one "
                            f"list field (found list fields: {found})")
        obj = obj[lists[0]]
    if not isinstance(obj, list):
        raise DataError(f"{name}: expected a list of objects, got {type(obj).__name__}")
    for i, item in enumerate(obj, 1):
        if not isinstance(item, dict):
            raise DataError(f"{name} record {i}: expected a JSON object, "
                            f"got {type(item).__name__}")
    return obj


def _iter_delimited(path: Path, fmt: str) -> Iterator[Record]:
    # strict=True turns malformed quoting into csv.Error instead of silently merging fields.
    reader = csv.reader(_text_lines(path, newline=""), delimiter="\t" if fmt == "tsv" else ",",
                        strict=True)
    name, rows = path.name, 0
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
                                    f"{excerpt(dupes) if dupes else ''}".rstrip())
                continue
            if len(fields) != len(header):
                raise DataError(f"{name} row {rows + 1} (line {reader.line_num}): "
                                f"expected {len(header)} fields, got {len(fields)}")
            rows += 1
            yield dict(zip(header, fields, strict=True))
    except csv.Error as e:
        raise DataError(f"{name} row {rows + 1} (line {reader.line_num}): malformed "
                        f"{fmt.upper()} ({e})") from None


def _iter_txt(path: Path, text_mode: str) -> Iterator[Record]:
    def lines() -> Iterator[str]:  # universal newlines: \r\n and \r end lines too
        for line in _text_lines(path, newline=None):
            yield line[:-1] if line.endswith("\n") else line

    if text_mode == "auto":
        # A blank line with content on both sides means the author wrote paragraphs: one
        # streaming pass to decide, then the real one.
        seen_text = pending_blank = False
        text_mode = "line"
        for line in lines():
            if not line.strip():
                pending_blank = seen_text
            elif pending_blank:
                text_mode = "paragraph"
                break
            else:
                seen_text = True
    if text_mode == "line":
        yield from ({"text": line} for line in lines() if line.strip())
        return
    current: list[str] = []
    for line in lines():
        if line.strip():
            current.append(line)
        elif current:
            yield {"text": "\n".join(current)}
            current = []
    if current:
        yield {"text": "\n".join(current)}


def _iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq  # heavy: only on use

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
        for batch in batches:
            yield from batch.to_pylist()
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path.name}: not a readable Parquet file ({e})") from None


def iter_records_from(source: Any, format: str | None = None, *,
                      text_mode: str = "line") -> Iterable[Record]:
    """`records_from`, but a file is streamed (`iter_records`) instead of read whole."""
    if isinstance(source, (str, os.PathLike)):
        return iter_records(source, format, text_mode=text_mode)
    return records_from(source, format, text_mode=text_mode)


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
                raise DataError(f"row {i}: keys must be strings, got {excerpt(bad[0])}")
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
        raise DataError(f"DataFrame column names must be strings, got {excerpt(bad[0])}")
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


