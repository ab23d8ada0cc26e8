"""Seeded mutations of a GGUF file, in five kinds, each a list of in-place byte edits.

    random_bytes   1-8 bytes anywhere (most land in tensor data, i.e. in weights)
    header_bytes   1-4 bytes anywhere before the tensor data (keys, values, table, tokens)
    header_fields  one metadata value set to an edge value of its type (0, -1, 2^32-1,
                   NaN, inf, ...), a value's type id or an array's item count changed
    tensor_table   one tensor's dims, n_dims, ggml type, offset or name changed
    token_strings  one token or merge text changed in place (a random byte, invalid UTF-8,
                   another token's text, two merges swapped)

Edits never change the file's length, so every offset in a case means what it says. The
same seed gives the same cases on every machine.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from tests.formats.gguf_layout import ARRAY, SCALARS, STRING, GGUFLayout

KINDS = ("random_bytes", "header_bytes", "header_fields", "tensor_table", "token_strings")


@dataclass(frozen=True)
class Mutation:
    kind: str
    what: str  # a readable description, printed when a case fails
    edits: tuple[tuple[int, bytes], ...]

    def apply(self, base: bytes) -> bytes:
        out = bytearray(base)
        for at, new in self.edits:
            out[at : at + len(new)] = new
        assert len(out) == len(base)
        return bytes(out)

    def only_before(self, end: int) -> bool:
        """True when every edited byte lies before `end` (e.g. the start of tensor data)."""
        return all(at + len(new) <= end for at, new in self.edits)


def _edge_ints(fmt: str, current: int, rng: random.Random) -> list[int]:
    bits = struct.calcsize(fmt) * 8
    signed = fmt[-1].islower()
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    values = [0, 1, 2, 3, 7, current + 1, current - 1, current * 2, current // 2, hi, hi - 1,
              lo, rng.randint(lo, hi)]
    return [v for v in values if lo <= v <= hi and v != current] or [lo]


_EDGE_FLOATS = [0.0, -0.0, -1.0, 1.0, math.nan, math.inf, -math.inf, 1e-30, 1e30, 1e-45, 3e38,
                0.5, 2.0]


class Mutator:
    """Makes the cases of each kind for one base file."""

    def __init__(self, base: bytes, seed: int) -> None:
        self.base = base
        self.layout = GGUFLayout(base)
        self.rng = random.Random(seed)
        self.data_start = -(-self.layout.header_end // 32) * 32

    def cases(self, kind: str, n: int) -> list[Mutation]:
        make: Callable[[], Mutation] = getattr(self, kind)
        return [make() for _ in range(n)]

    # -- the kinds ---------------------------------------------------------------------------

    def random_bytes(self) -> Mutation:
        return self._bytes("random_bytes", 0, len(self.base), self.rng.choice([1, 1, 2, 4, 8]))

    def header_bytes(self) -> Mutation:
        return self._bytes("header_bytes", 4, self.layout.header_end,
                           self.rng.choice([1, 1, 2, 4]))

    def _bytes(self, kind: str, lo: int, hi: int, n: int) -> Mutation:
        edits = tuple((self.rng.randrange(lo, hi), bytes([self.rng.randrange(256)]))
                      for _ in range(n))
        return Mutation(kind, f"bytes {[(at, b.hex()) for at, b in edits]}", edits)

    def header_fields(self) -> Mutation:
        rng = self.rng
        key = rng.choice(sorted(self.layout.kv))
        kv = self.layout.kv[key]
        type_at = kv.value_at - 4
        choice = rng.random()
        if choice < 0.15:  # the value's type id
            new = rng.choice([0, 4, 5, 6, 8, 9, 10, 12, 13, 255, 2**31])
            return Mutation("header_fields", f"{key}: type {kv.type_id} -> {new}",
                            ((type_at, struct.pack("<I", new)),))
        if kv.type_id in SCALARS:
            fmt = SCALARS[kv.type_id]
            current = struct.unpack_from(fmt, self.base, kv.value_at)[0]
            if fmt == "<?":
                value: object = rng.choice([0, 1, 2, 255])
                packed = bytes([value])  # type: ignore[list-item]
            elif fmt in ("<f", "<d"):
                value = rng.choice(_EDGE_FLOATS + [current * rng.uniform(0.5, 2)])
                packed = struct.pack(fmt, value)
            else:
                value = rng.choice(_edge_ints(fmt, current, rng))
                packed = struct.pack(fmt, value)
            return Mutation("header_fields", f"{key}: {current!r} -> {value!r}",
                            ((kv.value_at, packed),))
        if kv.type_id == STRING:  # its length field
            n = struct.unpack_from("<Q", self.base, kv.value_at)[0]
            new = rng.choice([0, n - 1, n + 1, 2**32, 2**63, 2**64 - 1])
            return Mutation("header_fields", f"{key}: string length {n} -> {new}",
                            ((kv.value_at, struct.pack("<Q", max(new, 0))),))
        assert kv.type_id == ARRAY
        item_type, count = struct.unpack_from("<IQ", self.base, kv.value_at)
        if rng.random() < 0.5:
            new = rng.choice([0, count - 1, count + 1, count * 2, 2**21 + 1, 2**40, 2**64 - 1])
            return Mutation("header_fields", f"{key}: array count {count} -> {new}",
                            ((kv.value_at + 4, struct.pack("<Q", max(new, 0))),))
        new = rng.choice([0, 4, 6, 8, 9, 10, 12, 13])
        return Mutation("header_fields", f"{key}: array item type {item_type} -> {new}",
                        ((kv.value_at, struct.pack("<I", new)),))

    def tensor_table(self) -> Mutation:
        rng = self.rng
        name = rng.choice(list(self.layout.tensors))
        t = self.layout.tensors[name]
        dims, type_id, offset = self.layout.tensor_fields(name)
        field = rng.choice(["dim", "dim", "type", "type", "offset", "offset", "n_dims", "name"])
        if field == "dim":
            i = rng.randrange(len(dims))
            new = rng.choice([0, 1, dims[i] - 1, dims[i] + 1, dims[i] * 2, dims[i] // 2, 32,
                              2**32, 2**63, 2**64 - 1, rng.randrange(2**64)])
            new = max(new, 0)
            return Mutation("tensor_table", f"{name}: dim {i} {dims[i]} -> {new}",
                            ((t.dims_at + 8 * i, struct.pack("<Q", new)),))
        if field == "type":
            new = rng.choice([0, 1, 2, 3, 6, 7, 8, 9, 10, 12, 14, 20, 24, 26, 28, 30, 39, 40,
                              41, 2**31])
            return Mutation("tensor_table", f"{name}: type {type_id} -> {new}",
                            ((t.type_at, struct.pack("<I", new)),))
        if field == "offset":
            others = [self.layout.tensor_fields(n)[2] for n in self.layout.tensors if n != name]
            new = rng.choice([offset + 1, offset - 1, offset + 32, offset - 32, 0,
                              rng.choice(others), 2**63, 2**64 - 1, rng.randrange(2**40)])
            new = min(max(new, 0), 2**64 - 1)
            return Mutation("tensor_table", f"{name}: offset {offset} -> {new}",
                            ((t.offset_at, struct.pack("<Q", new)),))
        if field == "n_dims":
            new = rng.choice([0, 1, 2, 3, 4, 5, 2**32 - 1])
            at = t.dims_at - 4
            return Mutation("tensor_table", f"{name}: n_dims {t.n_dims} -> {new}",
                            ((at, struct.pack("<I", new)),))
        i = rng.randrange(len(name))
        new_char = rng.choice(b"0123456789._abkqvz\xff")
        return Mutation("tensor_table", f"{name}: name byte {i} -> {bytes([new_char])!r}",
                        ((t.name_at + i, bytes([new_char])),))

    def token_strings(self) -> Mutation:
        rng = self.rng
        key = rng.choice(["tokenizer.ggml.tokens", "tokenizer.ggml.merges"])
        items = self.layout.kv[key].items
        assert items is not None
        i = rng.randrange(len(items))
        at, n = items[i]
        choice = rng.random()
        if n and choice < 0.4:
            j = rng.randrange(n)
            new = bytes([rng.choice([rng.randrange(256), 0xFF, 0x20, 0x00, ord("a")])])
            return Mutation("token_strings", f"{key}[{i}] byte {j} -> {new!r}",
                            ((at + j, new),))
        same = [k for k, (_, m) in enumerate(items) if m == n and k != i]
        if same:  # another item's text in its place (a duplicate), or the two swapped
            k = rng.choice(same)
            other_at = items[k][0]
            mine, theirs = self.base[at : at + n], self.base[other_at : other_at + n]
            if choice < 0.7:
                return Mutation("token_strings", f"{key}[{i}] = {key}[{k}] ({theirs!r})",
                                ((at, theirs),))
            return Mutation("token_strings", f"{key}[{i}] <-> {key}[{k}]",
                            ((at, theirs), (other_at, mine)))
        return Mutation("token_strings", f"{key}[{i}] unchanged (no same-length item)", ())
