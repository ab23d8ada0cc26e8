"""A small, strict parser of the GGUF container: header, key/value metadata, tensor table.

Why not `gguf.GGUFReader`: it builds one numpy view per array element, which takes
seconds on a 49k-token vocabulary, and it reads tensor data without checking it lies
inside the file, so a truncated download surfaces as an obscure numpy reshape error.
This parser walks the header with `struct` (about 0.2 s for SmolLM2's vocabulary),
checks every length and offset against the file size, and raises CheckpointError naming
the file. Tensor bytes are served from one read-only memory map.

Layout (little-endian, GGUF v2/v3): magic "GGUF", u32 version, u64 tensor count,
u64 kv count, the kv pairs, the tensor infos (name, u32 n_dims, u64 dims in ggml order
(fastest-varying first), u32 ggml type, u64 offset), padding to `general.alignment`,
then the tensor data.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmos_jupyter.errors import CheckpointError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

# Limits on the header, checked as each count is read, so a hostile count is refused
# before any work or memory is spent on it. Real files are far below them: SmolLM2 has 33
# keys and 272 tensors; Llama 3 has 128k tokens and 280k merges; Gemma 3 262k tokens.
MAX_KEYS = 1 << 16
MAX_TENSORS = 1 << 16
MAX_ARRAY_ITEMS = 1 << 21  # one metadata array
MAX_METADATA_ITEMS = 1 << 22  # all metadata arrays together
MAX_STRING_BYTES = 1 << 24  # one string (chat templates are tens of KB)
MAX_NAME_BYTES = 64  # a tensor name, as llama.cpp's GGML_MAX_NAME (63 + NUL)
MAX_DIMS = 4  # as llama.cpp's GGML_MAX_DIMS
INT64_MAX = (1 << 63) - 1

# GGUF value type id -> struct format of a scalar; 8 (string) and 9 (array) are special.
_SCALAR_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
# Same types as numpy dtypes, so numeric arrays are views of the file.
_NUMPY_DTYPES = {
    0: "<u1",
    1: "<i1",
    2: "<u2",
    3: "<i2",
    4: "<u4",
    5: "<i4",
    6: "<f4",
    7: "?",
    10: "<u8",
    11: "<i8",
    12: "<f8",
}
_STRING, _ARRAY = 8, 9


class GGUFArray(Sequence):
    """A metadata array, decoded only when read.

    Numbers are a read-only numpy view of the file; strings are kept as (start, length)
    pairs, 16 bytes an item whatever the text. So parsing a header costs little time and
    memory however large its arrays, and `show` never decodes a 49k-token vocabulary.
    """

    def __init__(self, gguf: GGUFFile, key: str, numbers: np.ndarray | None = None,
                 starts: np.ndarray | None = None, lengths: np.ndarray | None = None) -> None:
        self._gguf, self.key = gguf, key
        self._numbers, self._starts, self._lengths = numbers, starts, lengths

    @property
    def is_strings(self) -> bool:
        """Whether the items are strings (else numbers or booleans)."""
        return self._numbers is None

    def __len__(self) -> int:
        return len(self._numbers if self._numbers is not None else self._starts)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self._numbers is not None:
            return self._numbers[i].item()
        start, n = int(self._starts[i]), int(self._lengths[i])
        return self._gguf.decode(start, n, f"item {i} of {self.key!r}")

    def __iter__(self) -> Iterator[Any]:
        return iter(self.tolist())

    def tolist(self) -> list[Any]:
        """Every item as a Python int, float, bool or str."""
        if self._numbers is not None:
            return self._numbers.tolist()
        if not len(self):
            return []
        # One copy of the array's whole span, then plain bytes slices: ~20x faster than
        # slicing the memory map per item (98k items of SmolLM2's vocabulary and merges).
        lo = int(self._starts[0])
        blob = self._gguf.span(lo, int(self._starts[-1] + self._lengths[-1]))
        out = []
        for i, (start, n) in enumerate(zip(self._starts.tolist(), self._lengths.tolist(),
                                           strict=True)):
            try:
                out.append(blob[start - lo : start - lo + n].decode("utf-8"))
            except UnicodeDecodeError:
                out.append(self[i])  # raises the CheckpointError naming the item
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GGUFArray):
            other = other.tolist()
        return isinstance(other, list) and self.tolist() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        kind = "strings" if self.is_strings else str(self._numbers.dtype)
        return f"<GGUFArray {self.key!r}: {len(self)} {kind}>"


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One entry of the tensor table.

    `shape` is in torch order (ggml order reversed); `offset` is absolute in the file.
    """

    name: str
    ggml_type: str
    shape: tuple[int, ...]
    offset: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        # math.prod on Python ints: np.prod wraps around past 2^63 (to 0 for 2^32 x 2^32).
        return math.prod(self.shape)


class GGUFFile:
    """A parsed GGUF file: `fields` (key -> Python value or GGUFArray), `tensors` (name -> info).

    Raises CheckpointError for a bad magic, an unsupported version, a header that runs
    past the end of the file or over a limit above, an unknown tensor type, or a tensor
    data layout llama.cpp would refuse: every tensor must start where the previous one
    (padded to `general.alignment`) ends, in table order, and end inside the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._data = np.memmap(self.path, mode="r", dtype=np.uint8)
        except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
            raise CheckpointError(f"{self.path}: cannot read GGUF file ({exc})") from exc
        self.file_size = int(self._data.shape[0])
        self._view = memoryview(self._data)  # slices of it are cheap; the memmap's are not
        self._pos = 0
        self._items = 0  # metadata array items so far (MAX_METADATA_ITEMS)
        self.fields: dict[str, Any] = {}
        self.tensors: dict[str, GGUFTensorInfo] = {}
        self._parse()

    # -- primitive reads, each bounds-checked -------------------------------------------

    def _fail(self, what: str) -> CheckpointError:
        return CheckpointError(
            f"{self.path}: {what}; the GGUF file is truncated or corrupt — download or "
            "convert it again"
        )

    def _take(self, n: int) -> int:
        start = self._pos
        if n < 0 or start + n > self.file_size:
            raise self._fail(f"header runs past the end of the file at byte {start}")
        self._pos = start + n
        return start

    def _scalar(self, fmt: str) -> Any:
        start = self._take(struct.calcsize(fmt))
        return struct.unpack_from(fmt, self._view, start)[0]

    def span(self, start: int, end: int) -> bytes:
        """A copy of the file's bytes [start, end)."""
        return bytes(self._view[start:end])

    def decode(self, start: int, n: int, what: str) -> str:
        """The UTF-8 text of bytes [start, start + n); CheckpointError naming `what`."""
        try:
            return str(self._view[start : start + n], "utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail(f"invalid UTF-8 in {what} at byte {start}") from exc

    def _string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        n = self._scalar("<Q")
        if n > limit:
            raise self._fail(f"{what} is {n} bytes long, more than the {limit} allowed")
        return self.decode(self._take(n), n, what)

    def _count_items(self, key: str, count: int) -> None:
        self._items += count
        if count > MAX_ARRAY_ITEMS or self._items > MAX_METADATA_ITEMS:
            raise self._fail(
                f"metadata array {key!r} has {count} items; LLMOS reads at most "
                f"{MAX_ARRAY_ITEMS} per array and {MAX_METADATA_ITEMS} in all"
            )

    def _string_array(self, key: str, count: int) -> GGUFArray:
        """Walk `count` strings, keeping where each lies (lengths read, text not decoded)."""
        starts = np.empty(count, dtype=np.int64)
        lengths = np.empty(count, dtype=np.int64)
        pos, size, data, unpack = self._pos, self.file_size, self._view, struct.unpack_from
        for i in range(count):
            if pos + 8 > size:
                break
            n = unpack("<Q", data, pos)[0]
            pos += 8
            if n > size - pos:
                break
            starts[i], lengths[i] = pos, n
            pos += n
        else:
            self._pos = pos
            return GGUFArray(self, key, starts=starts, lengths=lengths)
        raise self._fail(f"string {i} of metadata array {key!r} runs past the end of the file")

    def _value(self, vtype: int, key: str) -> Any:
        if vtype in _SCALAR_FORMATS:
            return self._scalar(_SCALAR_FORMATS[vtype])
        if vtype == _STRING:
            return self._string(f"metadata value {key!r}")
        if vtype == _ARRAY:
            item_type = self._scalar("<I")
            count = self._scalar("<Q")
            self._count_items(key, count)
            if item_type in _NUMPY_DTYPES:
                dtype = np.dtype(_NUMPY_DTYPES[item_type])
                start = self._take(count * dtype.itemsize)
                return GGUFArray(self, key, numbers=np.frombuffer(self._data, dtype, count, start))
            if item_type == _STRING:
                return self._string_array(key, count)
            # Arrays of arrays: llama.cpp refuses them too, and no model uses them.
            raise self._fail(f"metadata array {key!r} has items of unsupported type {item_type}")
        raise self._fail(f"unknown metadata value type {vtype} of key {key!r}")

    # -- the file structure --------------------------------------------------------------

    def _parse(self) -> None:
        if self.file_size < 4 or bytes(self._data[:4]) != GGUF_MAGIC:
            head = bytes(self._data[:4]) if self.file_size else b""
            raise CheckpointError(
                f"{self.path}: not a GGUF file (starts with {head!r}, expected b'GGUF'); "
                "pass a .gguf model, a Hugging Face model directory, or an LLMOS native directory"
            )
        self._pos = 4
        self.version = self._scalar("<I")
        if self.version not in SUPPORTED_VERSIONS:
            # A byte-swapped version number means a big-endian file, which we do not read.
            raise CheckpointError(
                f"{self.path}: GGUF version {self.version} is not supported "
                f"(supported: {SUPPORTED_VERSIONS}, little-endian); "
                "re-convert it with a recent llama.cpp"
            )
        n_tensors = self._scalar("<Q")
        n_kv = self._scalar("<Q")
        if n_tensors > MAX_TENSORS or n_kv > MAX_KEYS:
            raise self._fail(f"header claims {n_tensors} tensors and {n_kv} metadata keys "
                             f"(at most {MAX_TENSORS} and {MAX_KEYS})")
        for _ in range(n_kv):
            key = self._string("a metadata key", limit=1 << 16)
            if key in self.fields:
                raise self._fail(f"metadata key {key!r} appears twice")
            self.fields[key] = self._value(self._scalar("<I"), key)
        infos = [self._tensor_info() for _ in range(n_tensors)]

        alignment = self.fields.get("general.alignment", DEFAULT_ALIGNMENT)
        if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
            raise self._fail(f"general.alignment={alignment!r} is not a power of two")
        self.alignment = alignment
        self.data_start = -(-self._pos // alignment) * alignment
        self._place(infos)

    def _tensor_info(self) -> tuple[str, Any, list[int], int]:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        name = self._string("a tensor name", limit=MAX_NAME_BYTES - 1)
        n_dims = self._scalar("<I")
        if not 1 <= n_dims <= MAX_DIMS:
            raise self._fail(f"tensor {name!r} has {n_dims} dimensions")
        dims = [self._scalar("<Q") for _ in range(n_dims)]
        type_id = self._scalar("<I")
        offset = self._scalar("<Q")
        try:
            qtype = GGMLQuantizationType(type_id)
        except ValueError:
            qtype = None
        if qtype is None or qtype not in GGML_QUANT_SIZES:
            raise self._fail(f"tensor {name!r} has unknown ggml type {type_id}")
        return name, qtype, dims, offset

    def _place(self, infos: list[tuple[str, Any, list[int], int]]) -> None:
        """Check each tensor's size and offset as llama.cpp's gguf_init does, in Python ints
        (no wrap-around), and record it."""
        from gguf.constants import GGML_QUANT_SIZES

        expected = 0  # where the next tensor must start, relative to data_start
        for name, qtype, dims, offset in infos:
            block_size, type_size = GGML_QUANT_SIZES[qtype]
            if min(dims) < 1:
                raise self._fail(f"tensor {name!r} has an empty dimension {dims}")
            if dims[0] % block_size:
                raise self._fail(
                    f"tensor {name!r}: row length {dims[0]} is not a multiple of the "
                    f"{qtype.name} block size {block_size}"
                )
            n_elements = math.prod(dims)
            n_bytes = n_elements // block_size * type_size
            if n_elements > INT64_MAX or n_bytes > self.file_size:
                raise self._fail(
                    f"tensor {name!r} of shape {dims} ({n_elements} elements, {n_bytes} bytes) "
                    f"cannot fit in the file ({self.file_size} bytes)"
                )
            if name in self.tensors:
                raise self._fail(f"tensor {name!r} appears twice")
            # Each tensor starts where the previous one's padded data ends: anything else
            # means overlapping, misaligned or reordered data, i.e. a corrupt table.
            if offset != expected:
                raise self._fail(f"tensor {name!r} has offset {offset}, expected {expected}")
            start = self.data_start + offset
            if start + n_bytes > self.file_size:
                raise self._fail(
                    f"data of tensor {name!r} ({n_bytes} bytes at byte {start}) lies past the "
                    f"end of the file ({self.file_size} bytes)"
                )
            expected = offset + -(-n_bytes // self.alignment) * self.alignment
            self.tensors[name] = GGUFTensorInfo(
                name, qtype.name, tuple(int(d) for d in reversed(dims)), start, n_bytes
            )
        # Writers pad after the last tensor too; more bytes than that mean the table does
        # not describe the data (e.g. the last tensor's type was changed to a smaller one).
        if infos and self.file_size > self.data_start + expected:
            extra = self.file_size - self.data_start - expected
            raise self._fail(f"{extra} bytes follow the last tensor's data, which the "
                             "tensor table does not account for")

    # -- tensor data ---------------------------------------------------------------------

    def raw(self, info: GGUFTensorInfo) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 view, shaped [rows..., bytes_per_row]."""
        flat = self._data[info.offset : info.offset + info.n_bytes]
        rows = info.shape[:-1]
        return flat.reshape(*rows, -1) if rows else flat.reshape(1, -1)[0]

    def array(self, info: GGUFTensorInfo) -> np.ndarray:
        """F32/F16 data as a numpy view in torch order; BF16 as its uint16 bit patterns."""
        dtypes = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
        if info.ggml_type not in dtypes:
            raise CheckpointError(
                f"{self.path}: tensor {info.name!r} has type {info.ggml_type}, not a float type"
            )
        return self.raw(info).view(dtypes[info.ggml_type]).reshape(info.shape)
