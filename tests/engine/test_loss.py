"""The fused chunked cross-entropy against F.cross_entropy: values, gradients, memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmos_jupyter.engine import loss as loss_module
from llmos_jupyter.engine.loss import (
    IGNORE_INDEX,
    fused_linear_cross_entropy,
    labelled_positions,
    lm_loss,
)
from llmos_jupyter.model import native
from tests.engine.peak_memory import PeakMemory
from tests.model.helpers import rel_err, tiny_model

V = 49152  # SmolLM2's vocabulary


def _inputs(N: int, D: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g)
    w = torch.randn(V, D, generator=g) * 0.05
    t = torch.randint(0, V, (N,), generator=g)
    t[::5] = IGNORE_INDEX  # masked positions (prompt tokens, padding)
    return h, w, t


@pytest.mark.parametrize("N,chunk", [(1, None), (77, 16), (300, 128)])
def test_matches_f_cross_entropy_loss_and_grads(N, chunk):
    h, w, t = _inputs(N, 64)
    if N == 1:
        t[0] = 7  # one counted row
    h1, w1 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ours = fused_linear_cross_entropy(h1, w1, t, chunk_rows=chunk)
    ours.backward()
    h2, w2 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ref = F.cross_entropy(h2 @ w2.t(), t, ignore_index=IGNORE_INDEX)
    ref.backward()
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h1.grad, h2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w1.grad, w2.grad, atol=1e-5, rtol=1e-5)


def test_vocabulary_tiles_of_uneven_width_match(monkeypatch):
    """Logits in tiles whose last one is narrower (49152 = 4 x 10000 + 9152)."""
    monkeypatch.setattr(loss_module, "VOCAB_TILE", 10000)
    h, w, t = _inputs(50, 32, seed=2)
    t[3], t[4] = V - 1, 10000  # targets on a tile's first column and the last tile's end
    h1, w1 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    fused_linear_cross_entropy(h1, w1, t, chunk_rows=16).backward()
    h2, w2 = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
    F.cross_entropy(h2 @ w2.t(), t, ignore_index=IGNORE_INDEX).backward()
    torch.testing.assert_close(h1.grad, h2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w1.grad, w2.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernels", ["native", "torch"])
@pytest.mark.parametrize("logit_scale", [1.0, 400.0])
def test_frozen_head_one_pass_matches_f_cross_entropy(monkeypatch, logit_scale, kernels):
    """A frozen head takes the one-pass path (running maximum, rescaled sums): uneven
    tiles (49152 = 4 x 10000 + 9152), chunks of 16 rows, and logits in the hundreds,
    where exp without the maximum would overflow float32. Each tile's softmax step runs
    on the native training kernels (which must load wherever the inference kernels do)
    and on torch's ops."""
    if kernels == "torch":
        monkeypatch.setattr(native, "train_lib", lambda: None)
    elif not native.available():
        pytest.skip("no C++ compiler")
    else:
        assert native.train_lib() is not None, "the training kernels did not build"
    monkeypatch.setattr(loss_module, "ONLINE_VOCAB_TILE", 10000)
    h, w, t = _inputs(50, 32, seed=3)
    h = h * logit_scale
    t[3], t[4] = V - 1, 10000  # targets on a tile's first column and the last tile's end
    h1 = h.clone().requires_grad_(True)
    ours = fused_linear_cross_entropy(h1, w, t, chunk_rows=16)
    ours.backward()
    h2 = h.clone().requires_grad_(True)
    ref = F.cross_entropy(h2 @ w.t(), t, ignore_index=IGNORE_INDEX)
    ref.backward()
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h1.grad, h2.grad, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the loss alone (evaluation) takes the same path
        torch.testing.assert_close(fused_linear_cross_entropy(h, w, t), ref.detach(),
                                   atol=1e-5, rtol=1e-5)


def test_labelled_positions_are_the_counted_rows_in_order():
    t = torch.tensor([IGNORE_INDEX, 4, IGNORE_INDEX, 2, 9, IGNORE_INDEX])
    rows = labelled_positions(t)
    assert rows.tolist() == [1, 3, 4] and t.index_select(0, rows).tolist() == [4, 2, 9]
    assert labelled_positions(torch.full((6,), IGNORE_INDEX)) is None  # nothing counts
    assert labelled_positions(torch.arange(6)) is None  # everything counts


@pytest.mark.parametrize("name,tied", [("tiny", False), ("tiny", True), ("tiny-gpt2", True)])
def test_lm_loss_on_labelled_rows_matches_full_logits(name, tied):
    """Prompt-masked targets: lm_loss (the last block's output projection and MLP, and the
    head, on labelled rows only) gives the loss and every weight's gradient of the full
    logits' F.cross_entropy (Transformer.loss)."""
    ids = torch.randint(0, 256, (3, 10), generator=torch.Generator().manual_seed(4))
    targets = torch.roll(ids, -1, dims=1)
    targets[0, :6] = IGNORE_INDEX  # a prompt
    targets[1, :3] = IGNORE_INDEX
    targets[2, 7:] = IGNORE_INDEX  # padding

    def run(fn):
        model = tiny_model(name, seed=2, tie_embeddings=tied).train()
        loss = fn(model)
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    ours, g_ours = run(lambda m: lm_loss(m, ids, targets))
    ref, g_ref = run(lambda m: m.loss(ids, targets))
    assert abs(ours - ref) < 1e-5 * abs(ref)
    for name, g in g_ref.items():
        assert rel_err(g_ours[name], g) < 1e-5, name


def test_scaled_upstream_gradient_and_frozen_weight():
    h, w, t = _inputs(40, 32)
    h1 = h.clone().requires_grad_(True)
    (3.0 * fused_linear_cross_entropy(h1, w, t, chunk_rows=7)).backward()
    h2 = h.clone().requires_grad_(True)
    (3.0 * F.cross_entropy(h2 @ w.t(), t, ignore_index=IGNORE_INDEX)).backward()
    torch.testing.assert_close(h1.grad, h2.grad, atol=1e-5, rtol=1e-5)


def test_all_targets_masked_gives_zero_loss_and_grads():
    h, w, _ = _inputs(8, 16)
    t = torch.full((8,), IGNORE_INDEX)
    h1 = h.clone().requires_grad_(True)
    loss = fused_linear_cross_entropy(h1, w, t)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(h1.grad.abs().max()) == 0.0


def test_bad_targets_and_shapes_are_refused():
    h, w, t = _inputs(4, 16)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fused_linear_cross_entropy(h, w, torch.tensor([0, 1, V, 2]))
    with pytest.raises(ValueError, match="must be"):
        fused_linear_cross_entropy(h, w[:, :8], t)


def test_peak_memory_of_loss_and_backward_is_under_a_quarter_of_f_cross_entropy():
    # Method: tests/engine/peak_memory.py counts every storage aten allocates during the
    # block (forward + backward) and tracks the live total. Both sides train the head
    # weight and the hidden states, as full fine-tuning of a tied head does.
    h, w, t = _inputs(1024, 64)

    def fused():
        hh, ww = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        with PeakMemory() as pm:
            fused_linear_cross_entropy(hh, ww, t).backward()
        return pm.peak

    def reference():
        hh, ww = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        with PeakMemory() as pm:
            F.cross_entropy(hh @ ww.t(), t, ignore_index=IGNORE_INDEX).backward()
        return pm.peak

    ours, theirs = fused(), reference()
    logits_bytes = 1024 * V * 4
    assert theirs >= 2 * logits_bytes  # the tracker sees F.cross_entropy's N x V tensors
    assert ours <= theirs / 4, (ours, theirs)
