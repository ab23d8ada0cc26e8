"""engine layer of LLMOS: text generation (prefill, decode, sampling, streaming, batching).

Public API:
    GenerationParams   every knob of a request, with `validate()`
    generate           complete a batch of prompts (token ids) -> list[GenerationResult]
    stream             complete one prompt, yielding text pieces
    sample             pick next tokens from logits (penalty, temperature, top-k/p, min-p)

Names load on first use: `engine.params` (the sampling settings every interface offers)
must import without torch, so the CLI starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "GenerationParams": "params",
    "GenerationResult": "generate",
    "generate": "generate",
    "stream": "generate",
    "make_generators": "sampling",
    "sample": "sampling",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
