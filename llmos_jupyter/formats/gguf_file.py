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

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmos_jupyter.errors import CheckpointError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32

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
# Same types as numpy dtypes, so numeric arrays are read in one call.
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
        return int(np.prod(self.shape, dtype=np.int64))


class GGUFFile:
    """A parsed GGUF file: `fields` (key -> Python value) and `tensors` (name -> info).

    Raises CheckpointError for a bad magic, an unsupported version, a header that runs
    past the end of the file, an unknown tensor type, or tensor data outside the file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._data = np.memmap(self.path, mode="r", dtype=np.uint8)
        except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
            raise CheckpointError(f"{self.path}: cannot read GGUF file ({exc})") from exc
        self.file_size = int(self._data.shape[0])
        self._pos = 0
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
        return struct.unpack_from(fmt, self._data, start)[0]

    def _string(self) -> str:
        n = self._scalar("<Q")
        start = self._take(n)
        try:
            return bytes(self._data[start : start + n]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._fail(f"invalid UTF-8 string at byte {start}") from exc

    def _value(self, vtype: int) -> Any:
        if vtype in _SCALAR_FORMATS:
            return self._scalar(_SCALAR_FORMATS[vtype])
        if vtype == _STRING:
            return self._string()
        if vtype == _ARRAY:
            item_type = self._scalar("<I")
            count = self._scalar("<Q")
            if item_type in _NUMPY_DTYPES:
                dtype = np.dtype(_NUMPY_DTYPES[item_type])
                start = self._take(count * dtype.itemsize)
                return np.frombuffer(self._data, dtype, count, start).tolist()
            if count > self.file_size:  # every element takes at least one byte
                raise self._fail(f"array of {count} items cannot fit in the file")
            return [self._value(item_type) for _ in range(count)]
        raise self._fail(f"unknown metadata value type {vtype} at byte {self._pos - 4}")

    # -- the file structure --------------------------------------------------------------

    def _parse(self) -> None:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

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
        for _ in range(n_kv):
            key = self._string()
            self.fields[key] = self._value(self._scalar("<I"))

        infos = []
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._scalar("<I")
            if not 1 <= n_dims <= 4:
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
            infos.append((name, qtype, dims, offset))

        alignment = self.fields.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise self._fail(f"general.alignment={alignment!r} is not a power of two")
        data_start = -(-self._pos // alignment) * alignment
        self.data_start = data_start

        for name, qtype, dims, offset in infos:
            block_size, type_size = GGML_QUANT_SIZES[qtype]
            if dims[0] % block_size:
                raise self._fail(
                    f"tensor {name!r}: row length {dims[0]} is not a multiple of the "
                    f"{qtype.name} block size {block_size}"
                )
            n_elements = int(np.prod(dims, dtype=np.int64))
            n_bytes = n_elements // block_size * type_size
            start = data_start + offset
            if start + n_bytes > self.file_size:
                raise self._fail(
                    f"data of tensor {name!r} ({n_bytes} bytes at byte {start}) lies past the "
                    f"end of the file ({self.file_size} bytes)"
                )
            if name in self.tensors:
                raise self._fail(f"tensor {name!r} appears twice")
            self.tensors[name] = GGUFTensorInfo(
                name, qtype.name, tuple(int(d) for d in reversed(dims)), start, n_bytes
            )

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
