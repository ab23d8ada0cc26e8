"""Static, preallocated key/value cache for one attention layer.

Buffers are [B_max, Hkv, S_max, D] and never reallocated while generating: prefill
copies a block of positions in, each decode step writes one position per sequence in
place, so a step allocates nothing for the cache.
"""

from __future__ import annotations

import torch
from torch import nn


class KVCache(nn.Module):
    """Keys and values of one layer for up to `batch_size` sequences of `max_seq_len`."""

    def __init__(
        self,
        batch_size: int,
        max_seq_len: int,
        n_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        super().__init__()
        shape = (batch_size, n_kv_heads, max_seq_len, head_dim)
        # Not persistent: a cache is scratch space, never part of a checkpoint.
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), False)
        # Row indices 0..B-1 for the per-sequence scatter of a decode step.
        self.register_buffer("batch_index", torch.arange(batch_size, device=device), False)

    @property
    def batch_size(self) -> int:
        return self.k_cache.shape[0]

    @property
    def max_seq_len(self) -> int:
        return self.k_cache.shape[2]

    def fits(self, batch_size: int, max_seq_len: int, dtype: torch.dtype, device) -> bool:
        """Whether these buffers can serve a request of this size without reallocating."""
        return (
            batch_size <= self.batch_size
            and max_seq_len <= self.max_seq_len
            and dtype == self.k_cache.dtype
            and torch.device(device) == self.k_cache.device
        )

    def write_prefill(self, k: torch.Tensor, v: torch.Tensor, start: int = 0, row: int = 0) -> None:
        """Store k, v [B, Hkv, T, D] at positions [start, start + T) of rows [row, row + B)."""
        B, _, T, _ = k.shape
        self.k_cache[row:row + B, :, start:start + T].copy_(k)
        self.v_cache[row:row + B, :, start:start + T].copy_(v)

    def resized(self, batch_size: int, max_seq_len: int, keep_rows: int, keep_len: int) -> KVCache:
        """A cache of the new size holding this one's positions [0, keep_len) of rows
        [0, keep_rows): a batch that sequences join while others run grows this way."""
        k = self.k_cache
        new = KVCache(batch_size, max_seq_len, k.shape[1], k.shape[3], k.dtype, k.device)
        new.k_cache[:keep_rows, :, :keep_len].copy_(k[:keep_rows, :, :keep_len])
        new.v_cache[:keep_rows, :, :keep_len].copy_(self.v_cache[:keep_rows, :, :keep_len])
        return new

    def share_prefix(self, batch_size: int, length: int) -> None:
        """Copy row 0's positions [0, length) into rows [1, batch_size): a prompt prefix
        common to the batch is computed once and reused by every row."""
        self.k_cache[1:batch_size, :, :length].copy_(self.k_cache[:1, :, :length])
        self.v_cache[1:batch_size, :, :length].copy_(self.v_cache[:1, :, :length])

    def move_rows(self, src: list[int], dst: list[int], length: int) -> None:
        """Copy positions [0, length) of rows src[i] into rows dst[i] (rows disjoint): a
        batch drops finished sequences by moving its last running ones into their rows."""
        s = torch.tensor(src, device=self.k_cache.device)
        d = torch.tensor(dst, device=self.k_cache.device)
        self.k_cache[d, :, :length] = self.k_cache[s, :, :length]
        self.v_cache[d, :, :length] = self.v_cache[s, :, :length]

    def write_decode(
        self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, Hkv, D] of row b at positions[b]; return the caches of rows [0, B).

        One scatter per buffer (advanced indexing on batch and position), no Python loop.
        """
        B = k.shape[0]
        if B == 1:  # index_copy_ along positions is the cheapest write for one sequence
            self.k_cache[:1].index_copy_(2, positions, k.unsqueeze(2))  # (1, Hkv, 1, D)
            self.v_cache[:1].index_copy_(2, positions, v.unsqueeze(2))
            return self.k_cache[:1], self.v_cache[:1]
        rows = self.batch_index[:B]
        self.k_cache[rows, :, positions] = k  # (B, Hkv, D) into (B, Hkv, S_max, D)
        self.v_cache[rows, :, positions] = v
        return self.k_cache[:B], self.v_cache[:B]
