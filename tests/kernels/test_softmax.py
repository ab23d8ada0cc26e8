"""llmos_kernels.softmax against torch, forward and backward."""

from __future__ import annotations

import pytest
import torch
from llmos_kernels import softmax, softmax_reference
from llmos_kernels.softmax import SoftmaxFunction

from tests.kernels.compare import DEVICE, assert_close

DTYPES = [torch.float32, torch.float16]


def _check(x: torch.Tensor, run, dim: int = -1) -> None:
    """Forward and gradient of `run(x)` against the float32 reference."""
    x = x.detach().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    y = run(x)
    y_ref = softmax_reference(x_ref, dim=dim)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_close(y, y_ref, x.dtype)
    dy = torch.randn_like(y)
    y.backward(dy)
    y_ref.backward(dy)
    assert_close(x.grad, x_ref.grad, x.dtype, grad=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 77), (4, 130), (2, 1000), (2, 3, 5)])
def test_matches_reference(shape, dtype):
    torch.manual_seed(0)
    _check(torch.randn(shape, device=DEVICE, dtype=dtype) * 3, softmax)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_cols,block", [(77, 16), (130, 32), (1000, 256)])
def test_rows_longer_than_a_block_use_online_softmax(n_cols, block, dtype):
    torch.manual_seed(1)
    x = torch.randn(3, n_cols, device=DEVICE, dtype=dtype) * 4
    _check(x, lambda t: SoftmaxFunction.apply(t, block))


def test_rows_longer_than_interpreter_block_loop():
    torch.manual_seed(2)
    _check(torch.randn(2, 5000, device=DEVICE), softmax)  # > 4096: the looped path


def test_large_logits_stay_finite():
    x = torch.tensor([[1e4, 1e4 - 1, -1e4], [-1e30, 0.0, float("-inf")]], device=DEVICE)
    y = softmax(x)
    assert torch.isfinite(y).all()
    assert_close(y, torch.softmax(x, -1), torch.float32)


@pytest.mark.parametrize("dim", [0, 1, -3])
def test_other_dims(dim):
    torch.manual_seed(3)
    _check(torch.randn(4, 17, 6, device=DEVICE), lambda t: softmax(t, dim=dim), dim=dim)


def test_non_contiguous_input():
    torch.manual_seed(4)
    base = torch.randn(33, 20, device=DEVICE)
    _check(base.t(), softmax)  # transposed view
    _check(base[::2, 3:17], softmax)  # strided slice


def test_empty_input():
    x = torch.randn(0, 5, device=DEVICE)
    assert softmax(x).shape == (0, 5)


@pytest.mark.parametrize(
    "x,dim,match",
    [
        ([1.0, 2.0], -1, "must be a torch.Tensor"),
        (torch.tensor(1.0), -1, "dimensions"),
        (torch.ones(2, 3, dtype=torch.int64), -1, "dtype torch.int64"),
        (torch.ones(2, 3), 2, "dim=2 is out of range"),
    ],
)
def test_bad_input(x, dim, match):
    if isinstance(x, torch.Tensor):
        x = x.to(DEVICE)
    with pytest.raises(ValueError, match=match):
        softmax(x, dim=dim)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(512, 1000), (256, 4096), (64, 32768), (16, 100003)])
def test_gpu_matches_reference(shape, dtype):
    torch.manual_seed(0)
    _check(torch.randn(shape, device="cuda", dtype=dtype), softmax)
