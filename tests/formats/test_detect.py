"""detect_format / load_checkpoint: dispatch by magic bytes and files present."""

from __future__ import annotations

import pytest

from llmos_jupyter.errors import CheckpointError
from llmos_jupyter.formats import detect_format, load_checkpoint, read_gguf, write_native
from tests.checkpoint_factory import write_tiny_gguf, write_tiny_hf_dir


def test_detects_and_loads_each_format(tmp_path):
    gguf_path = write_tiny_gguf(tmp_path / "m.gguf")
    hf_path = write_tiny_hf_dir(tmp_path / "hf", tokenizer="vocab", arch="gpt2")
    native_path = write_native(read_gguf(gguf_path), tmp_path / "native")
    for path, kind in [(gguf_path, "gguf"), (hf_path, "hf"), (native_path, "native")]:
        assert detect_format(path) == kind
        assert detect_format(str(path)) == kind
        ckpt = load_checkpoint(path)
        assert ckpt.metadata["format"] == kind
    # A GGUF file renamed without the .gguf suffix is still found by its magic bytes.
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(gguf_path.read_bytes())
    assert detect_format(renamed) == "gguf"


def test_rejects_everything_else(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        detect_format(tmp_path / "missing.gguf")
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(CheckpointError, match=r"weights.pt.*not a GGUF file.*expected"):
        load_checkpoint(junk)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        detect_format(empty)
    write_tiny_gguf(empty / "inside.gguf")
    with pytest.raises(CheckpointError, match="inside.gguf"):
        detect_format(empty)
