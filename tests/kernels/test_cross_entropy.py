"""llmos_kernels.cross_entropy against F.cross_entropy, loss and gradient."""

from __future__ import annotations

import pytest
import torch
from llmos_kernels import cross_entropy, cross_entropy_reference

from tests.kernels.compare import DEVICE, assert_close

DTYPES = [torch.float32, torch.float16]
REDUCTIONS = ["mean", "sum", "none"]


def _targets(n: int, v: int, ignored=(), ignore_index: int = -100) -> torch.Tensor:
    t = torch.randint(0, v, (n,), device=DEVICE)
    for i in ignored:
        t[i] = ignore_index
    return t


def _check(logits, targets, reduction="mean", ignore_index=-100, upstream=None):
    """Loss and d loss/d logits against the reference; leaf logits must stay intact."""
    x = logits.detach().clone().requires_grad_(True)
    x_before = x.detach().clone()
    x_ref = logits.detach().clone().requires_grad_(True)
    loss = cross_entropy(x, targets, ignore_index=ignore_index, reduction=reduction)
    loss_ref = cross_entropy_reference(x_ref, targets, ignore_index, reduction)
    assert loss.dtype == loss_ref.dtype and loss.shape == loss_ref.shape
    assert_close(loss, loss_ref, logits.dtype, scale=10)
    up = torch.ones_like(loss) if upstream is None else upstream
    loss.backward(up)
    loss_ref.backward(up)
    assert_close(x.grad, x_ref.grad, logits.dtype, grad=True)
    assert torch.equal(x.detach(), x_before), "leaf logits were overwritten"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n,v", [(3, 1), (5, 1000), (2, 50257)])
def test_matches_reference(n, v, reduction, dtype):
    torch.manual_seed(0)
    logits = torch.randn(n, v, device=DEVICE, dtype=dtype) * 2
    _check(logits, _targets(n, v, ignored=(1,) if n > 2 else ()), reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_all_ignored_gives_zero_loss_and_grad(reduction):
    logits = torch.randn(4, 33, device=DEVICE, requires_grad=True)
    targets = torch.full((4,), -1, device=DEVICE)
    loss = cross_entropy(logits, targets, ignore_index=-1, reduction=reduction)
    assert torch.all(loss == 0) and torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.all(logits.grad == 0)


def test_upstream_gradient_scales():
    torch.manual_seed(1)
    logits = torch.randn(6, 77, device=DEVICE)
    targets = _targets(6, 77, ignored=(0, 4))
    _check(logits, targets, "mean", upstream=torch.tensor(3.0, device=DEVICE))
    _check(logits, targets, "none", upstream=torch.randn(6, device=DEVICE))


def test_custom_ignore_index_and_int32_targets():
    torch.manual_seed(2)
    logits = torch.randn(5, 130, device=DEVICE)
    targets = _targets(5, 130, ignored=(2,), ignore_index=7).to(torch.int32)
    targets[3] = 7  # 7 is also a real class id, but as ignore_index the row is skipped
    _check(logits, targets, "mean", ignore_index=7)


def test_non_leaf_logits_take_the_gradient_in_place():
    """The memory-saving path: logits made inside the graph hold the gradient afterwards."""
    torch.manual_seed(3)
    h = torch.randn(4, 16, device=DEVICE, requires_grad=True)
    w = torch.randn(16, 50, device=DEVICE)
    targets = _targets(4, 50, ignored=(2,))
    logits = h @ w  # non-leaf, like an lm head's output
    storage = logits.data_ptr()
    version = logits._version
    loss = cross_entropy(logits, targets)
    assert logits._version > version  # autograd was told about the overwrite
    loss.backward()

    h_ref = h.detach().clone().requires_grad_(True)
    cross_entropy_reference(h_ref @ w, targets).backward()
    assert_close(h.grad, h_ref.grad, torch.float32, grad=True)
    assert logits.data_ptr() == storage


def test_overwrite_is_detected_by_ops_that_saved_the_logits():
    h = torch.randn(3, 10, device=DEVICE, requires_grad=True)
    logits = h * 1.0
    side = logits.exp()  # exp saves its output, not logits: still fine
    other = logits.sin()  # sin saves its input: the logits we overwrite
    loss = cross_entropy(logits, torch.tensor([1, 2, 3], device=DEVICE))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + side.sum() + other.sum()).backward()


def test_non_contiguous_logits():
    torch.manual_seed(4)
    base = torch.randn(300, 6, device=DEVICE)
    _check(base.t(), _targets(6, 300), "sum")  # (6, 300) transposed view
    _check(base[::2, :4].t(), _targets(4, 150), "none")


def test_no_grad_leaves_logits_untouched():
    logits = torch.randn(3, 20, device=DEVICE)
    before = logits.clone()
    with torch.no_grad():
        loss = cross_entropy(logits, torch.tensor([0, 5, 19], device=DEVICE))
    assert torch.equal(logits, before)
    expected = cross_entropy_reference(before, torch.tensor([0, 5, 19], device=DEVICE))
    assert_close(loss, expected, torch.float32)


@pytest.mark.parametrize(
    "make,kwargs,match",
    [
        (lambda: (torch.randn(2, 3, 4), torch.zeros(2, dtype=torch.long)), {},
         "logits must have 2 dimensions"),
        (lambda: (torch.randn(2, 4), torch.zeros(2, 1, dtype=torch.long)), {},
         "targets must have 1 dimensions"),
        (lambda: (torch.randn(2, 4), torch.zeros(3, dtype=torch.long)), {},
         "targets has 3 entries but logits has 2 rows"),
        (lambda: (torch.randn(2, 4), torch.zeros(2)), {}, "targets must be an integer tensor"),
        (lambda: (torch.randn(2, 4), torch.tensor([0, 4])), {}, r"targets must be in \[0, 4\)"),
        (lambda: (torch.randn(2, 4), torch.tensor([0, -5])), {}, "got -5"),
        (lambda: (torch.randn(2, 4), torch.tensor([0, 1])), {"reduction": "avg"},
         "reduction must be one of"),
        (lambda: (torch.ones(2, 4, dtype=torch.long), torch.tensor([0, 1])), {},
         "dtype torch.int64"),
        (lambda: (torch.randn(2, 4), torch.tensor([0, 1], device="meta")), {},
         "targets is on meta"),
        (lambda: (torch.randn(2, 0), torch.tensor([0, 1])), {}, "empty vocabulary"),
    ],
)
def test_bad_input(make, kwargs, match):
    logits, targets = make()
    with pytest.raises(ValueError, match=match):
        cross_entropy(logits, targets, **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n,v", [(512, 32000), (64, 128256), (4096, 1000)])
def test_gpu_matches_reference(n, v, dtype):
    torch.manual_seed(0)
    logits = torch.randn(n, v, device="cuda", dtype=dtype)
    _check(logits, torch.randint(0, v, (n,), device="cuda"), "mean")
