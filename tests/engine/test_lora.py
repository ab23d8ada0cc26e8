"""LoRA: forward and merge against the weight composition W + (alpha/r) B A written out in
plain torch, and one training step against peft on transformers' Llama."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from llmos_jupyter.engine.lora import LoRALinear, apply_lora, merge_lora, resolve_targets
from llmos_jupyter.engine.loss import lm_loss
from llmos_jupyter.errors import ConfigError
from tests.model.helpers import hf_llama, tiny_model

R, ALPHA = 4, 8.0
HF_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _lora_model(targets="all-linear", seed=0):
    base = tiny_model(seed=seed)
    model = copy.deepcopy(base)
    torch.manual_seed(seed + 1)
    apply_lora(model, R, ALPHA, targets)
    with torch.no_grad():  # B starts at zero; make the update visible
        for m in model.modules():
            if isinstance(m, LoRALinear):
                for b in m.lora_B:
                    b.normal_(0, 0.05)
    return base, model


def _composed_weights(base, model) -> dict[str, torch.Tensor]:
    """W + (alpha / r) * B_i A_i on each part's rows, from the adapters' tensors."""
    c = base.config
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    rows = {"attn.wqkv": [(0, q), (q, q + kv), (q + kv, q + 2 * kv)],
            "attn.wo": [(0, c.dim)], "ffn.w_in": [(0, c.ffn_dim), (c.ffn_dim, 2 * c.ffn_dim)],
            "ffn.w_out": [(0, c.dim)]}
    out = {}
    for i, layer in enumerate(model.layers):
        for name, parts in rows.items():
            parent, attr = name.split(".")
            lora = getattr(getattr(layer, parent), attr)
            w = base.state_dict()[f"layers.{i}.{name}.weight"].clone()
            for k, (a, b) in enumerate(parts):
                A = lora.lora_A[k * R:(k + 1) * R]
                w[a:b] = w[a:b] + (ALPHA / R) * lora.lora_B[k] @ A
            out[f"layers.{i}.{name}.weight"] = w
    return out


def test_forward_and_merge_equal_the_composed_weights():
    base, model = _lora_model()
    ids = torch.randint(0, base.config.vocab_size, (2, 9))
    want = functional_call(base, _composed_weights(base, model), (ids,))
    torch.testing.assert_close(model(ids), want, atol=1e-5, rtol=1e-5)
    merged = merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    torch.testing.assert_close(merged(ids), want, atol=1e-5, rtol=1e-5)
    assert set(merged.state_dict()) == set(base.state_dict())  # native names unchanged


def test_default_targets_train_only_adapters_of_q_and_v():
    base, model = _lora_model(targets=None)
    assert resolve_targets(None) == ("q_proj", "v_proj")
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n and "wqkv" in n for n in trained)
    c = base.config
    parts = model.layers[0].attn.wqkv.parts
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    assert parts == [(0, q), (q + kv, q + 2 * kv)]  # q rows and v rows, k left alone


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="unknown LoRA target"):
        apply_lora(tiny_model(), 4, 8, ["qkv"])
    with pytest.raises(ConfigError, match="rank"):
        apply_lora(tiny_model(), 0, 8)


def test_one_step_matches_peft_on_transformers_llama():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    ours = tiny_model()
    hf = peft.get_peft_model(hf_llama(ours), peft.LoraConfig(
        r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=HF_TARGETS))
    apply_lora(ours, R, ALPHA, "all-linear")
    # Same starting adapters: peft's A's copied into ours (B's are zero on both sides).
    hf_mods = dict(hf.named_modules())
    pairs = []  # (our A slice owner, index, peft module)
    for i, layer in enumerate(ours.layers):
        for mod, names in [(layer.attn.wqkv, ["q_proj", "k_proj", "v_proj"]),
                           (layer.attn.wo, ["o_proj"]),
                           (layer.ffn.w_in, ["gate_proj", "up_proj"]),
                           (layer.ffn.w_out, ["down_proj"])]:
            for k, n in enumerate(names):
                group = "self_attn" if n in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
                pm = hf_mods[f"base_model.model.model.layers.{i}.{group}.{n}"]
                with torch.no_grad():
                    mod.lora_A[k * R:(k + 1) * R].copy_(pm.lora_A["default"].weight)
                pairs.append((mod, k, pm))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, ours.config.vocab_size, (3, 12), generator=g)
    targets = torch.randint(0, ours.config.vocab_size, (3, 12), generator=g)
    targets[:, :4] = -100  # a masked prompt
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-2)
    opt_hf = torch.optim.AdamW([p for p in hf.parameters() if p.requires_grad], lr=1e-2)
    for _step in range(2):  # step 1 (B = 0) and step 2 (both adapters moved)
        loss_ours = lm_loss(ours, ids, targets)
        logits = hf(input_ids=ids).logits
        loss_hf = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        torch.testing.assert_close(loss_ours, loss_hf, atol=1e-5, rtol=1e-5)
        loss_ours.backward()
        loss_hf.backward()
        for mod, k, pm in pairs:
            torch.testing.assert_close(mod.lora_B[k].grad, pm.lora_B["default"].weight.grad,
                                       atol=1e-5, rtol=1e-4)
        for opt in (opt_ours, opt_hf):
            opt.step()
            opt.zero_grad()
    for mod, k, pm in pairs:
        torch.testing.assert_close(mod.lora_A[k * R:(k + 1) * R], pm.lora_A["default"].weight,
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("parts,bias", [([(0, 20), (28, 36)], False), ([(0, 36)], True)])
def test_training_function_equals_autograd_of_the_plain_ops(monkeypatch, parts, bias):
    """LoRAFunction (the training forward: each part updates its own rows in place)
    against autograd of the plain forward: output and every gradient, bit for bit; two
    parts of a fused weight with an unadapted gap between them, and one whole weight
    with a bias."""
    from llmos_jupyter.engine import lora

    torch.manual_seed(0)
    base = torch.nn.Linear(24, 36, bias=bias).requires_grad_(False)
    layer = LoRALinear(base, 4, 8.0, parts)
    with torch.no_grad():
        for b in layer.lora_B:
            b.normal_()
    x = torch.randn(3, 5, 24, requires_grad=True)
    weights = torch.randn(3, 5, 36)
    results = []
    for fused in (True, False):
        monkeypatch.setattr(lora, "wants_training_ops", lambda *a, f=fused: f)
        tensors = [x, layer.lora_A, *layer.lora_B]
        y = layer(x)
        results.append([y.detach(), *torch.autograd.grad((y * weights).sum(), tensors)])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
