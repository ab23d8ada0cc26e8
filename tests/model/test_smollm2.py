"""Fidelity on the real default model (SmolLM2-135M-Instruct Q4_1 GGUF).

Ours in float32 against transformers loading the same GGUF, and dtype="auto" against
our float32 — greedy continuations must be identical (the promise of "auto").
"""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.model.loading import build_model
from tests.model.helpers import right_padded

pytestmark = pytest.mark.slow

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a Python function that reverses a list.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "Once upon a time, in a small village by the sea,",
]
N_NEW = 32


@pytest.fixture(scope="module")
def ckpt(smollm2_gguf):
    from llmos_jupyter.formats.gguf import read_gguf

    return read_gguf(smollm2_gguf)


@pytest.fixture(scope="module")
def prompts(smollm2_gguf):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    return [tok(p)["input_ids"] for p in PROMPTS]


@pytest.fixture(scope="module")
def ours32_greedy(ckpt, prompts):
    """Our float32 greedy continuations of all prompts, decoded as one batch."""
    return greedy(build_model(ckpt, dtype="float32"), prompts, N_NEW)


def greedy(model, prompts: list[list[int]], n: int) -> list[list[int]]:
    """Batched greedy decoding through prefill + decode_step (right-padded prompts)."""
    ids, lengths = right_padded(prompts)
    model.setup_caches(len(prompts), ids.shape[1] + n)
    tok, pos, out = model.prefill(ids, lengths).argmax(-1), lengths.clone(), []
    for _ in range(n):
        out.append(tok)
        tok = model.decode_step(tok, pos).argmax(-1)
        pos += 1
    return torch.stack(out, 1).tolist()


def test_float32_matches_transformers(smollm2_gguf, ckpt, ours32_greedy, prompts):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).eval()
    ids = torch.tensor([prompts[0]])
    with torch.inference_mode():
        theirs = hf(ids).logits
        ours = build_model(ckpt, dtype="float32")(ids)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-3
    # Greedy continuation of one prompt, token for token (EOS included: not suppressed).
    want, step, cache = [], ids, None
    with torch.inference_mode():
        for _ in range(N_NEW):
            out = hf(step, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache, step = out.past_key_values, out.logits[:, -1:].argmax(-1)
            want.append(int(step))
    assert ours32_greedy[0] == want


def test_auto_greedy_equals_float32(ckpt, ours32_greedy, prompts):
    auto = build_model(ckpt, dtype="auto")
    assert auto.weight_mode in ("ggml", "float32")
    assert greedy(auto, prompts, N_NEW) == ours32_greedy
