"""llmos_kernels.decode_attention (flash-decoding) against plain attention over the cache."""

from __future__ import annotations

import pytest
import torch
from llmos_kernels import decode_attention, decode_attention_reference

from tests.kernels.compare import DEVICE, assert_close

DTYPES = [torch.float32, torch.float16]


def _inputs(B, Hq, Hkv, S_max, D, seqlens, dtype, device=DEVICE):
    q = torch.randn(B, Hq, D, device=device, dtype=dtype)
    k = torch.randn(B, Hkv, S_max, D, device=device, dtype=dtype)
    v = torch.randn(B, Hkv, S_max, D, device=device, dtype=dtype)
    return q, k, v, torch.tensor(seqlens, device=device, dtype=torch.int32)


def _check(q, k, v, seqlens, sm_scale=None):
    o = decode_attention(q, k, v, seqlens, sm_scale=sm_scale)
    assert o.shape == q.shape and o.dtype == q.dtype
    assert_close(o, decode_attention_reference(q, k, v, seqlens, sm_scale), q.dtype)


# (B, Hq, Hkv, S_max, D, cache_seqlens): GQA ratios 1, 3, 4; ragged and empty sequences.
CASES = [
    (1, 2, 2, 1, 16, [1]),
    (2, 3, 1, 17, 16, [17, 5]),
    (3, 4, 1, 130, 32, [0, 77, 130]),
    (2, 8, 2, 77, 16, [1, 76]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,Hq,Hkv,S_max,D,seqlens", CASES)
def test_matches_reference(B, Hq, Hkv, S_max, D, seqlens, dtype):
    torch.manual_seed(0)
    _check(*_inputs(B, Hq, Hkv, S_max, D, seqlens, dtype))


@pytest.mark.parametrize("D", [64, 128])
def test_wide_heads_and_custom_scale(D):
    torch.manual_seed(1)
    q, k, v, lens = _inputs(2, 4, 2, 50, D, [50, 33], torch.float32)
    _check(q, k, v, lens, sm_scale=0.1)


def test_cache_in_sequence_major_layout_and_int64_lengths():
    """A cache stored [B, S, H, D] and viewed as [B, H, S, D]; q a strided slice."""
    torch.manual_seed(2)
    k = torch.randn(2, 90, 2, 16, device=DEVICE).transpose(1, 2)
    v = torch.randn(2, 90, 2, 16, device=DEVICE).transpose(1, 2)
    q = torch.randn(2, 6, 32, device=DEVICE)[:, :, :16]
    _check(q, k, v, torch.tensor([90, 41], device=DEVICE))


def test_lengths_are_clamped_to_the_cache():
    torch.manual_seed(3)
    q, k, v, _ = _inputs(2, 2, 1, 20, 16, [0, 0], torch.float32)
    out = decode_attention(q, k, v, torch.tensor([25, -3], device=DEVICE))
    expected = decode_attention_reference(q, k, v, torch.tensor([20, 0], device=DEVICE))
    assert_close(out, expected, torch.float32)
    assert torch.all(out[1] == 0)


def test_matches_prefill_attention_on_the_last_token():
    """Decoding token t equals row t of causal attention over the same keys."""
    from llmos_kernels import attention_reference

    torch.manual_seed(4)
    q, k, v, _ = _inputs(1, 4, 2, 40, 16, [0], torch.float32)
    full_q = torch.randn(1, 4, 40, 16, device=DEVICE)
    full_q[:, :, -1] = q[0]
    expected = attention_reference(full_q, k, v, causal=True)[:, :, -1]
    assert_close(decode_attention(q, k, v, torch.tensor([40], device=DEVICE)), expected,
                 torch.float32)


def _t(*shape, dtype=torch.float32, device=DEVICE):
    return torch.zeros(shape, dtype=dtype, device=device)


def _lens(*values, dtype=torch.int32, device=DEVICE):
    return torch.tensor(values, dtype=dtype, device=device)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (_t(1, 2, 1, 16), _t(1, 2, 8, 16), _t(1, 2, 8, 16), _lens(8)),
         "q must have 3 dimensions"),
        (lambda: (_t(1, 2, 16), _t(1, 8, 16), _t(1, 2, 8, 16), _lens(8)),
         "k_cache must have 4 dimensions"),
        (lambda: (_t(1, 16, 16), _t(1, 5, 8, 16), _t(1, 5, 8, 16), _lens(8)),
         "k_cache has 5 heads but q has 16"),
        (lambda: (_t(1, 2, 48), _t(1, 2, 8, 48), _t(1, 2, 8, 48), _lens(8)),
         "q has head dim 48"),
        (lambda: (_t(2, 2, 16), _t(2, 2, 8, 16), _t(2, 2, 8, 16), _lens(8)),
         "cache_seqlens has 1 entries but q has batch 2"),
        (lambda: (_t(1, 2, 16), _t(1, 2, 8, 16), _t(1, 2, 8, 16), _lens(8).view(1, 1)),
         "cache_seqlens must have 1 dimensions"),
        (lambda: (_t(1, 2, 16), _t(1, 2, 8, 16), _t(1, 2, 8, 16), _lens(8, dtype=torch.float32)),
         "cache_seqlens must be int32 or int64"),
        (lambda: (_t(1, 2, 16), _t(1, 2, 8, 16), _t(1, 2, 8, 16), _lens(8, device="meta")),
         "cache_seqlens is on meta"),
        (lambda: (_t(1, 2, 16), _t(1, 2, 8, 16, dtype=torch.float16), _t(1, 2, 8, 16), _lens(8)),
         "k_cache has dtype torch.float16"),
        (lambda: (_t(1, 2, 16), _t(1, 2, 8, 16), _t(1, 2, 9, 16), _lens(8)),
         "k_cache has shape .* but v_cache has"),
        (lambda: (_t(1, 2, 16), _t(2, 2, 8, 16), _t(2, 2, 8, 16), _lens(8)),
         "k_cache has batch 2 but q has 1"),
        (lambda: (_t(1, 2, 16), [0.0], _t(1, 2, 8, 16), _lens(8)),
         "k_cache must be a torch.Tensor"),
    ],
)
def test_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        decode_attention(*make())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize(
    "B,Hq,Hkv,S_max,D",
    [(16, 16, 16, 8192, 128), (16, 32, 8, 8192, 64), (3, 9, 3, 1000, 64), (1, 8, 1, 777, 128)],
)
def test_gpu_matches_reference(B, Hq, Hkv, S_max, D, dtype):
    torch.manual_seed(0)
    seqlens = torch.randint(0, S_max + 1, (B,)).tolist()
    seqlens[0] = S_max
    _check(*_inputs(B, Hq, Hkv, S_max, D, seqlens, dtype, device="cuda"))
