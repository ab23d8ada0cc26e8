"""Where each field of a GGUF file lies, so tests can edit one in place.

Written apart from llmos_jupyter.formats.gguf_file on purpose (a test must not trust the
parser it tests): a plain walk of the GGUF v3 layout recording byte positions.

    layout = GGUFLayout(data)
    layout.kv["llama.context_length"]      -> KV(type_id, value_at, value_size)
    layout.tensors["token_embd.weight"]    -> TensorEntry(dims_at, n_dims, type_at, offset_at)
    patched = layout.set_kv(data, "llama.context_length", 2**32 - 1)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# GGUF scalar value types -> struct format
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


@dataclass(frozen=True)
class KV:
    type_id: int
    value_at: int  # first byte of the value (after the u32 type)
    value_size: int  # bytes of the whole value
    items: list[tuple[int, int]] | None = None  # string arrays: (at, length) of each text


@dataclass(frozen=True)
class TensorEntry:
    name_at: int  # first byte of the name text
    dims_at: int
    n_dims: int
    type_at: int
    offset_at: int


class GGUFLayout:
    """Byte positions of every metadata value and tensor-table field of `data`."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 8
        n_tensors, n_kv = self._unpack("<QQ")
        self.kv: dict[str, KV] = {}
        for _ in range(n_kv):
            key = self._str()[1]
            type_id = self._unpack("<I")[0]
            start = self.pos
            items = self._skip(type_id)
            self.kv[key] = KV(type_id, start, self.pos - start, items)
        self.tensors: dict[str, TensorEntry] = {}
        for _ in range(n_tensors):
            name_at, name = self._str()
            n_dims = self._unpack("<I")[0]
            dims_at = self.pos
            self.pos += 8 * n_dims
            type_at = self.pos
            offset_at = type_at + 4
            self.pos = offset_at + 8
            self.tensors[name] = TensorEntry(name_at, dims_at, n_dims, type_at, offset_at)
        self.header_end = self.pos

    def _unpack(self, fmt: str) -> tuple:
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return out

    def _str(self) -> tuple[int, str]:
        n = self._unpack("<Q")[0]
        at = self.pos
        self.pos += n
        return at, self.data[at : at + n].decode("utf-8")

    def _skip(self, type_id: int) -> list[tuple[int, int]] | None:
        if type_id in SCALARS:
            self.pos += struct.calcsize(SCALARS[type_id])
            return None
        if type_id == STRING:
            self._str()
            return None
        item_type, count = self._unpack("<IQ")
        if item_type in SCALARS:
            self.pos += count * struct.calcsize(SCALARS[item_type])
            return None
        items = []
        for _ in range(count):
            at, text = self._str()
            items.append((at, len(text.encode("utf-8"))))
        return items

    # -- edits (each returns new bytes) ----------------------------------------------------

    def set_kv(self, data: bytes, key: str, value: int | float) -> bytes:
        """Replace a scalar value in place (same type, so the layout is unchanged)."""
        kv = self.kv[key]
        packed = struct.pack(SCALARS[kv.type_id], value)
        return data[: kv.value_at] + packed + data[kv.value_at + len(packed) :]

    def set_tensor(self, data: bytes, name: str, *, dims: list[int] | None = None,
                   type_id: int | None = None, offset: int | None = None) -> bytes:
        """Replace a tensor's dims (same count), ggml type id or offset in place."""
        t = self.tensors[name]
        out = bytearray(data)
        if dims is not None:
            assert len(dims) == t.n_dims
            out[t.dims_at : t.dims_at + 8 * t.n_dims] = struct.pack(f"<{t.n_dims}Q", *dims)
        if type_id is not None:
            out[t.type_at : t.type_at + 4] = struct.pack("<I", type_id)
        if offset is not None:
            out[t.offset_at : t.offset_at + 8] = struct.pack("<Q", offset)
        return bytes(out)

    def tensor_fields(self, name: str) -> tuple[list[int], int, int]:
        """(dims in ggml order, type id, offset) of a tensor as stored."""
        t = self.tensors[name]
        dims = list(struct.unpack_from(f"<{t.n_dims}Q", self.data, t.dims_at))
        type_id, offset = struct.unpack_from("<IQ", self.data, t.type_at)
        return dims, type_id, offset
