"""The native kernels (native.py, csrc/) against torch and gguf's numpy dequantizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from llmos_jupyter.model import native
from llmos_jupyter.model.ggml_linear import GGMLLinear

pytestmark = pytest.mark.skipif(not native.available(), reason="no C++ compiler")


def _layer(kind: str, N: int, K: int, bias: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N, K)).astype(np.float32)
    blocks = quantize(w, GGMLQuantizationType[kind])
    b = torch.from_numpy(rng.standard_normal(N).astype(np.float32)) if bias else None
    return GGMLLinear(kind, blocks, (N, K), b), blocks


def _any_mat(kind: str, N: int, K: int):
    """(Mat of kind with a bias, what it points into: keep it alive while it is used)."""
    if kind == "F32":
        keep = (torch.randn(N, K), torch.randn(N))
        return native.mat("F32", keep[0], bias=keep[1]), keep
    layer, _ = _layer(kind, N, K, bias=True)
    return layer.mat(), layer


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q8_0"])
@pytest.mark.parametrize("N,K", [(1, 32), (77, 160), (1001, 576)])
def test_dequantize_is_ggufs_bit_for_bit(kind, N, K):
    layer, blocks = _layer(kind, N, K)
    want = torch.from_numpy(dequantize(blocks, GGMLQuantizationType[kind]).reshape(N, K))
    assert torch.equal(native.dequantize(layer.mat()), want)
    assert torch.equal(layer.dequantized(), want)


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q8_0"])
@pytest.mark.parametrize("N,K", [(1, 32), (77, 160), (1001, 576)])
@pytest.mark.parametrize("M", [1, 3])
def test_gemv_matches_float32_and_dense_bit_for_bit(kind, N, K, M):
    layer, _ = _layer(kind, N, K, bias=True)
    w = layer.dequantized()
    x = torch.randn(M, K)
    got = native.gemv(layer.mat(), x)
    # Against float64, within float32 rounding of a K-term sum: relative to the terms'
    # magnitudes, not to the result's (a single output can cancel to near zero).
    want = x.double() @ w.double().t() + layer.bias.double()
    scale = x.double().abs() @ w.double().abs().t() + layer.bias.double().abs()
    assert ((got - want).abs() / scale).max().item() < 1e-6
    # The same weights as a dense float32 matrix: identical bits (the "ggml" == "float32"
    # promise of the fused decode step rests on this).
    dense = native.gemv(native.mat("F32", w, bias=layer.bias), x)
    assert torch.equal(got, dense)


@pytest.mark.parametrize("kind", ["F32", "Q4_0", "Q4_1", "Q8_0"])
@pytest.mark.parametrize("N,K", [(77, 160), (1001, 576)])
def test_batched_rows_equal_single_rows_bit_for_bit(kind, N, K):
    # A batch of x rows takes other kernels (an L1 panel buffer, register tiles) than one row; every
    # row must still come out exactly as alone, or batched runs would drift from single ones.
    A, _keep = _any_mat(kind, N, K)
    for M in (2, 5, 8, 13, 16, 32):
        x = torch.randn(M, K)
        rows = torch.cat([native.gemv(A, x[m:m + 1]) for m in range(M)])
        assert torch.equal(native.gemv(A, x), rows), f"M={M}"


@pytest.mark.parametrize("kind", ["Q4_1", "Q8_0"])
def test_pack_lays_rows_side_by_side(kind):
    layer, _ = _layer(kind, 20, 64)  # 2 panels, the second with 4 rows and 12 zero rows
    pq, pd, pm = native.pack(kind, layer.qs, layer.d, layer.mn)
    if kind == "Q8_0":
        q = pq.permute(0, 3, 1, 2).reshape(32, 64)  # [P, G, 32, 16] -> [rows, K]
        want = layer.qs.float()
    else:  # byte i of a column: row i in the low nibble, row i + 8 in the high one
        q = torch.stack([pq & 15, pq >> 4], dim=3).reshape(2, 2, 32, 16)
        q = q.permute(0, 3, 1, 2).reshape(32, 64)
        want = torch.cat([layer.qs & 15, layer.qs >> 4], dim=-1).reshape(20, 64).float()
    assert torch.equal(q[:20].float(), want) and not q[20:].any()
    rows = lambda t: t.permute(0, 2, 1).reshape(32, 2)  # noqa: E731  [P, G, 16] -> [rows, G]
    assert torch.equal(rows(pd)[:20], layer.d) and not rows(pd)[20:].any()
    if kind == "Q8_0":
        assert pm is None
    else:
        assert torch.equal(rows(pm)[:20], layer.mn)


def test_packed_panels_follow_loaded_weights():
    layer, _ = _layer("Q4_1", 40, 64, seed=1)
    other, _ = _layer("Q4_1", 40, 64, seed=2)
    x = torch.randn(1, 64)
    before = native.gemv(layer.mat(), x)  # packs layer's weights
    layer.load_state_dict(other.state_dict())  # copies into the same buffers, in place
    got = native.gemv(layer.mat(), x)
    assert torch.equal(got, native.gemv(other.mat(), x)) and not torch.equal(got, before)


@pytest.mark.parametrize("K", [7, 64, 100])  # widths that are not multiples of 16
def test_dense_gemv_odd_widths(K):
    w, x = torch.randn(13, K), torch.randn(6, K)
    A = native.mat("F32", w)
    got = native.gemv(A, x)
    torch.testing.assert_close(got, x @ w.t())
    assert torch.equal(got, torch.cat([native.gemv(A, x[m:m + 1]) for m in range(6)]))


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_counts_agree(threads):
    layer, _ = _layer("Q4_1", 333, 576)
    x = torch.randn(1, 576)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = native.gemv(layer.mat(), x)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(got, native.gemv(layer.mat(), x))  # rows never split across threads


def test_rms_norm():
    x, w = torch.randn(3, 77), torch.randn(77)
    want = torch.nn.functional.rms_norm(x, (77,), w, 1e-5)
    torch.testing.assert_close(native.rms_norm(x, w, 1e-5), want)


def test_build_is_cached_and_keyed_by_source(tmp_path, monkeypatch):
    lib = native.build()
    assert lib.exists() and native.build() == lib  # second call: no rebuild
    monkeypatch.setenv("LLMOS_KERNEL_CACHE", str(tmp_path))
    assert native.cache_dir() == tmp_path
    assert native._library_path(native._compiler()).parent.parent == tmp_path


def test_mat_refuses_non_contiguous():
    with pytest.raises(ValueError, match="contiguous"):
        native.mat("F32", torch.randn(8, 64).t())


# Other builds of the same sources: each must round exactly like this machine's, for one
# row and for batches (every register tile size), whatever its vector width.
VARIANTS = {
    # Machines without AVX2 get the portable branch of gemv.h; the portable waits of pool.h
    # (std::atomic::wait, what non-Linux systems get) replace futexes.
    "portable": ("-mno-avx2", "-mno-fma", "-DLLMOS_NO_FUTEX"),
    # AVX2 without AVX-512 (AMD Zen 3 and older Intel): 16-row register tiles where AVX-512
    # machines run 32-row ones. On a machine without AVX-512 this is the native build.
    "avx2": ("-march=native", "-mno-avx512f"),
}


def _variant_library(tmp_path, variant):
    import ctypes

    out = tmp_path / f"{variant}.so"
    flags = tuple(f for f in native.FLAGS if f != "-march=native") + VARIANTS[variant]
    native.compile_library(out, flags)
    so = ctypes.CDLL(str(out))
    so.llmos_gemv.argtypes = [ctypes.POINTER(native.Mat), ctypes.c_void_p, ctypes.c_int,
                              ctypes.c_void_p, ctypes.c_int]
    so.llmos_dequantize.argtypes = [ctypes.POINTER(native.Mat), ctypes.c_void_p, ctypes.c_int]
    return so


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_other_builds_give_the_same_bits(tmp_path, variant):
    import ctypes

    so = _variant_library(tmp_path, variant)
    # 1001 x 576: big enough that the products and dequantization go parallel; 7 threads
    # oversubscribe the cores, so waits sleep as well as spin. 77 rows: a last tile of 13.
    for kind in ("F32", "Q4_0", "Q4_1", "Q8_0"):
        for N, K in ((77, 160), (1001, 576)):
            A, _keep = _any_mat(kind, N, K)
            want_w = None if kind == "F32" else native.dequantize(A)
            xs = [torch.randn(M, K) for M in (1, 6, 32)]
            want = [native.gemv(A, x) for x in xs]
            for threads in (1, 2, 3, 7):
                if kind != "F32":
                    w = torch.empty(N, K)
                    so.llmos_dequantize(ctypes.byref(A), w.data_ptr(), threads)
                    assert torch.equal(w, want_w), (kind, N, threads)
                for x, y_want in zip(xs, want, strict=True):
                    y = torch.empty(x.shape[0], N)
                    so.llmos_gemv(ctypes.byref(A), x.data_ptr(), x.shape[0], y.data_ptr(),
                                  threads)
                    assert torch.equal(y, y_want), (kind, N, x.shape[0], threads)
