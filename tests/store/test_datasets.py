"""DatasetStore: snapshots, versions, prep splits, token shards, export, concurrency."""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp

import pandas as pd
import pytest

from llmos_jupyter.errors import DataError, LLMOSError, NotFoundError
from llmos_jupyter.store.catalog import Catalog
from llmos_jupyter.store.datasets import DatasetStore
from tests.store import workers


@pytest.fixture
def datasets(llmos_home) -> DatasetStore:
    return DatasetStore(Catalog())


def test_add_file_snapshot_survives_source_edits(datasets, tmp_path, llmos_home):
    src = tmp_path / "docs.jsonl"
    src.write_text('{"text": "a", "n": 1}\n{"text": "b", "n": 2}\n')
    rec = datasets.add("docs", src)
    assert (rec.rows, rec.columns, rec.format) == (2, ["text", "n"], "jsonl")
    assert rec.source == str(src.resolve()) and len(rec.sha256) == 64
    assert rec.path == f"datasets/docs/{rec.sha256}/data.jsonl"
    assert (llmos_home / rec.path).is_file()
    src.write_text('{"text": "changed"}\n')
    assert datasets.rows("docs") == [{"text": "a", "n": 1}, {"text": "b", "n": 2}]
    assert datasets.head("docs", 1) == [{"text": "a", "n": 1}]
    assert datasets.get("docs") == rec and [d.name for d in datasets.list()] == ["docs"]
    assert rec.stats["rows"] == 2 and rec.stats["columns"]["text"]["type"] == "str"
    json.dumps(rec.to_dict())


def test_add_list_and_dataframe_same_hash(datasets):
    rows = [{"q": "1+1", "a": "2"}, {"q": "2+2", "a": "4"}]
    a = datasets.add("from-list", rows)
    b = datasets.add("from-frame", pd.DataFrame(rows))
    assert a.format == "records" and b.format == "dataframe"
    assert a.sha256 == b.sha256  # same rows, same canonical snapshot


def test_versions_noop_refuse_replace(datasets, llmos_home):
    v1 = datasets.add("d", [{"x": 1}])
    assert datasets.add("d", [{"x": 1}]) == v1  # same content: no-op
    with pytest.raises(LLMOSError, match="replace"):
        datasets.add("d", [{"x": 2}])
    v2 = datasets.add("d", [{"x": 2}], replace=True)
    assert v2.sha256 != v1.sha256 and datasets.rows("d") == [{"x": 2}]
    assert not (llmos_home / "datasets" / "d" / v1.sha256).exists()


def test_bad_data_registers_nothing(datasets, tmp_path, llmos_home):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(DataError, match="line 2"):
        datasets.add("bad", bad)
    with pytest.raises(DataError, match="row 2"):
        datasets.add("bad", [{"a": 1}, "not a dict"])
    assert datasets.list() == []
    assert list((llmos_home / "datasets").iterdir()) == []


def test_not_found_suggests(datasets):
    datasets.add("customer-reviews", [{"text": "x"}])
    with pytest.raises(NotFoundError, match="customer-reviews"):
        datasets.get("customer-review")


def test_remove_and_export(datasets, tmp_path, llmos_home):
    datasets.add("d", [{"text": "a", "n": 1}, {"text": "b", "n": 2}])
    out = datasets.export("d", tmp_path / "d.csv")
    assert out.read_text().splitlines() == ["text,n", "a,1", "b,2"]
    assert datasets.export("d", tmp_path / "d.jsonl").read_text().count("\n") == 2
    datasets.remove("d")
    assert datasets.list() == [] and not (llmos_home / "datasets" / "d").exists()
    with pytest.raises(NotFoundError):
        datasets.remove("d")


def test_prep_split_names_and_parent(datasets):
    rows = [{"text": f"doc {i % 8}"} for i in range(20)] + [{"text": "x"}]
    datasets.add("raw", rows)
    recs = datasets.prep("raw", "clean", dedupe=True, min_chars=3,
                         split={"train": 0.75, "val": 0.25}, seed=1)
    assert [r.name for r in recs] == ["clean-train", "clean-val"]
    assert [r.rows for r in recs] == [6, 2] and all(r.parent == "raw" for r in recs)
    assert recs[0].stats["prep"]["dropped"]["duplicates"] == 12
    texts = [r["text"] for n in ("clean-train", "clean-val") for r in datasets.rows(n)]
    assert sorted(texts) == [f"doc {i}" for i in range(8)]
    single = datasets.prep("raw", "deduped", dedupe=True)
    assert [r.name for r in single] == ["deduped"] and single[0].rows == 9
    with pytest.raises(LLMOSError, match="already exists"):
        datasets.prep("raw", "clean", split={"train": 0.5, "val": 0.5})
    assert datasets.stats("clean-val")["prep"]["part"] == "val"


def test_record_tokenized(datasets, llmos_home):
    datasets.add("d", [{"text": "hello"}])
    path = datasets.shard_path("d", "smollm2-135m-instruct")
    assert path.is_relative_to(llmos_home / "shards")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"shard")
    datasets.record_tokenized("d", "smollm2-135m-instruct", path, {"tokens": 3})
    datasets.record_tokenized("d", "smollm2-135m-instruct", path, {"tokens": 4})  # re-tokenized
    got = datasets.tokenized("d")
    assert len(got) == 1 and got[0]["path"] == str(path) and got[0]["stats"] == {"tokens": 4}
    datasets.remove("d")
    assert not path.exists()
    assert datasets.catalog.query("SELECT * FROM tokenized") == []


def test_two_processes_add_datasets_concurrently(llmos_home, tmp_path):
    barrier, n = tmp_path / "go", 50
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        jobs = [pool.apply_async(workers.add_datasets, (str(llmos_home), p, n, str(barrier)))
                for p in ("a", "b")]
        workers.release(barrier, 2)
        names = [name for j in jobs for name in j.get(timeout=180)]
    store = DatasetStore(Catalog())
    assert sorted(d.name for d in store.list()) == sorted(names) and len(names) == 2 * n
    assert store.rows("b-49")[2] == {"text": "b row 49 2", "j": 2}
    assert store.catalog.integrity_check() == "ok"


def test_streamed_add_with_a_bad_row_late_leaves_nothing(datasets, tmp_path, llmos_home):
    # The file is streamed into staging; row 5001 is bad (and nested past Python's
    # recursion limit): a clear error, no dataset, no snapshot, no staging left.
    src = tmp_path / "big.jsonl"
    with open(src, "w") as f:
        for i in range(5000):
            f.write(json.dumps({"text": f"row {i}"}) + "\n")
        f.write('{"text": ' + "[" * 50_000 + "]" * 50_000 + "}\n")
    with pytest.raises(DataError, match=r"^big\.jsonl line 5001: JSON nested too deeply"):
        datasets.add("big", src)
    assert datasets.names() == []
    assert not (llmos_home / "datasets" / "big").exists()
    assert [p.name for p in (llmos_home / "tmp").iterdir()] == ["locks"]


def test_streamed_add_matches_the_in_memory_add(datasets, tmp_path):
    rows = [{"text": f"row {i}", "n": i, "maybe": None if i % 3 else "x"} for i in range(3000)]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from_file = datasets.add("from-file", src)
    from_list = datasets.add("from-list", rows)
    assert from_file.sha256 == from_list.sha256 and from_file.rows == 3000
    assert from_file.stats == from_list.stats and from_file.columns == ["text", "n", "maybe"]
    assert list(itertools.islice(datasets.iter_rows("from-file"), 2)) == rows[:2]
