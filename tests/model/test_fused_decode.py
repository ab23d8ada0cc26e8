"""The fused native decode step against the torch reference path of the same model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from llmos_jupyter.core.checkpoint import QuantizedTensor
from llmos_jupyter.model import backend, fused_decode, native
from llmos_jupyter.model.loading import build_model
from tests.model.helpers import checkpoint_of, rel_err, right_padded, tiny_model

pytestmark = pytest.mark.skipif(not native.available(), reason="no C++ compiler")

VARIANTS = [("tiny", {}), ("tiny", {"tie_embeddings": True}), ("tiny", {"qkv_bias": True}),
            ("tiny", {"dim": 256, "n_heads": 4})]  # head_dim 64: the AVX2 attention path



def _decode(model, prompts: list[list[int]], steps: int, fused: bool):
    """Prefill right-padded prompts, then greedy-decode; per-step logits and tokens."""
    model.fused_decode = fused
    ids, lengths = right_padded(prompts, pad=3)
    model.setup_caches(len(prompts), ids.shape[1] + steps)
    tok, pos = model.prefill(ids, lengths).argmax(-1), lengths.clone()
    logits, toks = [], []
    for _ in range(steps):
        toks.append(tok)
        out = model.decode_step(tok, pos)
        used = model._fused_decoder(len(prompts)) is not None
        assert used == fused, "fused path expected iff enabled"
        logits.append(out)
        tok, pos = out.argmax(-1), pos + 1
    return torch.stack(logits, 1), torch.stack(toks, 1)


def _quantized_ckpt(model, kind: str, embed_kind: str = "Q8_0"):
    """The model's checkpoint with projections as `kind` blocks, embeddings as Q8_0."""
    ckpt = checkpoint_of(model)
    for name, t in list(ckpt.tensors.items()):
        k = embed_kind if name == "tok_embeddings.weight" else kind
        if name.endswith(("wqkv.weight", "wo.weight", "w_in.weight", "w_out.weight")) or (
                name == "tok_embeddings.weight" and embed_kind):
            blocks = quantize(t.numpy().astype(np.float32), GGMLQuantizationType[k])
            ckpt.tensors[name] = QuantizedTensor(k, blocks, tuple(t.shape))
    return ckpt


def _assert_fused_matches_torch(model, prompts: list[list[int]], steps: int) -> None:
    """Greedy decoding through the fused step equals the torch path: logits to 1e-5
    (relative), tokens exactly."""
    want_logits, want_toks = _decode(model, prompts, steps, fused=False)
    got_logits, got_toks = _decode(model, prompts, steps, fused=True)
    assert rel_err(got_logits, want_logits) < 1e-5
    assert torch.equal(got_toks, want_toks)


@pytest.mark.parametrize("name,overrides", VARIANTS)
@pytest.mark.parametrize("batch", [1, 3, 13])
def test_fused_matches_torch_path(name, overrides, batch):
    model = tiny_model(name, **overrides)
    # Lengths 13, 6, 3: rows at different positions; 12 steps cross the 4- and 8-position
    # blocks of the attention kernel and their tails. 13 rows: the batch kernels' groups
    # of 4 x rows and their remainder.
    prompts = [list(range(7, 20)), [5, 9, 200, 7, 11, 3], [4, 8, 15]]
    prompts = [[t + i for t in prompts[i % 3]] for i in range(batch)]
    _assert_fused_matches_torch(model, prompts, 12)


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_ggml_mode_fused_matches_its_torch_path(kind):
    ckpt = _quantized_ckpt(tiny_model("tiny", tie_embeddings=True), kind)
    model = build_model(ckpt, dtype="ggml")
    assert fused_decode.supports(model)
    _assert_fused_matches_torch(model, [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [11, 12, 13]], 8)


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1"])
def test_ggml_and_float32_fused_steps_are_bit_identical(kind):
    """Same checkpoint, blocks vs their dequantized float32: the fused step gives the same
    bits, so dtype="auto" (ggml) decodes exactly like float32."""
    ckpt = _quantized_ckpt(tiny_model("tiny", tie_embeddings=True), kind)
    models = [build_model(ckpt, dtype=d) for d in ("ggml", "float32")]
    out = []
    for model in models:
        model.setup_caches(2, 16)
        tok, steps = torch.tensor([5, 17]), []
        for p in range(10):  # decode from position 0: every step runs fused
            logits = model.decode_step(tok, torch.tensor([p, p]))
            steps.append(logits)
            tok = logits.argmax(-1)
        out.append(torch.stack(steps))
    assert torch.equal(out[0], out[1])


def test_falls_back_where_it_does_not_apply():
    model = tiny_model("tiny")
    model.setup_caches(40, 8)
    assert model._fused_decoder(1) is not None and model._fused_decoder(40) is not None
    assert model._fused_decoder(41) is None  # more rows than the caches hold
    with backend.use_backend("reference"):  # an explicit backend is honoured
        assert model._fused_decoder(1) is None
    assert not fused_decode.supports(tiny_model("tiny-gpt2"))
    bf16 = build_model(checkpoint_of(tiny_model("tiny")), dtype="bfloat16")
    assert not fused_decode.supports(bf16)


def test_plan_follows_reallocated_caches():
    model = tiny_model("tiny")
    seq = torch.randint(0, 512, (1, 12))
    want = model(seq)
    model.setup_caches(1, 8)
    model.decode_step(seq[:, 0], torch.tensor([0]))
    model.setup_caches(1, 32)  # bigger: new buffers, so the plan must be rebuilt
    model.prefill(seq[:, :4], torch.tensor([4]))
    for p in range(4, 12):
        assert rel_err(model.decode_step(seq[:, p], torch.tensor([p]))[0], want[0, p]) < 1e-5


def test_out_of_range_inputs_raise():
    model = tiny_model("tiny")
    model.setup_caches(1, 8)
    with pytest.raises(IndexError, match="vocabulary"):
        model.decode_step(torch.tensor([512]), torch.tensor([0]))
    with pytest.raises(IndexError, match="KV cache"):
        model.decode_step(torch.tensor([1]), torch.tensor([8]))


def test_copies_do_not_share_the_plan():
    model = tiny_model("tiny")
    model.setup_caches(1, 8)
    model.decode_step(torch.tensor([1]), torch.tensor([0]))
    twin = copy.deepcopy(model)
    twin.setup_caches(1, 8)
    assert twin._fused_decoder(1) is not model._fused_decoder(1)


def test_without_a_compiler_everything_falls_back(monkeypatch):
    monkeypatch.setattr(native, "available", lambda: False)
    model = tiny_model("tiny")
    model.setup_caches(1, 8)
    assert model._fused_decoder(1) is None
    model.decode_step(torch.tensor([1]), torch.tensor([0]))  # the torch path
    ckpt = _quantized_ckpt(tiny_model("tiny", tie_embeddings=True), "Q4_1")
    assert build_model(ckpt, dtype="auto").weight_mode == "float32"
