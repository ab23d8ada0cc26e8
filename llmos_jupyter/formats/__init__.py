"""formats layer of LLMOS: read GGUF files, Hugging Face directories and our native format.

    detect_format(path) -> "gguf" | "hf" | "native"
    load_checkpoint(path) -> Checkpoint
    read_gguf, read_gguf_metadata, read_hf_dir, read_native, write_native

Every reader returns a Checkpoint in OUR tensor naming (see core/checkpoint.py), its
tokenizer as a TokenizerSpec: gguf_tokenizer.py from GGUF metadata, hf_tokenizer.py from
tokenizer.json.

Imports: `llmos_jupyter.core` and `llmos_jupyter.errors` of ours; torch, numpy,
safetensors and gguf.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from llmos_jupyter.core.checkpoint import Checkpoint
from llmos_jupyter.errors import CheckpointError
from llmos_jupyter.formats.gguf import read_gguf, read_gguf_metadata
from llmos_jupyter.formats.gguf_file import GGUF_MAGIC
from llmos_jupyter.formats.hf import read_hf_dir
from llmos_jupyter.formats.native import is_native_dir, read_native, write_native

Format = Literal["gguf", "hf", "native"]
EXPECTED = (
    "expected a .gguf file, a Hugging Face model directory (config.json + *.safetensors), "
    "or an LLMOS native directory (config.json with format_version + model.safetensors)"
)

__all__ = [
    "Checkpoint",
    "detect_format",
    "load_checkpoint",
    "read_gguf",
    "read_gguf_metadata",
    "read_hf_dir",
    "read_native",
    "write_native",
]


def detect_format(path: str | Path) -> Format:
    """Which checkpoint format `path` holds, from magic bytes or the files present.

    Raises CheckpointError when the path does not exist or is none of the three.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or directory; {EXPECTED}")
    if p.is_file():
        with p.open("rb") as f:
            head = f.read(4)
        if head == GGUF_MAGIC:
            return "gguf"
        raise CheckpointError(
            f"{p}: not a GGUF file (starts with {head!r}, not b'GGUF'); {EXPECTED}"
        )
    if is_native_dir(p):
        return "native"
    if (p / "config.json").is_file():
        return "hf"
    ggufs = sorted(x.name for x in p.glob("*.gguf"))
    hint = f"; it holds {ggufs}: pass one of those files" if ggufs else ""
    raise CheckpointError(f"{p}: directory has no config.json{hint}; {EXPECTED}")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read any supported checkpoint at `path` (see detect_format) into a Checkpoint."""
    readers = {"gguf": read_gguf, "hf": read_hf_dir, "native": read_native}
    return readers[detect_format(path)](path)
