"""Build and load LLMOS's native CPU kernels (csrc/llmos_native.cpp) with ctypes.

The kernels are plain C++ with no torch headers, so `g++ -O3 -march=native -pthread`
builds them in ~1-2 s (torch's cpp_extension took 1-1.5 min, an unacceptable first-load
delay). The library is cached under ~/.cache/llmos/kernels/<hash>/ where the hash covers
the sources, the flags, the compiler and the CPU's feature flags, so a changed source or
a different machine never loads a stale build; it is written to a temporary name and
renamed, so concurrent builders never see a half-written file.

Threads: the kernels run on their own small pool (csrc/pool.h), not OpenMP, whose
spinning barriers made decode collapse when other processes kept the cores busy; so the
library links no OpenMP runtime beside torch's. `threads()` says how many a call may use.

The training pass's elementwise kernels (csrc/llmos_train.cpp, `train_lib()`) are a second
library, built with OpenMP: they run between torch's matmuls, on torch's own OpenMP threads
(they share the libgomp torch loaded), where a second set of threads would fight torch's
spinning ones for the cores.

Callers pass raw pointers (`tensor.data_ptr()`); a ctypes call costs ~1-2 us, fine for
the one call per decode step of the fused path. `build()` warms the cache (`make install`
runs it); `available()` says whether the kernels work here (no compiler: the callers fall
back to torch in float32, with a logged warning).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from llmos_jupyter.errors import ConfigError

log = logging.getLogger(__name__)

CSRC = Path(__file__).with_name("csrc")
SOURCES = ("llmos_native.cpp", "llmos_train.cpp", "gemv.h", "attention.h", "vmath.h",
           "pool.h", "rows.h", "training.h", "train_attention.h")
# -ffp-contract=off: no FMAs the source did not ask for, so RMSNorm / RoPE round like
# torch's separate ops (the GEMV kernels use explicit FMAs where they are exact).
# -std=c++20: pool.h's sleeping waits off Linux (std::atomic::wait); Linux uses futexes.
FLAGS = ("-O3", "-march=native", "-std=c++20", "-pthread", "-ffp-contract=off", "-shared",
         "-fPIC")
ABI_VERSION = 3
# The training kernels (csrc/llmos_train.cpp) are a library of their own: they use
# OpenMP, which shares torch's threads (see there), and the inference library stays free
# of it (pool.h says why).
# Contracting a * b + c into FMAs is allowed there (the attention tiles rely on it):
# nothing in training has to round like a separate torch op.
TRAIN_FLAGS = (*(f for f in FLAGS if f != "-ffp-contract=off"), "-ffp-contract=fast",
               "-fopenmp")
TRAIN_ABI_VERSION = 2
KINDS = {"F32": 0, "Q4_0": 1, "Q4_1": 2, "Q8_0": 3}


class Mat(ctypes.Structure):
    """One weight matrix [N, K] for the kernels (gemv.h's struct Mat)."""

    _fields_ = [("kind", ctypes.c_int32), ("N", ctypes.c_int32), ("K", ctypes.c_int32),
                ("pad", ctypes.c_int32), ("w", ctypes.c_void_p), ("d", ctypes.c_void_p),
                ("m", ctypes.c_void_p), ("bias", ctypes.c_void_p), ("pq", ctypes.c_void_p),
                ("pd", ctypes.c_void_p), ("pm", ctypes.c_void_p)]


PANEL = 16  # weight rows per packed panel (gemv.h)


def pack(kind: str, w: torch.Tensor, d: torch.Tensor,
         m: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """Quantized weights (as `mat` takes them) repacked as the kernels' panels: 16 rows side
    by side per column k, so a column's 16 weights are one vector load (gemv.h's Mat says
    the layout). Returns (pq, pd, pm) — pm None unless Q4_1 — about the weight's own size
    again; rows past N are zero."""
    N = w.shape[0]
    P = -(-N // PANEL)
    G = d.shape[1]

    def panels(t: torch.Tensor) -> torch.Tensor:  # [N, G, ...] -> [P, G, ..., 16]
        t = torch.cat([t, t.new_zeros((P * PANEL - N, *t.shape[1:]))])
        t = t.view(P, PANEL, *t.shape[1:])
        return t.permute(0, *range(2, t.dim()), 1).contiguous()

    if kind == "Q8_0":
        pq = panels(w.view(N, G, 32))  # [P, G, 32, 16]
    else:
        q = panels(torch.cat([w & 15, w >> 4], dim=-1))  # [P, G, 32, 16] nibbles
        pq = (q[..., :8] | (q[..., 8:] << 4)).contiguous()  # [P, G, 32, 8]
    return pq, panels(d), None if m is None else panels(m)


def mat(kind: str, w: torch.Tensor, d: torch.Tensor | None = None,
        m: torch.Tensor | None = None, bias: torch.Tensor | None = None,
        panels: tuple[torch.Tensor, ...] | None = None) -> Mat:
    """A Mat over contiguous CPU tensors: w float32 [N, K] (kind "F32"), uint8 [N, K/32, 16]
    (Q4_0 / Q4_1) or int8 [N, K] (Q8_0); d, m float32 [N, K/32]; bias float32 [N];
    `panels`, quantized kinds only, `pack`'s result for them (packed here when None).
    The Mat holds the panels it packed; the caller keeps every other tensor alive as long
    as the Mat is used."""
    N = w.shape[0]
    K = w.shape[1] if kind in ("F32", "Q8_0") else w.shape[1] * 32
    for t in (w, d, m, bias):
        if t is not None and not (t.is_contiguous() and t.device.type == "cpu"):
            raise ValueError("native kernels need contiguous CPU tensors")
    if kind != "F32" and panels is None:
        panels = pack(kind, w, d, m)
    pq, pd, pm = panels or (None, None, None)
    ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
    A = Mat(KINDS[kind], N, K, 0, ptr(w), ptr(d), ptr(m), ptr(bias), ptr(pq), ptr(pd), ptr(pm))
    A.panels = panels  # kept alive with the Mat
    return A


def cache_dir() -> Path:
    """Where built kernels live: $LLMOS_KERNEL_CACHE, else $XDG_CACHE_HOME/llmos/kernels."""
    if os.environ.get("LLMOS_KERNEL_CACHE"):
        return Path(os.environ["LLMOS_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmos" / "kernels"


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise RuntimeError("no C++ compiler found (install g++ or set CXX)")
    return cxx


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


def _library_path(cxx: str, name: str = "llmos_native") -> Path:
    h = hashlib.sha256()
    for source in SOURCES:
        h.update((CSRC / source).read_bytes())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h.update(" ".join(_flags(name)).encode() + version.encode() + _cpu_flags().encode())
    return cache_dir() / h.hexdigest()[:16] / f"lib{name}.so"


def _flags(name: str) -> tuple[str, ...]:
    return TRAIN_FLAGS if name == "llmos_train" else FLAGS


def build(name: str = "llmos_native") -> Path:
    """Compile csrc/<name>.cpp (llmos_native, or llmos_train with TRAIN_FLAGS) into the
    cache (no-op when already there); return the library.

    Raises RuntimeError (with the compiler's message) when there is no compiler or the
    build fails. `make install` calls this so the first model load does not wait for it.
    """
    cxx = _compiler()
    lib = _library_path(cxx, name)
    if lib.exists():
        return lib
    compile_library(lib, _flags(name), f"{name}.cpp")
    log.info("built native kernels into %s", lib)
    return lib


def compile_library(out: Path, flags: tuple[str, ...],
                    source: str = "llmos_native.cpp") -> None:
    """Compile csrc/<source> with `flags` into `out`, atomically (readers see no file or
    the whole file). Raises RuntimeError with the compiler's message on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        cmd = [_compiler(), *flags, "-o", tmp, str(CSRC / source)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building {CSRC / source} failed:\n{done.stderr}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def lib() -> ctypes.CDLL:
    """The loaded kernel library (built on first use); raises RuntimeError if it cannot be."""
    so = ctypes.CDLL(str(build()))
    if so.llmos_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{so._name}: ABI {so.llmos_abi_version()}, expected {ABI_VERSION}")
    P, Int, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    so.llmos_gemv.argtypes = [ctypes.POINTER(Mat), P, Int, P, Int]
    so.llmos_dequantize.argtypes = [ctypes.POINTER(Mat), P, Int]
    so.llmos_rms_norm.argtypes = [P, P, Int, Int, F, P]
    so.llmos_decode_scratch.argtypes = [P, Int]
    so.llmos_decode_scratch.restype = ctypes.c_int64
    so.llmos_decode_step.argtypes = [P, Int, P, P, P, P, Int]
    so.llmos_decode_step.restype = ctypes.c_int
    so.llmos_forward_tokens.argtypes = [P, Int, P, P, P, Int, P, Int, P, P, Int]
    so.llmos_forward_tokens.restype = ctypes.c_int
    for f in (so.llmos_gemv, so.llmos_dequantize, so.llmos_rms_norm):
        f.restype = None
    return so


@functools.cache
def available() -> bool:
    """Whether the native kernels build and load here (needs a C++ compiler)."""
    try:
        lib()
        return True
    except Exception as e:  # no compiler, failed build: callers fall back to torch
        log.warning("native CPU kernels unavailable (%s); using torch float32 paths", e)
        return False


@functools.cache
def train_lib() -> ctypes.CDLL | None:
    """The training kernels (csrc/llmos_train.cpp), built on first use; None, with a logged
    warning, when they cannot be built or loaded here (training then runs torch's ops)."""
    try:  # torch (imported above) has loaded its libgomp: the library binds to that one
        return load_train_library(build("llmos_train"))
    except Exception as e:  # no compiler or no OpenMP: callers run torch's ops
        log.warning("native training kernels unavailable (%s); using torch's ops", e)
        return None


def load_train_library(path: Path) -> ctypes.CDLL:
    """A build of csrc/llmos_train.cpp, loaded, its functions typed. Raises OSError when it
    cannot load and RuntimeError for a build of another ABI version."""
    so = ctypes.CDLL(str(path))
    if so.llmos_train_abi_version() != TRAIN_ABI_VERSION:
        raise RuntimeError(f"{so._name}: ABI {so.llmos_train_abi_version()}, expected "
                           f"{TRAIN_ABI_VERSION}")
    P, Int, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    so.llmos_rms_norm_train.argtypes = [P, P, Int, Int, F, P, P, Int]
    so.llmos_rms_norm_backward.argtypes = [P, P, P, P, P, Int, Int, P, Int]
    so.llmos_add_rms_norm.argtypes = [P, P, P, Int, Int, F, P, P, P, Int]
    so.llmos_swiglu.argtypes = [P, Int, Int, P, Int]
    so.llmos_swiglu_backward.argtypes = [P, P, Int, Int, P, P, Int]
    so.llmos_online_softmax.argtypes = [P, Int, Int, P, P, P, Int]
    shape = [Int, Int, Int, Int, Int, F]  # B, T, Hq, Hkv, D, scale
    so.llmos_attention_train.argtypes = [P, P, P, *shape, P, P, P, P, Int]
    so.llmos_attention_train_backward.argtypes = [P, P, P, *shape, P, P, P, P, P, P, Int]
    for f in (so.llmos_rms_norm_train, so.llmos_rms_norm_backward, so.llmos_add_rms_norm,
              so.llmos_swiglu, so.llmos_swiglu_backward, so.llmos_online_softmax,
              so.llmos_attention_train, so.llmos_attention_train_backward):
        f.restype = None
    return so


THREADS_ENV = "LLMOS_NUM_THREADS"


def threads() -> int:
    """Threads a kernel call may use (the caller's included): $LLMOS_NUM_THREADS when set,
    else torch's setting, so `torch.set_num_threads` governs both.

    Raises ConfigError when LLMOS_NUM_THREADS is not a positive integer.
    """
    value = os.environ.get(THREADS_ENV)
    if value is None or not value.strip():
        return torch.get_num_threads()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{THREADS_ENV}={value!r} is not a positive integer; set it to the "
                          f"number of threads the native kernels may use (e.g. 2), or unset it "
                          f"to follow torch.get_num_threads()")
    return n


def gemv(A: Mat, x: torch.Tensor) -> torch.Tensor:
    """y [M, N] = x [M, K] W^T (+ bias) for contiguous float32 x."""
    y = torch.empty(x.shape[0], A.N, dtype=torch.float32)
    lib().llmos_gemv(ctypes.byref(A), x.data_ptr(), x.shape[0], y.data_ptr(), threads())
    return y


def dequantize(A: Mat) -> torch.Tensor:
    """The float32 weight [N, K] of A's blocks (bit for bit gguf's numpy dequantizer)."""
    w = torch.empty(A.N, A.K, dtype=torch.float32)
    lib().llmos_dequantize(ctypes.byref(A), w.data_ptr(), threads())
    return w


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of contiguous float32 x [..., K] with float32 weight [K]."""
    y = torch.empty_like(x)
    K = x.shape[-1]
    lib().llmos_rms_norm(x.data_ptr(), weight.data_ptr(), x.numel() // K, K, eps, y.data_ptr())
    return y
