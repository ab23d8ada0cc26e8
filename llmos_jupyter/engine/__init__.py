"""engine layer of LLMOS: text generation (prefill, decode, sampling, streaming, batching).

Public API:
    GenerationParams   every knob of a request, with `validate()`
    generate           complete a batch of prompts (token ids) -> list[GenerationResult]
    stream             complete one prompt, yielding text pieces
    sample             pick next tokens from logits (penalty, temperature, top-k/p, min-p)

Also here: continuous.py (in-flight batching for a server), prompt_cache.py (a single
prompt continuing the cache the last one left: a chat's next turn), json_constraint.py
(JSON-constrained decoding), stops.py (stop strings), and training: loss.py, lora.py,
train_data.py, training.py.

GenerationParams lives on the core floor (every interface offers its settings without
importing torch); it is re-exported here for the engine's callers.

Imports: `llmos_jupyter.tokenizer`, `llmos_jupyter.core` and `llmos_jupyter.errors` of
ours, and torch; a model is used through its methods, never imported.
"""

from llmos_jupyter.core.params import GenerationParams
from llmos_jupyter.engine.generate import GenerationResult, generate, stream
from llmos_jupyter.engine.sampling import make_generators, sample

__all__ = [
    "GenerationParams",
    "GenerationResult",
    "generate",
    "make_generators",
    "sample",
    "stream",
]
