"""Peak bytes of tensor storage alive during a block of torch code, on any device.

torch's CPU allocator keeps no statistics and tracemalloc does not see its allocations,
so this counts them itself: a TorchDispatchMode sees the output of every aten operator
(forward and, on CPU, backward: the autograd engine runs CPU work on the calling
thread), records each new storage's size with a weak reference, and drops it once the
storage is freed. The count is taken after each operator, so a buffer freed within one
operator is missed (its peak is at most the operator's output) - the same for both sides
of any comparison. Tensors created before the block are not counted.
"""

from __future__ import annotations

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakMemory(TorchDispatchMode):
    """`with PeakMemory() as pm: ...` then `pm.peak` (bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def _purge(self) -> None:
        for key, (ref, n) in list(self.live.items()):
            if ref.expired():
                del self.live[key]
                self.current -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._purge()
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.live:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out
