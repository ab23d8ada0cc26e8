"""Streamed readers: memory independent of the file, hostile nesting a clear DataError."""

from __future__ import annotations

import inspect
import itertools
import json

import pytest

from llmos_jupyter.data.dataprep import StatsBuilder, compute_stats
from llmos_jupyter.data.datareaders import iter_records, read_records
from llmos_jupyter.errors import DataError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("a.jsonl", '{"t": 1}\n{"t": 2}\n', "{broken\n"),
    ("a.csv", "t,u\n1,2\n3,4\n", "5,6,7\n"),
    ("a.tsv", "t\tu\n1\t2\n3\t4\n", "5\n"),
    ("a.txt", "one\ntwo\n", "three\n"),
])
def test_records_are_streamed_not_read_whole(tmp_path, name, good, bad):
    # A reader that took the whole file first would fail on the bad last line before
    # giving anything; a streamed one gives the first two records, then names the line.
    path = write(tmp_path, name, good + bad)
    records = iter_records(path)
    assert inspect.isgenerator(records)
    assert len(list(itertools.islice(records, 2))) == 2
    if name != "a.txt":  # every line of text is a record: nothing to break there
        with pytest.raises(DataError, match=rf"a\.{name[2:]} .*line \d"):
            read_records(path)


def test_deeply_nested_jsonl_names_the_line(tmp_path):
    # 100000 levels: json.loads raised RecursionError, a traceback, not an error.
    path = write(tmp_path, "deep.jsonl", '{"ok": 1}\n{"x": ' + "[" * 100_000 + "]" * 100_000
                 + "}\n")
    with pytest.raises(DataError, match=r"^deep\.jsonl line 2: JSON nested too deeply"):
        read_records(path)
    whole = write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=r"^deep\.json: JSON nested too deeply"):
        read_records(whole)


def test_a_number_too_long_for_python_names_the_line(tmp_path):
    # Python refuses to convert integers of over 4300 digits: json.loads raised a bare
    # ValueError (not a JSONDecodeError), which escaped as a traceback.
    huge = "1" + "0" * 5000
    path = write(tmp_path, "big.jsonl", '{"ok": 1}\n{"n": ' + huge + "}\n")
    with pytest.raises(DataError, match=r"^big\.jsonl line 2: a number of over \d+ digits; "
                                        "quote it as a string"):
        read_records(path)
    whole = write(tmp_path, "big.json", '[{"n": ' + huge + "}]")
    with pytest.raises(DataError, match=r"^big\.json: a number of over \d+ digits"):
        read_records(whole)
    quoted = write(tmp_path, "ok.jsonl", '{"n": "' + huge + '"}\n')
    assert read_records(quoted) == [{"n": huge}]


def test_utf8_error_in_a_streamed_csv_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n" + b"x,y\n" * 5000 + b"\xff,z\n")
    with pytest.raises(DataError, match=r"^bad\.csv line 5002: not valid UTF-8"):
        read_records(path)


def test_text_auto_mode_decides_in_a_streaming_pass(tmp_path):
    paragraphs = write(tmp_path, "p.txt", "\n\na\nb\n\nc\n\n")
    assert read_records(paragraphs, text_mode="auto") == [{"text": "a\nb"}, {"text": "c"}]
    lines = write(tmp_path, "l.txt", "\n\na\nb\nc\n\n")
    assert read_records(lines, text_mode="auto") == [{"text": "a"}, {"text": "b"},
                                                     {"text": "c"}]
    crlf = write(tmp_path, "c.txt", "a\r\nb\rc")
    assert read_records(crlf) == [{"text": "a"}, {"text": "b"}, {"text": "c"}]


def test_stats_builder_matches_compute_stats():
    records = [{"a": 1, "b": "xy"}, {"a": 2.5, "b": None, "c": True}, {"b": "xyz", "d": [1]},
               {"a": None}]
    builder = StatsBuilder()
    for r in records:
        builder.add(r)
    assert builder.result() == compute_stats(records)
    assert builder.columns() == ["a", "b", "c", "d"]
    assert json.dumps(builder.result())  # plain JSON for the catalog
