"""engine layer of LLMOS: text generation (prefill, decode, sampling, streaming, batching).

Public API:
    GenerationParams   every knob of a request, with `validate()`
    generate           complete a batch of prompts (token ids) -> list[GenerationResult]
    stream             complete one prompt, yielding text pieces
    sample             pick next tokens from logits (penalty, temperature, top-k/p, min-p)

Also here: continuous.py (in-flight batching for a server), json_constraint.py
(JSON-constrained decoding), stops.py (stop strings), and training: loss.py, lora.py,
train_data.py, training.py.

Names load on first use, so importing one engine module does not import torch for all
(GenerationParams itself lives on the core floor: every interface offers its settings).

Imports: `llmos_jupyter.tokenizer`, `llmos_jupyter.core` and `llmos_jupyter.errors` of
ours, and torch; a model is used through its methods, never imported.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "GenerationParams": "llmos_jupyter.core.params",
    "GenerationResult": "llmos_jupyter.engine.generate",
    "generate": "llmos_jupyter.engine.generate",
    "stream": "llmos_jupyter.engine.generate",
    "make_generators": "llmos_jupyter.engine.sampling",
    "sample": "llmos_jupyter.engine.sampling",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
