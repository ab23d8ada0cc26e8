"""GGUFFile: lazy, bounded metadata arrays and llama.cpp's header limits, on raw bytes."""

from __future__ import annotations

import struct

import pytest

from llmos_jupyter.errors import CheckpointError
from llmos_jupyter.formats import read_gguf
from llmos_jupyter.formats.gguf_file import (
    MAX_ARRAY_ITEMS,
    MAX_KEYS,
    MAX_TENSORS,
    GGUFArray,
    GGUFFile,
)
from tests.checkpoint_factory import tiny_tokenizer, write_tiny_gguf
from tests.formats.gguf_layout import GGUFLayout


def _s(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def raw_gguf(kv: list[bytes] = (), tensors: list[bytes] = (), n_tensors: int | None = None,
             n_kv: int | None = None, tail: bytes = b"") -> bytes:
    """A GGUF v3 file from already packed kv pairs and tensor infos."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors) if n_tensors is None else n_tensors,
                                 len(kv) if n_kv is None else n_kv)
    return head + b"".join(kv) + b"".join(tensors) + tail


def kv_u32(key: bytes, value: int) -> bytes:
    return _s(key) + struct.pack("<II", 4, value)


def kv_strings(key: bytes, items: list[bytes]) -> bytes:
    return _s(key) + struct.pack("<IIQ", 9, 8, len(items)) + b"".join(_s(i) for i in items)


def tensor_info(name: bytes, dims: list[int], type_id: int = 0, offset: int = 0) -> bytes:
    return (_s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<IQ", type_id, offset))


def parse(tmp_path, data: bytes) -> GGUFFile:
    path = tmp_path / "f.gguf"
    path.write_bytes(data)
    return GGUFFile(path)


def test_arrays_are_lazy_sequences(tmp_path):
    gf = GGUFFile(write_tiny_gguf(tmp_path / "m.gguf"))
    want = tiny_tokenizer(512)
    tokens = gf.fields["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray) and tokens.is_strings and len(tokens) == 512
    assert tokens[1] == "<|im_start|>" and tokens[-1] == want["tokens"][-1]
    assert tokens[3:6] == want["tokens"][3:6] and list(tokens) == want["tokens"]
    types = gf.fields["tokenizer.ggml.token_type"]
    assert not types.is_strings and types.tolist() == want["token_types"]
    assert types == want["token_types"] and "512 strings" in repr(tokens)


def test_invalid_utf8_token_is_found_when_read(tmp_path):
    data = write_tiny_gguf(tmp_path / "m.gguf").read_bytes()
    at, n = GGUFLayout(data).kv["tokenizer.ggml.tokens"].items[300]
    data = data[:at] + b"\xff" + data[at + 1 :]
    gf = parse(tmp_path, data)  # the header parses: token texts are not decoded yet
    with pytest.raises(CheckpointError, match=r"invalid UTF-8 in item 300 of "
                                               r"'tokenizer.ggml.tokens'"):
        gf.fields["tokenizer.ggml.tokens"][300]
    with pytest.raises(CheckpointError, match="invalid UTF-8 in item 300"):
        read_gguf(tmp_path / "f.gguf")


def test_string_array_past_the_end(tmp_path):
    data = raw_gguf([kv_strings(b"a", [b"x", b"y"])])
    with pytest.raises(CheckpointError, match=r"string 1 of metadata array 'a' runs past"):
        parse(tmp_path, data[:-1])


@pytest.mark.parametrize("data,match", [
    (raw_gguf(n_tensors=MAX_TENSORS + 1), rf"claims {MAX_TENSORS + 1} tensors"),
    (raw_gguf(n_kv=MAX_KEYS + 1), rf"and {MAX_KEYS + 1} metadata keys"),
    (raw_gguf([_s(b"big") + struct.pack("<IIQ", 9, 0, MAX_ARRAY_ITEMS + 1)]),
     rf"'big' has {MAX_ARRAY_ITEMS + 1} items"),
    (raw_gguf([_s(b"nest") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 4, 0)]),
     r"array 'nest' has items of unsupported type 9"),
    (raw_gguf([_s(b"s") + struct.pack("<IQ", 8, 2**40)]),
     r"metadata value 's' is 1099511627776 bytes long"),
    (raw_gguf([kv_u32(b"k", 1), kv_u32(b"k", 2)]), r"metadata key 'k' appears twice"),
    (raw_gguf([_s(b"k") + struct.pack("<I", 77)]), r"unknown metadata value type 77 of key 'k'"),
    (raw_gguf(tensors=[tensor_info(b"x" * 64, [4])]), r"a tensor name is 64 bytes long"),
    (raw_gguf(tensors=[tensor_info(b"t", [4, 0])]), r"tensor 't' has an empty dimension"),
    (raw_gguf(tensors=[tensor_info(b"t", [4] * 5)]), r"tensor 't' has 5 dimensions"),
    (raw_gguf(tensors=[tensor_info(b"t", [4], type_id=4)]), r"tensor 't' has unknown ggml type 4"),
    (raw_gguf([kv_u32(b"general.alignment", 24)]), r"general.alignment=24 is not a power"),
])
def test_header_limits(tmp_path, data, match):
    with pytest.raises(CheckpointError, match=match):
        parse(tmp_path, data)


def test_tensor_layout_as_llama_cpp(tmp_path):
    # Two F32 tensors of 4 floats: the second must start at 32 (16 bytes padded to 32).
    def file(second_offset: int, tail_pad: int = 16) -> bytes:
        tensors = [tensor_info(b"a", [4]), tensor_info(b"b", [4], offset=second_offset)]
        head = raw_gguf(tensors=tensors)
        head += bytes(-len(head) % 32)
        return head + bytes(16) + bytes(16) + bytes(16) + bytes(tail_pad)

    gf = parse(tmp_path, file(32))
    assert gf.tensors["b"].offset == gf.data_start + 32 and gf.tensors["b"].n_bytes == 16
    parse(tmp_path, file(32, tail_pad=0))  # the last tensor's padding may be missing
    for offset in (16, 0, 33, 64):
        with pytest.raises(CheckpointError, match=rf"tensor 'b' has offset {offset}, "
                                                   "expected 32"):
            parse(tmp_path, file(offset))
    with pytest.raises(CheckpointError, match=r"1 bytes follow the last tensor's data"):
        parse(tmp_path, file(32, tail_pad=17))


def test_token_type_outside_gguf_types_is_refused(tmp_path):
    data = write_tiny_gguf(tmp_path / "m.gguf").read_bytes()
    kv = GGUFLayout(data).kv["tokenizer.ggml.token_type"]
    at = kv.value_at + 4 + 8 + 4 * 300  # item type, count, then int32 items
    data = data[:at] + struct.pack("<I", 0xD2000001) + data[at + 4 :]
    (tmp_path / "f.gguf").write_bytes(data)
    with pytest.raises(CheckpointError, match=r"token 300 has type -771751935, not one of"):
        read_gguf(tmp_path / "f.gguf")
