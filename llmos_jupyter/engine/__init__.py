"""engine layer of LLMOS: text generation (prefill, decode, sampling, streaming, batching).

Public API:
    GenerationParams   every knob of a request, with `validate()`
    generate           complete a batch of prompts (token ids) -> list[GenerationResult]
    stream             complete one prompt, yielding text pieces
    sample             pick next tokens from logits (penalty, temperature, top-k/p, min-p)
"""

from llmos_jupyter.engine.generate import GenerationResult, generate, stream
from llmos_jupyter.engine.params import GenerationParams
from llmos_jupyter.engine.sampling import make_generators, sample

__all__ = [
    "GenerationParams",
    "GenerationResult",
    "generate",
    "make_generators",
    "sample",
    "stream",
]
