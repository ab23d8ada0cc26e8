"""Token shards: tokenized documents in one flat, memory-mappable file for training.

Layout (little-endian):

    header   64 bytes   magic b"LLMOSTOK", version u32, dtype code u32 (1 = uint16,
                        2 = uint32), n_tokens u64, n_documents u64, vocab_size u64,
                        eos_id i64 (-1: none), zero padding
    tokens   n_tokens x uint16|uint32, padded with zeros to a multiple of 8 bytes
    offsets  (n_documents + 1) x uint64: offsets[i] is where document i starts in
             `tokens`; offsets[-1] == n_tokens

With an eos_id, every document is followed by one eos token in `tokens` (so a training
window sees where documents end); `Shard.document(i)` leaves it off again. uint16 halves
the file for any vocabulary up to 65536 (SmolLM2's is 49152). The writer goes through a
temporary file and a rename, so a crash never leaves a shard that looks complete; the
reader checks the header and the exact file size, so a truncated copy is caught.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmos_jupyter.data.datafiles import atomic_write, describe, resolve_text_field
from llmos_jupyter.errors import DataError

MAGIC = b"LLMOSTOK"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQq")  # magic, version, dtype, tokens, docs, vocab, eos
HEADER_SIZE = 64
DTYPES = {1: np.dtype("<u2"), 2: np.dtype("<u4")}


@dataclass(frozen=True)
class ShardInfo:
    """What a written shard holds; `stats` has tokens per document when tokenized here."""

    path: Path
    n_tokens: int
    n_documents: int
    dtype: str  # "uint16" or "uint32"
    vocab_size: int
    eos_id: int | None
    nbytes: int
    stats: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the path as a string), e.g. for the catalog's stats column."""
        return {**{k: v for k, v in self.__dict__.items() if k != "path"},
                "path": str(self.path)}


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


def write_shard(path: str | os.PathLike, token_ids: Sequence[Sequence[int]], vocab_size: int,
                eos_id: int | None = None) -> ShardInfo:
    """Write documents of token ids to a shard at `path` (atomically).

    The dtype is uint16 when vocab_size <= 65536, else uint32. Raises DataError for no
    tokens at all, or an id outside [0, vocab_size) (naming the document).
    """
    if not 0 < vocab_size <= 2**32:
        raise DataError(f"vocab_size must be in 1..2**32, got {vocab_size}")
    if eos_id is not None and not 0 <= eos_id < vocab_size:
        raise DataError(f"eos_id {eos_id} is outside the vocabulary (size {vocab_size})")
    code = 1 if vocab_size <= 65536 else 2
    dtype = DTYPES[code]
    extra = 0 if eos_id is None else 1
    lengths = np.array([len(doc) + extra for doc in token_ids], dtype=np.uint64)
    offsets = np.zeros(len(lengths) + 1, dtype="<u8")
    np.cumsum(lengths, out=offsets[1:])
    n_tokens = int(offsets[-1])
    if n_tokens == 0:
        raise DataError(f"{Path(path).name}: no tokens to write (all documents are empty)")
    tokens = np.empty(_pad8(n_tokens * dtype.itemsize) // dtype.itemsize, dtype=dtype)
    tokens[n_tokens:] = 0
    for i, doc in enumerate(token_ids):
        ids = np.asarray(doc, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            bad = int(ids[(ids < 0) | (ids >= vocab_size)][0])
            raise DataError(f"document {i + 1}: token id {bad} is outside the vocabulary "
                            f"(size {vocab_size})")
        start = int(offsets[i])
        tokens[start:start + ids.size] = ids
        if extra:
            tokens[start + ids.size] = eos_id
    header = HEADER.pack(MAGIC, VERSION, code, n_tokens, len(lengths), vocab_size,
                         -1 if eos_id is None else eos_id).ljust(HEADER_SIZE, b"\0")

    def write(f: Any) -> None:
        f.write(header)
        f.write(tokens.tobytes())
        f.write(offsets.tobytes())

    path = Path(path)
    atomic_write(path, write, binary=True)
    return ShardInfo(path, n_tokens, len(lengths), dtype.name, vocab_size, eos_id,
                     path.stat().st_size)


class Shard:
    """A memory-mapped shard: `.tokens` (all tokens), `len()` documents, `.document(i)`."""

    def __init__(self, path: Path, mmap: np.memmap, code: int, n_tokens: int, n_docs: int,
                 vocab_size: int, eos_id: int | None):
        self.path, self.vocab_size, self.eos_id = path, vocab_size, eos_id
        self._mmap = mmap
        self.dtype = DTYPES[code]
        token_bytes = _pad8(n_tokens * self.dtype.itemsize)
        # Views into the one mapping: nothing is read until a page is touched.
        self.tokens = np.frombuffer(mmap, dtype=self.dtype, count=n_tokens, offset=HEADER_SIZE)
        self.offsets = np.frombuffer(mmap, dtype="<u8", count=n_docs + 1,
                                     offset=HEADER_SIZE + token_bytes)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        """Tokens in the shard, eos separators included."""
        return len(self.tokens)

    def document(self, i: int) -> np.ndarray:
        """Tokens of document `i`, without the eos separator (a view, not a copy)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"document {i} out of range for {len(self)} documents")
        i %= len(self)
        end = int(self.offsets[i + 1]) - (0 if self.eos_id is None else 1)
        return self.tokens[int(self.offsets[i]):end]

    __getitem__ = document

    def documents(self) -> Iterator[np.ndarray]:
        """Every document's tokens, in order."""
        return (self.document(i) for i in range(len(self)))

    def close(self) -> None:
        """Drop this shard's references to the mapping; it is unmapped once no view
        taken from it (e.g. a `document(i)` array) is alive any more."""
        self.tokens = self.offsets = np.empty(0, dtype=self.dtype)
        self._mmap = None

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Shard({str(self.path)!r}, documents={len(self)}, tokens={self.n_tokens}, "
                f"dtype={self.dtype.name})")


def open_shard(path: str | os.PathLike) -> Shard:
    """Memory-map the shard at `path`.

    Raises DataError naming the file when it is missing, not a shard, of an unknown
    version or dtype, truncated or padded (size differs from what the header says), or
    its offsets are inconsistent.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such shard file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_SIZE)
    if len(head) < HEADER_SIZE:
        raise DataError(f"{path}: truncated shard ({size} bytes, shorter than the header)")
    magic, version, code, n_tokens, n_docs, vocab, eos = HEADER.unpack_from(head)
    if magic != MAGIC:
        raise DataError(f"{path}: not an LLMOS token shard (bad magic {magic!r})")
    if version != VERSION:
        raise DataError(f"{path}: shard version {version} is not supported (expected {VERSION})")
    if code not in DTYPES:
        raise DataError(f"{path}: corrupt header (unknown dtype code {code})")
    expected = HEADER_SIZE + _pad8(n_tokens * DTYPES[code].itemsize) + (n_docs + 1) * 8
    if size != expected:
        raise DataError(f"{path}: {'truncated' if size < expected else 'corrupt'} shard "
                        f"({size} bytes; the header promises {expected})")
    shard = Shard(path, np.memmap(path, dtype=np.uint8, mode="r"), code, n_tokens, n_docs,
                  vocab, None if eos < 0 else eos)
    offs = shard.offsets
    if offs[0] != 0 or offs[-1] != n_tokens or np.any(np.diff(offs.astype(np.int64)) < 0):
        shard.close()
        raise DataError(f"{path}: corrupt shard (document offsets are inconsistent)")
    return shard


def tokenize_records(records: Sequence[dict[str, Any]], tokenizer: Any, text_field: str | None,
                     out_path: str | os.PathLike, batch_size: int = 1024,
                     progress: Callable[[int, int], None] | None = None) -> ShardInfo:
    """Tokenize `record[text_field]` of every record into a shard at `out_path`.

    `text_field=None` picks "text", else the only string column (`resolve_text_field`).

    `tokenizer` needs `encode_batch(texts) -> list[list[int]]`, `vocab_size` and `eos_id`
    (None for no separator). The returned ShardInfo.stats holds tokens per document
    (min/p50/p90/p99/max/mean). Raises DataError naming a row whose text is missing or
    not a string.
    """
    text_field = resolve_text_field(records, text_field)
    texts = []
    for i, r in enumerate(records, 1):
        value = r.get(text_field)
        if not isinstance(value, str):
            raise DataError(f"row {i}: {text_field!r} is "
                            f"{'missing' if value is None else type(value).__name__}, "
                            "expected a string")
        texts.append(value)
    ids: list[list[int]] = []
    for start in range(0, len(texts), batch_size):
        ids += tokenizer.encode_batch(texts[start:start + batch_size])
        if progress:  # (documents done, documents in all)
            progress(len(ids), len(texts))
    info = write_shard(out_path, ids, tokenizer.vocab_size, getattr(tokenizer, "eos_id", None))
    stats = {"text_field": text_field, "documents": len(ids), "tokens": info.n_tokens,
             "tokens_per_document": describe([len(d) for d in ids])}
    return ShardInfo(**{**info.__dict__, "stats": stats})
