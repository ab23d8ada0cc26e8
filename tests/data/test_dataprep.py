"""Describing and preparing records in memory: stats, text field, cleaning, splitting."""

from __future__ import annotations

import numpy as np
import pytest

from llmos_jupyter.data.dataprep import columns, compute_stats, prep
from llmos_jupyter.errors import DataError


class ByteTokenizer:
    """A real (if tiny) tokenizer: one token per UTF-8 byte, eos after the bytes."""

    vocab_size, eos_id = 257, 256

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode()) for t in texts]


# ---------------------------------------------------------------------------- stats

def test_stats_percentiles_match_numpy():
    rng = np.random.default_rng(0)
    texts = ["x" * int(n) for n in rng.integers(1, 500, size=301)]
    records = [{"text": t, "n": i, "maybe": None if i % 3 else "y"} for i, t in enumerate(texts)]
    stats = compute_stats(records, tokenizer=ByteTokenizer())
    assert stats["rows"] == 301
    assert columns(records) == ["text", "n", "maybe"]
    col = stats["columns"]["text"]
    lengths = np.array([len(t) for t in texts])
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert col["chars"][key] == pytest.approx(np.percentile(lengths, q))
    assert col["chars"]["min"] == lengths.min() and col["chars"]["max"] == lengths.max()
    assert col["chars"]["mean"] == pytest.approx(lengths.mean())
    assert col["tokens"] == col["chars"]  # one byte per char here
    assert stats["columns"]["n"] == {"type": "int", "non_null": 301}
    assert stats["columns"]["maybe"]["non_null"] == 101
    assert compute_stats([{"a": 1}, {"a": "b"}])["columns"]["a"]["type"] == "mixed(int,str)"


# ---------------------------------------------------------------------------- prep

def test_prep_filters_and_report():
    records = [{"text": "  dup  "}, {"text": "dup"}, {"text": "x"}, {"text": None},
               {"text": "a much longer text"}, {"text": "fine"}]
    result = prep(records, strip=True, dedupe=True, min_chars=2, max_chars=10)
    assert result["all"] == [{"text": "dup"}, {"text": "fine"}]
    assert result.report["dropped"] == {"missing_text": 1, "min_chars": 1, "max_chars": 1,
                                        "duplicates": 1}
    assert result.report["stripped"] == 1 and result.report["output"] == 2
    assert records[0] == {"text": "  dup  "}  # input untouched


def test_prep_text_field_resolution():
    assert prep([{"body": "x", "n": 1}], dedupe=True).report["text_field"] == "body"
    with pytest.raises(DataError, match="pass text_field="):
        prep([{"a": "x", "b": "y"}], dedupe=True)
    with pytest.raises(DataError, match="row 2: 'text' must be a string"):
        prep([{"text": "x"}, {"text": 3}], strip=True)


def test_prep_split_deterministic_and_fractions():
    records = [{"text": f"t{i}"} for i in range(103)]
    a = prep(records, split={"train": 0.8, "val": 0.1, "test": 0.1}, seed=7)
    b = prep(records, split={"train": 0.8, "val": 0.1, "test": 0.1}, seed=7)
    c = prep(records, split={"train": 0.8, "val": 0.1, "test": 0.1}, seed=8)
    assert a == b and a != c
    sizes = {k: len(v) for k, v in a.items()}
    assert sum(sizes.values()) == 103 and sizes == a.report["splits"]
    for part, frac in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(sizes[part] - frac * 103) < 1
    texts = [r["text"] for part in a.values() for r in part]
    assert sorted(texts) == sorted(r["text"] for r in records)  # a partition


@pytest.mark.parametrize("split", [{"train": 0.5, "val": 0.4}, {"train": 1.2, "val": -0.2},
                                   {}, {"train": "0.9", "val": 0.1}])
def test_prep_bad_split(split):
    with pytest.raises(DataError, match="split"):
        prep([{"text": "a"}], split=split)


def test_prep_split_rest_goes_to_train():
    records = [{"text": f"row {i}"} for i in range(20)]
    out = prep(records, split={"val": 0.1}, seed=0)
    assert {k: len(v) for k, v in out.items()} == {"train": 18, "val": 2}
    with pytest.raises(DataError, match="add up to 1"):
        prep(records, split={"val": 0.7, "test": 0.5})
