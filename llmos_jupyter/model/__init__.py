"""model floor of LLMOS: our one decoder-only Transformer and what runs under it.

    transformer.py     Transformer (Llama family and GPT-2 from one ModelConfig): forward,
                       prefill, decode on a KV cache
    norms.py, rope.py, kv_cache.py   its parts
    backend.py         the kernel backend switch: which implementation computes attention,
                       RMSNorm and cross-entropy (torch: backend_torch.py, Triton kernels:
                       backend_triton.py)
    loading.py         a Checkpoint -> a Transformer in a weight mode (float32, bfloat16,
                       int8/int4, GGML blocks); quant.py, ggml_linear.py hold those layers
    native.py, fused_decode.py, csrc/   the native C++ CPU kernels and the fused decode step

Imports: `llmos_jupyter.core` and `llmos_jupyter.errors` of ours, torch, and
`llmos_kernels` (only when the triton backend runs).
"""
