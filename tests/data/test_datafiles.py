"""Reading, snapshotting and exporting data files; dataprep names still import from here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmos_jupyter.data import datafiles, dataprep
from llmos_jupyter.data.datafiles import (
    export_records,
    infer_format,
    read_records,
    read_snapshot,
    records_from,
    write_snapshot,
)
from llmos_jupyter.errors import DataError

ROWS = [{"text": "hello world", "label": "a"}, {"text": "ünïcode ✓", "label": "b"},
        {"text": "third, with comma", "label": "a"}]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- formats

@pytest.mark.parametrize("name,fmt", [("a.jsonl", "jsonl"), ("a.NDJSON", "jsonl"),
                                      ("a.json", "json"), ("a.csv", "csv"), ("a.tsv", "tsv"),
                                      ("a.txt", "txt"), ("a.md", "txt"),
                                      ("a.parquet", "parquet")])
def test_infer_format(name, fmt):
    assert infer_format(name) == fmt


def test_infer_format_unknown_names_path_and_formats():
    with pytest.raises(DataError, match=r"data\.xlsx.*'\.xlsx'.*\.jsonl.*parquet"):
        infer_format("data.xlsx")


# ---------------------------------------------------------------------------- readers

def test_jsonl_good(tmp_path):
    path = write(tmp_path, "data.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS) + "\n")
    assert read_records(path) == ROWS


def test_jsonl_broken_line_names_line(tmp_path):
    lines = [json.dumps(r) for r in ROWS] + ['{"text": "x" "label": 1}']
    path = write(tmp_path, "data.jsonl", "\n".join(lines))
    with pytest.raises(DataError, match=r"^data\.jsonl line 4: invalid JSON \(Expecting ','"):
        read_records(path)


def test_jsonl_non_object_line(tmp_path):
    path = write(tmp_path, "data.jsonl", '{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2: expected a JSON object, got list"):
        read_records(path)


def test_json_list_and_wrapped_list(tmp_path):
    assert read_records(write(tmp_path, "a.json", json.dumps(ROWS))) == ROWS
    wrapped = write(tmp_path, "b.json", json.dumps({"version": 2, "rows": ROWS}))
    assert read_records(wrapped) == ROWS


def test_json_errors(tmp_path):
    with pytest.raises(DataError, match=r"c\.json line 3: invalid JSON"):
        read_records(write(tmp_path, "c.json", '[\n{"a": 1},\n{"a": }\n]'))
    with pytest.raises(DataError, match="record 2: expected a JSON object"):
        read_records(write(tmp_path, "d.json", '[{"a": 1}, 5]'))
    with pytest.raises(DataError, match="exactly one list field"):
        read_records(write(tmp_path, "e.json", '{"x": [], "y": []}'))


def test_csv_good_with_quoting(tmp_path):
    path = write(tmp_path, "a.csv", 'text,label\n"has, comma",a\n"two\nlines",b\nplain,c\n')
    assert read_records(path) == [{"text": "has, comma", "label": "a"},
                                  {"text": "two\nlines", "label": "b"},
                                  {"text": "plain", "label": "c"}]


def test_csv_wrong_field_count_names_row(tmp_path):
    path = write(tmp_path, "a.csv", "text,label\nok,a\ntoo,many,fields\n")
    with pytest.raises(DataError, match=r"a\.csv row 2 \(line 3\): expected 2 fields, got 3"):
        read_records(path)


def test_csv_strict_quoting(tmp_path):
    path = write(tmp_path, "a.csv", 'text,label\nok,a\n"bad"quote,b\n')
    with pytest.raises(DataError, match=r"row 2 \(line 3\): malformed CSV"):
        read_records(path)


def test_csv_duplicate_header(tmp_path):
    with pytest.raises(DataError, match="line 1: header has duplicate column names"):
        read_records(write(tmp_path, "a.csv", "a,a\n1,2\n"))


def test_tsv_good_and_broken(tmp_path):
    path = write(tmp_path, "a.tsv", "text\tlabel\nx, y\ta\n")
    assert read_records(path) == [{"text": "x, y", "label": "a"}]
    with pytest.raises(DataError, match="row 2 .*expected 2 fields, got 1"):
        read_records(write(tmp_path, "b.tsv", "text\tlabel\nx\ta\nlonely\n"))


TXT = "first line\nsecond line\n\n  \nthird para line 1\nline 2\n"


def test_txt_line_paragraph_auto(tmp_path):
    path = write(tmp_path, "a.txt", TXT)
    assert read_records(path, text_mode="line") == [
        {"text": "first line"}, {"text": "second line"}, {"text": "third para line 1"},
        {"text": "line 2"}]
    paragraphs = [{"text": "first line\nsecond line"}, {"text": "third para line 1\nline 2"}]
    assert read_records(path, text_mode="paragraph") == paragraphs
    assert read_records(path, text_mode="auto") == paragraphs
    # No blank line between non-empty lines: auto means lines (trailing blanks don't count).
    plain = write(tmp_path, "b.txt", "\none\ntwo\n\n\n")
    assert read_records(plain, text_mode="auto") == [{"text": "one"}, {"text": "two"}]


def test_parquet_good_and_corrupt(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert read_records(path) == ROWS
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable Parquet file"):
        read_records(bad)


def test_empty_and_missing_and_bad_utf8(tmp_path):
    with pytest.raises(DataError, match="no records"):
        read_records(write(tmp_path, "a.jsonl", "\n  \n"))
    with pytest.raises(DataError, match="no records"):
        read_records(write(tmp_path, "b.csv", "text,label\n"))
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "missing.jsonl")
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(DataError, match=r"c\.jsonl line 2: not valid UTF-8"):
        read_records(path)


def test_records_from_list_and_frame(tmp_path):
    assert records_from(ROWS) == ROWS and records_from(ROWS) is not ROWS
    with pytest.raises(DataError, match="row 2: expected a dict, got str"):
        records_from([{"a": 1}, "b"])
    with pytest.raises(DataError, match="row 1: keys must be strings"):
        records_from([{1: "a"}])
    with pytest.raises(DataError, match="empty"):
        records_from([])
    frame = pd.DataFrame({"text": ["a", None], "n": [1, 2], "x": [0.5, np.nan]})
    records = records_from(frame)
    assert records == [{"text": "a", "n": 1, "x": 0.5}, {"text": None, "n": 2, "x": None}]
    assert type(records[0]["n"]) is int
    nested = records_from(pd.DataFrame({"t": [(1, 2), None], "d": [{"k": 1}, {}]}))
    assert nested == [{"t": (1, 2), "d": {"k": 1}}, {"t": None, "d": {}}]
    path = write(tmp_path, "a.jsonl", json.dumps(ROWS[0]))
    assert records_from(path) == [ROWS[0]] == records_from(str(path))


# ---------------------------------------------------------------------------- snapshots

def test_snapshot_hash_stable_and_sensitive(tmp_path):
    path1, sha1 = write_snapshot(ROWS, tmp_path / "v1")
    path2, sha2 = write_snapshot([dict(r) for r in ROWS], tmp_path / "v2")
    assert sha1 == sha2 and path1.read_bytes() == path2.read_bytes()
    changed = [dict(r) for r in ROWS]
    changed[1]["label"] = "c"
    _, sha3 = write_snapshot(changed, tmp_path / "v3")
    assert sha3 != sha1
    assert read_snapshot(path1) == ROWS
    assert "ünïcode" in path1.read_text(encoding="utf-8")  # not \u-escaped
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == ["data.jsonl"]


def test_snapshot_refuses_unstorable_values(tmp_path):
    with pytest.raises(DataError, match="row 2: cannot be stored as JSON"):
        write_snapshot([{"a": 1.0}, {"a": float("nan")}], tmp_path)
    with pytest.raises(DataError, match="empty"):
        write_snapshot([], tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# ---------------------------------------------------------------------------- export

@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "parquet"])
def test_export_round_trip(tmp_path, fmt):
    path = export_records(ROWS, tmp_path / f"out.{fmt}")
    assert read_records(path) == ROWS
    assert [p.name for p in tmp_path.iterdir()] == [f"out.{fmt}"]  # no temp file left


def test_export_typed_values_round_trip(tmp_path):
    typed = [{"a": 1, "b": [1, 2], "c": None}, {"a": 2, "b": [], "c": "x"}]
    for fmt in ("jsonl", "json"):
        assert read_records(export_records(typed, tmp_path / f"t.{fmt}")) == typed
    assert read_records(export_records(typed, tmp_path / "t.csv"))[0] == \
        {"a": "1", "b": "[1, 2]", "c": ""}  # CSV holds strings


def test_export_txt_round_trip(tmp_path):
    lines = [{"text": "one"}, {"text": "two"}]
    assert read_records(export_records(lines, tmp_path / "a.txt")) == lines
    paras = [{"text": "p1 l1\np1 l2"}, {"text": "p2"}]
    path = export_records(paras, tmp_path / "b.txt")
    assert read_records(path, text_mode="paragraph") == paras
    assert read_records(path, text_mode="auto") == paras
    with pytest.raises(DataError, match="row 1: text is empty or has a blank line"):
        export_records([{"text": "a\n\nb"}], tmp_path / "c.txt")


# ---------------------------------------------------------------------------- re-exports

def test_dataprep_names_still_import_from_datafiles():
    # datasets.py calls datafiles.prep / datafiles.compute_stats / datafiles.columns, and
    # shards.py imports describe and resolve_text_field from here: same objects, not copies.
    for name in ("columns", "describe", "compute_stats", "PrepResult", "resolve_text_field",
                 "prep"):
        assert name in datafiles.__all__
        assert getattr(datafiles, name) is getattr(dataprep, name)
