"""The kernel backend switch: reference == sdpa, the built-in backends, the selection rules."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.errors import ConfigError
from llmos_jupyter.model import backend


@pytest.mark.parametrize("Hq,Hkv", [(4, 4), (6, 2), (9, 3)])
def test_prefill_backends_agree(Hq, Hkv):
    q = torch.randn(2, Hq, 17, 16)
    k, v = torch.randn(2, Hkv, 17, 16), torch.randn(2, Hkv, 17, 16)
    with backend.use_backend("reference"):
        ref = backend.prefill(q, k, v)
    with backend.use_backend("sdpa"):
        fast = backend.prefill(q, k, v)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("B,seqlens", [(1, [9]), (3, [1, 9, 4])])
@pytest.mark.parametrize("Hq,Hkv", [(4, 4), (6, 2)])
def test_decode_backends_agree_and_ignore_the_tail(B, seqlens, Hq, Hkv):
    q = torch.randn(B, Hq, 16)
    kc, vc = torch.randn(B, Hkv, 32, 16), torch.randn(B, Hkv, 32, 16)
    lens = torch.tensor(seqlens)
    with backend.use_backend("reference"):
        ref = backend.decode(q, kc, vc, lens)
    kc2, vc2 = kc.clone(), vc.clone()
    for b, n in enumerate(seqlens):  # garbage past each row's length must not matter
        kc2[b, :, n:] = 1e3
        vc2[b, :, n:] = -1e3
    with backend.use_backend("sdpa"):
        fast = backend.decode(q, kc2, vc2, lens)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def test_selection_order(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert backend.get_backend("cpu") == "sdpa"
    monkeypatch.setenv(backend.ENV_VAR, "reference")
    assert backend.get_backend("cpu") == "reference"
    with backend.use_backend("sdpa"):
        assert backend.get_backend("cpu") == "sdpa"
    assert backend.get_backend("cpu") == "reference"
    backend.set_backend("sdpa")
    try:
        assert backend.get_backend("cpu") == "sdpa"
    finally:
        backend.set_backend(None)


def test_unknown_backend_is_a_config_error(monkeypatch):
    with pytest.raises(ConfigError, match="sdpa"):
        backend.set_backend("spda")
    monkeypatch.setenv(backend.ENV_VAR, "nope")
    with pytest.raises(ConfigError, match="nope"):
        backend.get_backend("cpu")


def test_registry_takes_a_new_backend():
    calls = []

    def pre(q, k, v):
        calls.append("prefill")
        return torch.zeros_like(q)

    def dec(q, kc, vc, lens):
        calls.append("decode")
        return torch.zeros_like(q)

    backend.register_backend("test-only", pre, dec)
    try:
        with backend.use_backend("test-only"):
            x = torch.randn(1, 2, 3, 4)
            backend.prefill(x, x, x)
            backend.decode(torch.randn(1, 2, 4), torch.randn(1, 2, 5, 4),
                           torch.randn(1, 2, 5, 4), torch.tensor([3]))
        assert calls == ["prefill", "decode"]
    finally:
        backend._BACKENDS.pop("test-only")


def test_builtin_backends_are_registered_with_their_defaults(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert backend.available_backends() == ["reference", "sdpa", "triton"]
    assert backend.get_backend("cpu") == "sdpa"
    assert backend.get_backend("cuda") == "triton"
    triton = backend._BACKENDS["triton"]
    assert triton.rms_norm is not None and triton.cross_entropy is not None
