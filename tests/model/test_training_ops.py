"""The training autograd functions against plain torch autograd of the same formula."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmos_jupyter.model import native, training_ops
from llmos_jupyter.model.rope import apply_rope, rope_tables
from llmos_jupyter.model.training_ops import (
    causal_attention,
    rms_norm,
    swiglu,
    wants_training_ops,
)
from tests.model.helpers import rel_err, tiny_model


def _grads(fn, *tensors):
    """(output, gradients of sum(output * fixed weights) in each tensor)."""
    out = fn(*tensors)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    grads = torch.autograd.grad((out * w).sum(), tensors)
    return out.detach(), grads


# Builds of the training kernels for other machines (tests/model/test_native.py has the
# same for the inference kernels): without AVX-512 (AMD Zen 3 and older Intel: narrower
# register tiles), and without AVX2 (the scalar branches).
VARIANTS = {"avx2": ("-march=native", "-mno-avx512f"), "portable": ("-mno-avx2", "-mno-fma")}


@pytest.fixture(scope="module")
def variant_libraries(tmp_path_factory):
    """{variant: loaded library}, built once for the module."""
    out = {}
    for name, flags in VARIANTS.items():
        path = tmp_path_factory.mktemp("train_kernels") / f"{name}.so"
        base = tuple(f for f in native.TRAIN_FLAGS if f != "-march=native")
        native.compile_library(path, base + flags, "llmos_train.cpp")
        out[name] = native.load_train_library(path)
    return out


def _use(kernels, request, monkeypatch):
    """Route training_ops to `kernels`: "native" (this machine's build, which must load
    wherever the inference kernels do), a VARIANTS build, or "torch" (its own ops)."""
    if kernels == "torch":
        monkeypatch.setattr(training_ops, "_native_lib", lambda *tensors: None)
        return
    if not native.available():
        pytest.skip("no C++ compiler")
    assert native.train_lib() is not None, "the training kernels did not build"
    if kernels in VARIANTS:
        lib = request.getfixturevalue("variant_libraries")[kernels]
        monkeypatch.setattr(native, "train_lib", lambda: lib)


@pytest.fixture(params=["native", *VARIANTS, "torch"])
def kernels(request, monkeypatch):
    """Each float32 test on every build of the training kernels and on torch's ops."""
    _use(request.param, request, monkeypatch)
    return request.param


# float32 runs every kernel path; float64 always runs torch's ops.
PATHS = [*((torch.float32, k) for k in ("native", *VARIANTS, "torch")), (torch.float64, "torch")]


@pytest.mark.parametrize("dtype,kernels", PATHS, indirect=["kernels"])
def test_rms_norm_matches_autograd(dtype, kernels):
    """37 x 3 rows (more than one thread's share) of 21 (vector loops and their tails)."""
    torch.manual_seed(0)
    x = torch.randn(3, 37, 21, dtype=dtype, requires_grad=True)
    w = (1 + 0.3 * torch.randn(21, dtype=dtype)).requires_grad_()
    ours, g_ours = _grads(lambda a, b: rms_norm(a, b, 1e-5), x, w)
    ref, g_ref = _grads(lambda a, b: F.rms_norm(a, (21,), b, 1e-5), x, w)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert rel_err(ours, ref) < tol
    for a, b in zip(g_ours, g_ref, strict=True):
        assert rel_err(a, b) < 10 * tol


@pytest.mark.parametrize("dtype,kernels", PATHS, indirect=["kernels"])
def test_swiglu_matches_autograd(dtype, kernels):
    """74 rows, ffn 20 (vector loops and their tails); large activations too, where
    silu's two forms (gate >= 0 and < 0) meet their limits."""
    torch.manual_seed(0)
    scale = torch.linspace(0.5, 30, 37, dtype=dtype)[:, None]  # gates up to ~+-30
    x = (torch.randn(2, 37, 12, dtype=dtype) * scale).requires_grad_()
    w_in = (0.3 * torch.randn(40, 12, dtype=dtype)).requires_grad_()
    w_out = (0.3 * torch.randn(12, 20, dtype=dtype)).requires_grad_()

    def plain(a, wi, wo):
        gate, up = (a @ wi.t()).chunk(2, dim=-1)
        return (F.silu(gate) * up) @ wo.t()

    ours, g_ours = _grads(swiglu, x, w_in, w_out)
    ref, g_ref = _grads(plain, x, w_in, w_out)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert rel_err(ours, ref) < tol
    for a, b in zip(g_ours, g_ref, strict=True):
        assert rel_err(a, b) < 10 * tol


def test_native_kernels_do_not_depend_on_the_thread_count():
    """The same bits on 1 and 3 threads: rows (and attention's sequence and kv head pairs)
    are split between threads, never inside."""
    if not native.available():
        pytest.skip("no C++ compiler")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 20, 64, generator=g, requires_grad=True)  # 5 sequences of 20
    w = torch.randn(64, generator=g, requires_grad=True)
    w_in, w_out = torch.randn(96, 64, generator=g), torch.randn(64, 48, generator=g)
    w_qkv = torch.randn(128, 64, generator=g) / 8  # 4 query heads over 2 kv heads of 16
    cos, sin = (t[:20, None, :] for t in rope_tables(16, 64, 10000.0))

    def run():
        h = rms_norm(x, w, 1e-6)
        y = swiglu(h, w_in, w_out) + causal_attention(h @ w_qkv.t(), cos, sin, 4, 2)
        return (y, *torch.autograd.grad((y * y).sum(), (x, w)))

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(3)
        three = run()
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, three, strict=True))


@pytest.mark.parametrize("kernels", ["native", "torch"], indirect=True)
def test_swiglu_frozen_weights_give_only_the_input_gradient(kernels):
    x = torch.randn(4, 12, requires_grad=True)
    w_in, w_out = torch.randn(40, 12), torch.randn(12, 20)
    out = swiglu(x, w_in, w_out)
    out.sum().backward()
    assert x.grad is not None and w_in.grad is None and w_out.grad is None


@pytest.mark.parametrize("path,T,D", [
    *((k, T, D) for k in ("native", *VARIANTS) for T, D in ((11, 16), (130, 16), (37, 48))),
    ("short", 11, 16), ("flash", 11, 16), ("flash", 300, 16)])
def test_causal_attention_matches_autograd_of_rope_and_sdpa(request, monkeypatch, path, T, D):
    """Grouped-query heads (6 query heads over 2 kv heads), RoPE on q and k; every path
    whatever this machine's CPU picks: each build of the native kernels (head dims that
    fill whole and partial tiles, rows longer than a tile's columns), torch's batched
    matmuls over kept probabilities, and torch's flash attention (T past the short limit,
    or a limit of 0)."""
    if path in ("short", "flash"):
        monkeypatch.setattr(training_ops, "_native_attention", lambda *args: None)
        monkeypatch.setattr(training_ops, "SHORT_ATTENTION_T", 256 if path == "short" else 0)
    else:
        _use(path, request, monkeypatch)
    B, Hq, Hkv = 2, 6, 2
    cos, sin = rope_tables(D, 512, 10000.0)
    cos, sin = cos[:T, None, :], sin[:T, None, :]  # (T, 1, D)
    qkv = torch.randn(B, T, (Hq + 2 * Hkv) * D, generator=torch.Generator().manual_seed(2),
                      requires_grad=True)

    def reference(x):
        x = x.unflatten(-1, (Hq + 2 * Hkv, D))
        q, k = apply_rope(x[:, :, :Hq], cos, sin), apply_rope(x[:, :, Hq:Hq + Hkv], cos, sin)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           x[:, :, Hq + Hkv:].transpose(1, 2), is_causal=True,
                                           enable_gqa=True)
        return y.transpose(1, 2).flatten(-2)

    ours, (g_ours,) = _grads(lambda x: causal_attention(x, cos, sin, Hq, Hkv), qkv)
    ref, (g_ref,) = _grads(reference, qkv)
    assert rel_err(ours, ref) < 1e-6 and rel_err(g_ours, g_ref) < 1e-5


def test_only_where_a_gradient_flows():
    x, w = torch.randn(3), torch.randn(3)
    assert not wants_training_ops(x, w)
    assert wants_training_ops(x, w.requires_grad_())
    with torch.no_grad():
        assert not wants_training_ops(x, w)


def test_model_gradients_match_the_plain_ops(monkeypatch):
    """A tiny model's loss and every weight gradient, training ops on vs the plain ops."""
    from llmos_jupyter.model import transformer

    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(3))

    def run(model):
        model.train()
        loss = model.loss(ids)
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    loss, grads = run(tiny_model(seed=1))
    monkeypatch.setattr(transformer, "wants_training_ops", lambda *a: False)
    ref_loss, ref_grads = run(tiny_model(seed=1))
    assert abs(loss - ref_loss) < 1e-6 * abs(ref_loss)
    for n, g in ref_grads.items():
        assert rel_err(grads[n], g) < 1e-5, n


@pytest.mark.parametrize("kernels", ["native", "torch"], indirect=True)
@pytest.mark.parametrize("use_rows", [False, True])
def test_fused_residual_norms_match_the_blocks(monkeypatch, kernels, use_rows):
    """hidden_states with each residual add fused into the norm after it (add_rms_norm)
    against the blocks' own adds and norms: the states and every weight's gradient, with
    all rows and with a subset of the last block's rows."""
    from llmos_jupyter.model import transformer

    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(3))
    rows = torch.tensor([1, 4, 5, 12, 17]) if use_rows else None

    def run(fused):
        model = tiny_model(seed=1).train()
        monkeypatch.setattr(transformer.Transformer, "_fuses_residual_norms",
                            lambda self: fused)
        h = model.hidden_states(ids, rows)
        weights = torch.randn(h.shape, generator=torch.Generator().manual_seed(6))
        (h * weights).sum().backward()
        return h.detach(), {n: p.grad for n, p in model.named_parameters()}

    h, grads = run(True)
    h_ref, grads_ref = run(False)
    assert rel_err(h, h_ref) < 1e-6
    for n, g in grads_ref.items():  # the LM head is not in hidden_states: no gradient
        assert (grads[n] is None) if g is None else rel_err(grads[n], g) < 1e-5, n


def test_add_rms_norm_gradients_of_both_outputs():
    """add_rms_norm's backward when both h and y carry gradients, x needs none (as the
    embeddings in LoRA training), or only h does."""
    g = torch.Generator().manual_seed(8)
    x, a = torch.randn(6, 32, generator=g), torch.randn(6, 32, generator=g, requires_grad=True)
    w = torch.randn(32, generator=g, requires_grad=True)
    h, y = training_ops.add_rms_norm(x, a, w, 1e-5)
    (h * 2 + y * 3).sum().backward()
    a2, w2 = a.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    h2 = x + a2
    (h2 * 2 + F.rms_norm(h2, (32,), w2, 1e-5) * 3).sum().backward()
    assert rel_err(a.grad, a2.grad) < 1e-6 and rel_err(w.grad, w2.grad) < 1e-6
    a.grad = None
    h, _ = training_ops.add_rms_norm(x, a, w.detach(), 1e-5)
    h.sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a))
