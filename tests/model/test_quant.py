"""Quantized linear layers against a float32 matmul on their dequantized weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from llmos_jupyter.core.checkpoint import QuantizedTensor
from llmos_jupyter.model import ggml_linear
from llmos_jupyter.model.ggml_linear import GGMLLinear
from llmos_jupyter.model.quant import Int4Linear, Int8Linear
from tests.model.helpers import rel_err


def _quantized(kind: str, N: int = 96, K: int = 160, seed: int = 0) -> QuantizedTensor:
    w = np.random.default_rng(seed).standard_normal((N, K)).astype(np.float32)
    return QuantizedTensor(kind, quantize(w, GGMLQuantizationType[kind]), (N, K))



@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_int4_maps_ggml_blocks_exactly(kind):
    qt = _quantized(kind)
    layer = Int4Linear.from_ggml(kind, qt.blocks, qt.shape)
    w = qt.dequantize()
    # The only loss is bf16 rounding of the scale and zero (2^-9 relative).
    assert rel_err(layer.dequantized(), w) < 1e-2
    x = torch.randn(3, qt.shape[1])
    assert rel_err(layer(x), x @ w.t()) < 2e-2  # bf16 activations and outputs
    assert layer(x).dtype == torch.float32


def test_int4_requantizes_dense_and_int8():
    w = torch.randn(64, 96)
    x = torch.randn(5, 96)
    for layer in (Int4Linear.from_dense(w), Int8Linear(w)):
        assert rel_err(layer(x), x @ layer.dequantized().t()) < 2e-2
        assert rel_err(layer.dequantized(), w) < 0.15  # 4-bit / 8-bit quantization error


@pytest.mark.skipif(not ggml_linear.available(), reason="no C++ compiler for the kernel")
@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q8_0"])
# 13 rows: the batch kernel; GEMV_MAX_ROWS + 1: the dequantize + BLAS path
@pytest.mark.parametrize("M", [1, 3, 8, 13, ggml_linear.GEMV_MAX_ROWS + 1])
def test_ggml_linear_is_float32_exact(kind, M):
    qt = _quantized(kind)
    bias = torch.randn(qt.shape[0])
    layer = GGMLLinear(kind, qt.blocks, qt.shape, bias)
    w = qt.dequantize()
    torch.testing.assert_close(layer.dequantized(), w)
    x = torch.randn(M, qt.shape[1])
    assert rel_err(layer(x), x @ w.t() + bias) < 1e-6


@pytest.mark.skipif(not ggml_linear.available(), reason="no C++ compiler for the kernel")
def test_fused_rms_norm():
    from llmos_jupyter.model.ggml_linear import FusedRMSNorm
    from llmos_jupyter.model.norms import RMSNorm

    norm = RMSNorm(64, 1e-5)
    with torch.no_grad():
        norm.weight.add_(torch.randn(64))
    x = torch.randn(3, 64)
    with torch.no_grad():
        torch.testing.assert_close(FusedRMSNorm(norm)(x), norm(x))
