"""Run the kernel tests in Triton's CPU interpreter unless a GPU run asks otherwise.

Triton picks interpreter-or-compiler when a `@triton.jit` decorator runs, so the
variable must be set before `llmos_kernels` (or anything defining Triton kernels) is
imported. This conftest is imported before any test module of this package, which is
early enough as long as no earlier-collected package imported llmos_kernels; if one did
and no GPU is present, every test here skips with the reason instead of failing.
On a GPU machine, `TRITON_INTERPRET=0 pytest tests/kernels -m gpu` runs compiled.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# `llmos_kernels` lives in kernels/; make it importable without an install.
_KERNELS_DIR = str(Path(__file__).resolve().parents[2] / "kernels")
if _KERNELS_DIR not in sys.path:
    sys.path.insert(0, _KERNELS_DIR)

import llmos_kernels  # noqa: E402

INTERPRETED = llmos_kernels.interpreting()
HAS_CUDA = torch.cuda.is_available()


def kernel_device() -> str:
    """Where the non-GPU tests put their tensors: CPU under the interpreter, else CUDA."""
    return "cpu" if INTERPRETED else "cuda"


@pytest.fixture(autouse=True)
def _skip_when_kernels_cannot_run(request):
    gpu_test = request.node.get_closest_marker("gpu") is not None
    if gpu_test:
        if not HAS_CUDA:
            pytest.skip("needs CUDA")
        if INTERPRETED:
            pytest.skip("GPU tests run compiled; set TRITON_INTERPRET=0 to run them")
    elif not INTERPRETED and not HAS_CUDA:
        pytest.skip(
            "llmos_kernels' kernels were built compiled (TRITON_INTERPRET was not 1 when it "
            "was first imported, e.g. by an earlier test package) and there is no CUDA: "
            "they can run nowhere in this process; run tests/kernels on its own"
        )
