"""The whole Transformer on the `triton` backend equals it on `sdpa`: forward, backward,
and cached generation (tiny Llama, float32; under the interpreter on CPU)."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.model.backend import use_backend
from llmos_jupyter.model.loading import build_model
from llmos_jupyter.model.transformer import Transformer
from tests.kernels.conftest import kernel_device
from tests.model.helpers import checkpoint_of


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = Transformer(ModelConfig.from_name("tiny", n_layers=2)).to(kernel_device())
    with torch.no_grad():
        for p in m.parameters():  # random weights of a useful scale, norms near 1
            p.copy_(torch.randn_like(p) * (0.02 if p.dim() > 1 else 1.0) + (p.dim() == 1))
    return m


def _loss_and_grads(model, ids, backend):
    model.zero_grad()
    with use_backend(backend):
        loss = model.loss(ids)
        loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_forward_and_backward_equal_sdpa(model):
    ids = torch.randint(0, model.config.vocab_size, (2, 37), device=kernel_device())
    with use_backend("sdpa"):
        ref_logits = model(ids)
    with use_backend("triton"):
        logits = model(ids)
    torch.testing.assert_close(logits, ref_logits, atol=2e-5, rtol=1e-4)
    loss_ref, grads_ref = _loss_and_grads(model, ids, "sdpa")
    loss, grads = _loss_and_grads(model, ids, "triton")
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    assert grads.keys() == grads_ref.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], atol=1e-5, rtol=1e-3,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_loss_ignores_masked_targets(model):
    ids = torch.randint(0, model.config.vocab_size, (1, 9), device=kernel_device())
    targets = ids.clone()
    targets[0, :5] = -100
    with use_backend("sdpa"):
        ref = model.loss(ids, targets)
    with use_backend("triton"):
        got = model.loss(ids, targets)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_cached_decode_equals_sdpa(model):
    ids = torch.randint(0, model.config.vocab_size, (2, 11), device=kernel_device())
    lengths = torch.tensor([11, 6], device=kernel_device())
    steps = {}
    for backend in ("sdpa", "triton"):
        with use_backend(backend):
            model.setup_caches(2, 32)
            out = [model.prefill(ids, lengths)]
            pos = lengths.clone()
            tok = out[0].argmax(-1)
            for _ in range(4):
                out.append(model.decode_step(tok, pos))
                tok, pos = out[-1].argmax(-1), pos + 1
        steps[backend] = torch.stack(out)
    torch.testing.assert_close(steps["triton"], steps["sdpa"], atol=2e-5, rtol=1e-4)


@pytest.mark.gpu
@torch.inference_mode()
def test_bfloat16_cached_decode_is_close_to_sdpa(model):
    # bf16 is how a GPU serves: our Triton prefill and decode attention against torch's
    # SDPA in the same precision, to bf16's resolution, with the same greedy tokens.
    model = build_model(checkpoint_of(model.cpu()), device="cuda", dtype="bfloat16")
    ids = torch.randint(0, model.config.vocab_size, (2, 40), device="cuda")
    lengths = torch.tensor([40, 23], device="cuda")
    logits, tokens = {}, {}
    for backend in ("sdpa", "triton"):
        with use_backend(backend):
            model.setup_caches(2, 64)
            out = [model.prefill(ids, lengths)]
            pos, tok = lengths.clone(), out[0].argmax(-1)
            toks = [tok]
            for _ in range(8):
                out.append(model.decode_step(tok, pos))
                tok, pos = out[-1].argmax(-1), pos + 1
                toks.append(tok)
        logits[backend], tokens[backend] = torch.stack(out).float(), torch.stack(toks)
    scale = logits["sdpa"].abs().max()
    assert (logits["triton"] - logits["sdpa"]).abs().max() <= 2e-2 * scale
    assert torch.equal(tokens["triton"], tokens["sdpa"])
