"""Softmax GB/s against torch.softmax and as a fraction of device copy bandwidth."""

from __future__ import annotations

import torch
from llmos_kernels import softmax
from measure import copy_bandwidth_gbs, time_ms

# (rows, cols): short rows, model-sized rows, one-block rows and looped (> 32768) rows.
SHAPES = ((32768, 1024), (8192, 4096), (2048, 32768), (512, 131072))


def _case(n_rows: int, n_cols: int, copy_gbs: float) -> dict:
    x = torch.randn(n_rows, n_cols, device="cuda", dtype=torch.bfloat16)
    n_bytes = 2 * x.numel() * x.element_size()  # read x, write y
    ours = time_ms(lambda: softmax(x))
    ref = time_ms(lambda: torch.softmax(x, dim=-1))
    return dict(
        kernel="softmax", rows=n_rows, cols=n_cols, dtype="bf16",
        gbs=n_bytes / ours / 1e6, torch_gbs=n_bytes / ref / 1e6, ratio=ref / ours,
        copy_gbs=copy_gbs, fraction_of_copy=n_bytes / ours / 1e6 / copy_gbs,
    )


def run(shapes=SHAPES) -> list[dict]:
    copy_gbs = copy_bandwidth_gbs()
    rows = []
    for n_rows, n_cols in shapes:
        r = _case(n_rows, n_cols, copy_gbs)
        rows.append(r)
        print(f"  softmax {n_rows}x{n_cols}: {r['gbs']:.0f} GB/s "
              f"({r['fraction_of_copy']:.0%} of copy {copy_gbs:.0f}), x{r['ratio']:.2f} vs torch",
              flush=True)
    return rows
