"""llmos_kernels.rms_norm against torch, forward and backward (dx and dweight)."""

from __future__ import annotations

import pytest
import torch
from llmos_kernels import rms_norm, rms_norm_reference

from tests.kernels.compare import DEVICE, assert_close

DTYPES = [torch.float32, torch.float16]


def _check(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> None:
    x = x.detach().requires_grad_(True)
    w = weight.detach().requires_grad_(True)
    x_ref = x.detach().clone().requires_grad_(True)
    w_ref = w.detach().clone().requires_grad_(True)
    y = rms_norm(x, w, eps)
    y_ref = rms_norm_reference(x_ref, w_ref, eps)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_close(y, y_ref, x.dtype)
    dy = torch.randn_like(y)
    y.backward(dy)
    y_ref.backward(dy)
    assert_close(x.grad, x_ref.grad, x.dtype, grad=True)
    # dweight sums over every row: allow for that many rounded terms.
    assert_close(w.grad, w_ref.grad, x.dtype, grad=True, scale=max(1.0, x.numel() / w.numel() / 8))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (2, 5, 77), (4, 130), (9, 1000)])
def test_matches_reference(shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, device=DEVICE, dtype=dtype)
    w = torch.randn(shape[-1], device=DEVICE, dtype=dtype)
    _check(x, w)


def test_eps_matters_for_tiny_rows():
    x = torch.full((2, 8), 1e-4, device=DEVICE)
    w = torch.ones(8, device=DEVICE)
    _check(x, w, eps=1e-2)


def test_non_contiguous_input():
    torch.manual_seed(1)
    base = torch.randn(40, 24, device=DEVICE)
    w = torch.randn(40, device=DEVICE)
    _check(base.t(), w)  # (24, 40) transposed view
    _check(base[::3, 4:20], w[4:20])  # strided slice


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ([1.0], torch.ones(1)), "x must be a torch.Tensor"),
        (lambda: (torch.ones(2, 4), torch.ones(2, 4)), "weight must have 1 dimensions"),
        (lambda: (torch.ones(2, 4), torch.ones(5)), "weight has 5 elements but x's last dim is 4"),
        (lambda: (torch.ones(2, 4), torch.ones(4, dtype=torch.float16)), "weight has dtype"),
        (lambda: (torch.ones(2, 4, dtype=torch.int32), torch.ones(4, dtype=torch.int32)),
         "dtype torch.int32"),
        (lambda: (torch.ones(2, 4), torch.ones(4, device="meta")), "weight is on meta"),
        (lambda: (torch.ones(1, 65537), torch.ones(65537)), "exceeds the supported 65536"),
    ],
)
def test_bad_input(make, match):
    x, w = make()
    if isinstance(x, torch.Tensor) and DEVICE != "cpu":
        x = x.to(DEVICE)
        w = w.to(DEVICE) if w.device.type != "meta" else w
    with pytest.raises(ValueError, match=match):
        rms_norm(x, w)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("shape", [(4096, 576), (1024, 4096), (64, 16384)])
def test_gpu_matches_reference(shape, dtype):
    torch.manual_seed(0)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    w = torch.randn(shape[-1], device="cuda", dtype=dtype)
    _check(x, w)
