"""formats/finite.py: NaN/inf weights and block scales are found; its scale table is
checked against gguf-py's own dequantizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from llmos_jupyter.core.checkpoint import QuantizedTensor
from llmos_jupyter.formats.finite import BLOCK_SCALES, is_finite, nonfinite_tensors

NAN_F16 = np.array([np.nan], dtype="<f2").view(np.uint8)


@pytest.mark.parametrize("kind", sorted(BLOCK_SCALES))
def test_scale_offsets_are_where_ggml_keeps_them(kind):
    qtype = GGMLQuantizationType[kind]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    assert BLOCK_SCALES[kind][0] == type_size
    for off in BLOCK_SCALES[kind][1]:
        blocks = np.zeros((1, type_size), dtype=np.uint8)
        blocks[0, off : off + 2] = NAN_F16
        # A NaN scale times any quant (even 0) is NaN: the dequantizer proves the offset.
        assert np.isnan(dequantize(blocks, qtype)).any(), (kind, off)
        assert not is_finite(QuantizedTensor(kind, blocks, (1, block_size)))
    assert is_finite(QuantizedTensor(kind, np.zeros((1, type_size), np.uint8), (1, block_size)))


def test_dense_tensors():
    good = torch.randn(4, 4)
    assert is_finite(good) and is_finite(torch.arange(3))
    for bad_value in (float("nan"), float("inf"), -float("inf")):
        bad = good.clone().to(torch.bfloat16)
        bad[2, 1] = bad_value
        assert not is_finite(bad)
    assert nonfinite_tensors({"a": good, "b": good.clone().fill_(float("nan"))}) == ["b"]
