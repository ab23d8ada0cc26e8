"""Cross-entropy at V=128256 (lm head + loss, forward+backward): time and peak memory
against F.cross_entropy. The logits come from a matmul, as in training, so our loss
takes its in-place gradient path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from llmos_kernels import cross_entropy
from measure import peak_bytes, time_ms

VOCAB, HIDDEN = 128256, 256


def _case(n: int) -> dict:
    h = torch.randn(n, HIDDEN, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(HIDDEN, VOCAB, device="cuda", dtype=torch.bfloat16) / HIDDEN ** 0.5
    targets = torch.randint(0, VOCAB, (n,), device="cuda")

    def ours():
        cross_entropy(h @ w, targets).backward()

    def ref():
        F.cross_entropy(h @ w, targets).backward()

    # The matmul alone, to separate the loss's own cost from the lm head's.
    head_ms = time_ms(lambda: h @ w)
    ours_ms, ref_ms = time_ms(ours, grad_to_none=[h]), time_ms(ref, grad_to_none=[h])
    h.grad = None
    ours_mem, ref_mem = peak_bytes(ours), peak_bytes(ref)
    return dict(
        kernel="cross_entropy", N=n, V=VOCAB, dtype="bf16", ms=ours_ms, torch_ms=ref_ms,
        speed_ratio=ref_ms / ours_ms, lm_head_fwd_ms=head_ms,
        peak_mib=ours_mem / 2**20, torch_peak_mib=ref_mem / 2**20,
        memory_ratio=ours_mem / ref_mem,
    )


def run(n_tokens=(4096, 8192)) -> list[dict]:
    rows = []
    for n in n_tokens:
        r = _case(n)
        rows.append(r)
        print(f"  cross_entropy N={n}: {r['ms']:.2f} ms x{r['speed_ratio']:.2f} speed, peak "
              f"{r['peak_mib']:.0f} MiB vs {r['torch_peak_mib']:.0f} MiB "
              f"({r['memory_ratio']:.2f} of torch)", flush=True)
    return rows
