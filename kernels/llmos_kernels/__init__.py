"""LLMOS kernels: Triton attention, decode attention, softmax, cross-entropy and RMSNorm.

Each kernel module holds a torch reference (`*_reference`) beside the Triton kernels,
launcher, autograd Function and public function. Needs only torch and triton. Kernels
run compiled on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 was set before
triton was imported; `available()` says whether either holds.
"""

from llmos_kernels._runtime import available, interpreting
from llmos_kernels.attention import attention, attention_reference
from llmos_kernels.cross_entropy import cross_entropy, cross_entropy_reference
from llmos_kernels.decode_attention import decode_attention, decode_attention_reference
from llmos_kernels.rms_norm import rms_norm, rms_norm_reference
from llmos_kernels.softmax import softmax, softmax_reference

__all__ = [
    "attention",
    "attention_reference",
    "available",
    "cross_entropy",
    "cross_entropy_reference",
    "decode_attention",
    "decode_attention_reference",
    "interpreting",
    "rms_norm",
    "rms_norm_reference",
    "softmax",
    "softmax_reference",
]
