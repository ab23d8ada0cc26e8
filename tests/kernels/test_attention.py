"""llmos_kernels.attention against plain attention: output and dq, dk, dv."""

from __future__ import annotations

import math

import pytest
import torch
from llmos_kernels import attention, attention_reference

from tests.kernels.compare import DEVICE, assert_close


def _qkv(B, Hq, Hkv, T, S, D, dtype, device=DEVICE):
    q = torch.randn(B, Hq, T, D, device=device, dtype=dtype)
    k = torch.randn(B, Hkv, S, D, device=device, dtype=dtype)
    v = torch.randn(B, Hkv, S, D, device=device, dtype=dtype)
    return q, k, v


def _check(q, k, v, causal=True, sm_scale=None, make_views=None):
    """Output and all three gradients against the reference (run on fresh leaves).

    make_views(leaves) may turn the leaves into the (non-contiguous) views actually passed.
    """
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    ref_leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    view = make_views or (lambda ts: ts)
    args, ref_args = view(leaves), view(ref_leaves)
    o = attention(*args, causal=causal, sm_scale=sm_scale)
    o_ref = attention_reference(*ref_args, causal=causal, sm_scale=sm_scale)
    assert o.shape == args[0].shape and o.dtype == q.dtype
    assert_close(o, o_ref, q.dtype)
    do = torch.randn_like(o)
    o.backward(do)
    o_ref.backward(do)
    group = args[0].shape[1] / args[1].shape[1]
    for name, leaf, ref in zip("qkv", leaves, ref_leaves, strict=True):
        # dk/dv of a GQA group sum `group` query heads' contributions.
        assert leaf.grad is not None, name
        assert_close(leaf.grad, ref.grad, q.dtype, grad=True, scale=1.0 if name == "q" else group)


# (B, Hq, Hkv, T, S, D, causal): odd lengths on purpose, GQA ratios 1, 3, 4.
CASES = [
    (1, 2, 2, 1, 1, 16, True),  # a single token
    (1, 2, 2, 17, 17, 16, False),  # shorter than one block
    (1, 3, 1, 77, 77, 16, True),  # GQA 3, ragged last block
    (1, 4, 1, 17, 130, 32, True),  # GQA 4, causal with S > T (aligned to the end)
    (1, 2, 1, 130, 130, 16, False),  # several blocks, not causal
    (1, 4, 1, 130, 17, 16, True),  # causal with S < T: the first rows see no key
    (1, 2, 2, 1, 77, 32, True),  # one query over a cache: sees every key
    (2, 2, 2, 77, 100, 16, False),  # S > T, not causal, batch 2
]


@pytest.mark.parametrize("B,Hq,Hkv,T,S,D,causal", CASES)
def test_matches_reference_float32(B, Hq, Hkv, T, S, D, causal):
    torch.manual_seed(0)
    _check(*_qkv(B, Hq, Hkv, T, S, D, torch.float32), causal=causal)


# float16 on the cases that differ most (the interpreter is slow; every case runs in fp32).
@pytest.mark.parametrize("B,Hq,Hkv,T,S,D,causal", [CASES[2], CASES[3], CASES[5], CASES[7]])
def test_matches_reference_float16(B, Hq, Hkv, T, S, D, causal):
    torch.manual_seed(0)
    _check(*_qkv(B, Hq, Hkv, T, S, D, torch.float16), causal=causal)


@pytest.mark.parametrize("D", [64, 128])
def test_wide_heads(D):
    torch.manual_seed(1)
    _check(*_qkv(1, 2, 1, 40, 40, D, torch.float32), causal=True)


def test_custom_scale():
    torch.manual_seed(2)
    _check(*_qkv(1, 2, 2, 33, 33, 16, torch.float32), causal=False, sm_scale=0.3)


def test_rows_that_see_no_key_output_zero():
    q, k, v = _qkv(1, 1, 1, 20, 5, 16, torch.float32)
    o = attention(q, k, v, causal=True)
    assert torch.all(o[:, :, :15] == 0)  # rows 0..14 see keys j <= i - 15 < 0


def test_non_contiguous_inputs():
    """[B, T, H, D] projections viewed as [B, H, T, D], and slices of a longer cache."""
    torch.manual_seed(3)
    q = torch.randn(2, 33, 4, 16, device=DEVICE)  # (B, T, H, D)
    k = torch.randn(2, 2, 60, 32, device=DEVICE)
    v = torch.randn(2, 2, 60, 32, device=DEVICE)

    def views(ts):
        q, k, v = ts
        # (2, 4, 33, 16), and (2, 2, 45, 16) strided along S and D
        return q.transpose(1, 2), k[:, :, :45, :16], v[:, :, 5:50, 16:]

    _check(q, k, v, causal=True, make_views=views)


def test_matches_sdpa_with_default_scale():
    torch.manual_seed(4)
    q, k, v = _qkv(1, 2, 2, 17, 17, 32, torch.float32)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_close(attention(q, k, v), expected, torch.float32)
    assert math.isclose(1 / math.sqrt(32), 32 ** -0.5)


def _t(*shape, dtype=torch.float32, device=DEVICE):
    return torch.zeros(shape, dtype=dtype, device=device)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (_t(2, 16, 16), _t(1, 2, 16, 16), _t(1, 2, 16, 16)),
         "q must have 4 dimensions"),
        (lambda: (_t(1, 2, 16, 16), _t(2, 16, 16), _t(1, 2, 16, 16)),
         "k must have 4 dimensions"),
        (lambda: (_t(1, 16, 8, 16), _t(1, 5, 8, 16), _t(1, 5, 8, 16)),
         "k has 5 heads but q has 16; q heads must be a multiple of k heads"),
        (lambda: (_t(1, 2, 8, 24), _t(1, 2, 8, 24), _t(1, 2, 8, 24)),
         "q has head dim 24; supported head dims"),
        (lambda: (_t(1, 2, 8, 16), _t(1, 2, 8, 32), _t(1, 2, 8, 32)),
         "k has head dim 32 but q has 16"),
        (lambda: (_t(1, 2, 8, 16), _t(1, 2, 8, 16, dtype=torch.float16), _t(1, 2, 8, 16)),
         "k has dtype torch.float16 but q has torch.float32"),
        (lambda: (_t(1, 2, 8, 16), _t(1, 2, 8, 16), _t(1, 2, 8, 16, device="meta")),
         "v is on meta"),
        (lambda: (_t(1, 2, 8, 16), _t(1, 2, 8, 16), _t(1, 2, 9, 16)),
         "k has shape .* but v has"),
        (lambda: (_t(1, 2, 8, 16), _t(2, 2, 8, 16), _t(2, 2, 8, 16)),
         "k has batch 2 but q has 1"),
        (lambda: (_t(1, 2, 8, 16, dtype=torch.int32),) * 3, "dtype torch.int32"),
        (lambda: ("q", _t(1, 2, 8, 16), _t(1, 2, 8, 16)), "q must be a torch.Tensor"),
    ],
)
def test_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        attention(*make())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "B,Hq,Hkv,T,S,D,causal",
    [
        (2, 8, 8, 1024, 1024, 64, True),
        (2, 8, 2, 1000, 1000, 128, False),
        (1, 12, 3, 300, 2048, 128, True),
        (2, 4, 4, 1, 777, 64, True),
        (1, 9, 3, 257, 257, 64, True),  # the default model's head layout
    ],
)
def test_gpu_matches_reference(B, Hq, Hkv, T, S, D, causal, dtype):
    torch.manual_seed(0)
    _check(*_qkv(B, Hq, Hkv, T, S, D, dtype, device="cuda"), causal=causal)


@pytest.mark.gpu
def test_gpu_float32_is_exact_enough():
    torch.manual_seed(0)
    _check(*_qkv(1, 4, 2, 200, 200, 64, torch.float32, device="cuda"), causal=True)
