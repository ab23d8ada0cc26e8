"""Finite weights: the check llama.cpp runs with --check-tensors, done at every import.

A NaN or infinity in a float tensor, or in the float16 scale of a quantization block, makes
every answer of the model that touches it NaN (decoded as the same token over and over);
no released model has one, so it means a corrupt file. Checking costs one pass over the
dense tensors and over the few bytes of scale in each block (~0.2 s for SmolLM2's 98 MB).
"""

from __future__ import annotations

import numpy as np
import torch

from llmos_jupyter.core.checkpoint import QuantizedTensor, Tensor

# ggml block type -> (bytes per block, byte offsets of its float16 scales), from
# ggml-common.h. Types not listed (ternary, IQ2/IQ3/IQ1 grids, MXFP4) are not checked.
BLOCK_SCALES: dict[str, tuple[int, tuple[int, ...]]] = {
    "Q4_0": (18, (0,)),
    "Q4_1": (20, (0, 2)),
    "Q5_0": (22, (0,)),
    "Q5_1": (24, (0, 2)),
    "Q8_0": (34, (0,)),
    "Q2_K": (84, (80, 82)),
    "Q3_K": (110, (108,)),
    "Q4_K": (144, (0, 2)),
    "Q5_K": (176, (0, 2)),
    "Q6_K": (210, (208,)),
    "IQ4_NL": (18, (0,)),
    "IQ4_XS": (136, (0,)),
}


def is_finite(t: Tensor) -> bool:
    """False when a dense tensor holds NaN/inf, or a block tensor has such a scale."""
    if isinstance(t, torch.Tensor):
        return bool(torch.isfinite(t).all()) if t.is_floating_point() else True
    if not isinstance(t, QuantizedTensor) or t.ggml_type not in BLOCK_SCALES:
        return True
    size, offsets = BLOCK_SCALES[t.ggml_type]
    blocks = np.asarray(t.blocks).reshape(-1, size)
    for off in offsets:
        scales = np.ascontiguousarray(blocks[:, off : off + 2]).view("<f2")
        if not np.isfinite(scales).all():
            return False
    return True


def nonfinite_tensors(tensors: dict[str, Tensor]) -> list[str]:
    """Names of the tensors that fail `is_finite`, in order."""
    return [name for name, t in tensors.items() if not is_finite(t)]
