"""The kernel library stands alone and says when it can run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import llmos_kernels

KERNELS_DIR = Path(__file__).resolve().parents[2] / "kernels"


def test_available_under_the_interpreter_or_cuda():
    assert llmos_kernels.available() is True


def test_public_api():
    for name in ("attention", "decode_attention", "softmax", "cross_entropy", "rms_norm"):
        assert callable(getattr(llmos_kernels, name))
        assert callable(getattr(llmos_kernels, f"{name}_reference"))


def test_imports_nothing_of_llmos_jupyter():
    code = (
        "import sys, llmos_kernels; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('llmos', 'llmos_jupyter')]; "
        "assert not bad, bad; print(llmos_kernels.available())"
    )
    env = {**os.environ, "PYTHONPATH": str(KERNELS_DIR), "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
