"""Timing, memory and CSV output shared by the kernel benchmarks (CUDA only)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import torch
import triton.testing


def time_ms(fn: Callable[[], object], grad_to_none=None) -> float:
    """Median milliseconds of fn on the GPU (triton.testing.do_bench, L2 flushed)."""
    return float(triton.testing.do_bench(fn, warmup=10, rep=50, grad_to_none=grad_to_none,
                                         return_mode="median"))


def peak_bytes(fn: Callable[[], object]) -> int:
    """Bytes allocated by fn beyond what was allocated before it ran."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def copy_bandwidth_gbs(n_bytes: int = 1 << 30) -> float:
    """Device copy bandwidth (read + write bytes per second) for the softmax's yardstick."""
    src = torch.empty(n_bytes // 2, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    return 2 * n_bytes / (ms * 1e-3) / 1e9


def write_csv(rows: list[dict], path: Path) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
