"""core floor of LLMOS: the types several floors share, so no import has to run upward.

    ModelConfig       core/config.py          every shape and switch of our Transformer
    Checkpoint        core/checkpoint.py      a model read from any format (+ QuantizedTensor)
    TokenizerSpec     core/tokenizer_spec.py  a byte-level BPE tokenizer as data, and the
                                              pre-tokenizer families' split regexes
    GenerationParams  core/params.py          the sampling settings, with their help and
                                              ranges: every interface offers them from here

formats/ fills these, model/ builds a Transformer from them, tokenizer.py builds an
encoder from a TokenizerSpec. Imports: only `llmos_jupyter.errors` of ours (core/ is the
bottom floor); numpy and torch for tensors in checkpoint.py.
"""
