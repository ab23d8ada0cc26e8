"""Token shards: write, memory-map, reject corrupt files, tokenize records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmos_jupyter.data.shards import HEADER_SIZE, open_shard, tokenize_records, write_shard
from llmos_jupyter.errors import DataError

DOCS = [[5, 6, 7], [], [65535, 0], [1]]


class ByteTokenizer:
    """A real (if tiny) tokenizer: one token per UTF-8 byte, eos = 256."""

    vocab_size, eos_id = 257, 256

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode()) for t in texts]


@pytest.mark.parametrize("eos", [None, 3])
def test_round_trip_uint16(tmp_path, eos):
    info = write_shard(tmp_path / "a.tok", DOCS, vocab_size=65536, eos_id=eos)
    assert info.dtype == "uint16" and info.n_documents == 4
    assert info.n_tokens == 6 + (4 if eos is not None else 0)
    with open_shard(info.path) as shard:
        assert shard.dtype == np.uint16 and len(shard) == 4 and shard.eos_id == eos
        assert [d.tolist() for d in shard.documents()] == DOCS
        assert shard[-1].tolist() == [1]
        expected = [t for d in DOCS for t in d + ([eos] if eos is not None else [])]
        assert shard.tokens.tolist() == expected
    assert info.nbytes == (tmp_path / "a.tok").stat().st_size


def test_round_trip_uint32(tmp_path):
    docs = [[70000, 1, 99999], [2**31]]
    info = write_shard(tmp_path / "b.tok", docs, vocab_size=2**32, eos_id=100000)
    shard = open_shard(info.path)
    assert info.dtype == "uint32" and shard.dtype == np.uint32
    assert [d.tolist() for d in shard.documents()] == docs
    assert shard.tokens.tolist() == [70000, 1, 99999, 100000, 2**31, 100000]
    assert not shard.tokens.flags.writeable  # a read-only view of the mapped file


def test_write_rejects_bad_ids(tmp_path):
    with pytest.raises(DataError, match="document 2: token id 300 is outside"):
        write_shard(tmp_path / "c.tok", [[1], [2, 300]], vocab_size=257)
    with pytest.raises(DataError, match="no tokens"):
        write_shard(tmp_path / "c.tok", [[], []], vocab_size=257)
    assert not list(tmp_path.iterdir())  # nothing written


def test_truncated_and_corrupt(tmp_path):
    info = write_shard(tmp_path / "d.tok", DOCS, vocab_size=65536, eos_id=3)
    data = info.path.read_bytes()
    cases = {
        "trunc.tok": (data[:-5], "truncated shard"),
        "head.tok": (data[:20], "shorter than the header"),
        "magic.tok": (b"NOTATOKN" + data[8:], "not an LLMOS token shard"),
        "dtype.tok": (data[:12] + b"\x09\0\0\0" + data[16:], r"corrupt header \(unknown dtype"),
        "long.tok": (data + b"\0" * 8, "corrupt shard"),
    }
    # Offsets that do not add up: last offset (at the very end) changed.
    bad_offsets = bytearray(data)
    bad_offsets[-8:] = (999).to_bytes(8, "little")
    cases["offsets.tok"] = (bytes(bad_offsets), "offsets are inconsistent")
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=message) as e:
            open_shard(path)
        assert name in str(e.value)
    assert len(data) > HEADER_SIZE


def test_tokenize_records(tmp_path):
    records = [{"text": "héllo"}, {"text": "ab"}, {"text": "xyz!"}]
    info = tokenize_records(records, ByteTokenizer(), "text", tmp_path / "e.tok", batch_size=2)
    shard = open_shard(info.path)
    assert [bytes(d.tolist()).decode() for d in shard.documents()] == ["héllo", "ab", "xyz!"]
    per_doc = info.stats["tokens_per_document"]
    assert per_doc["min"] == 2 and per_doc["max"] == 6 and per_doc["p50"] == 4
    assert info.stats["tokens"] == 6 + 2 + 4 + 3  # with one eos per document
    assert json.loads(json.dumps(info.to_dict()))["path"] == str(tmp_path / "e.tok")
    # No text_field: "text" if present, else the only string column.
    other = tokenize_records([{"body": "ab", "n": 1}], ByteTokenizer(), None, tmp_path / "g.tok")
    assert other.stats["text_field"] == "body" and other.n_tokens == 3
    with pytest.raises(DataError, match="row 2: 'text' is missing"):
        tokenize_records([{"text": "a"}, {"body": "b"}], ByteTokenizer(), "text",
                         tmp_path / "f.tok")
