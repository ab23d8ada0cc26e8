"""The native kernels' thread pool (csrc/pool.h) and thread setting (native.threads).

Results must not depend on the thread count (every item is computed whole by one thread),
LLMOS_NUM_THREADS must decide how many threads run, and the library must bring no OpenMP
runtime of its own into the process beside torch's.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from llmos_jupyter.errors import ConfigError
from llmos_jupyter.formats.gguf import read_gguf
from llmos_jupyter.model import native
from llmos_jupyter.model.ggml_linear import GGMLLinear
from llmos_jupyter.model.loading import build_model

pytestmark = pytest.mark.skipif(not native.available(), reason="no C++ compiler")

REPO = Path(__file__).resolve().parents[2]
THREAD_COUNTS = (1, 2, 3, 7)  # 7 threads on fewer cores: oversubscribed on purpose


def _mats(N: int = 1001, K: int = 576) -> dict[str, tuple[native.Mat, list]]:
    """One Mat per kind over an N x K weight (big enough that the products go parallel),
    with the objects that own its memory."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((N, K)).astype(np.float32)
    bias = torch.from_numpy(rng.standard_normal(N).astype(np.float32))
    dense = torch.from_numpy(w)
    out = {"F32": (native.mat("F32", dense, bias=bias), [dense, bias])}
    for kind in ("Q4_0", "Q4_1", "Q8_0"):
        layer = GGMLLinear(kind, quantize(w, GGMLQuantizationType[kind]), (N, K), bias)
        out[kind] = (layer.mat(), [layer])
    return out


def test_threads_follow_env_then_torch(monkeypatch):
    monkeypatch.delenv(native.THREADS_ENV, raising=False)
    assert native.threads() == torch.get_num_threads()
    monkeypatch.setenv(native.THREADS_ENV, "5")
    assert native.threads() == 5
    monkeypatch.setenv(native.THREADS_ENV, "")
    assert native.threads() == torch.get_num_threads()


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_thread_setting_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(native.THREADS_ENV, value)
    with pytest.raises(ConfigError, match=f"LLMOS_NUM_THREADS='{value}'.*positive integer"):
        native.threads()


def test_products_identical_for_every_thread_count(monkeypatch):
    mats = _mats()
    xs = {M: torch.randn(M, 576, generator=torch.Generator().manual_seed(M)) for M in (1, 5, 13)}
    want = {}
    for threads in THREAD_COUNTS:
        monkeypatch.setenv(native.THREADS_ENV, str(threads))
        for kind, (A, _) in mats.items():
            got = {M: native.gemv(A, x) for M, x in xs.items()}
            if kind != "F32":
                got["dequantized"] = native.dequantize(A)
            for key, y in got.items():
                ref = want.setdefault((kind, key), y)
                assert torch.equal(y, ref), f"{kind} {key}: {threads} threads differ from 1"


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    return read_gguf(smollm2_gguf)


@pytest.mark.parametrize("dtype", ["auto", "float32"])
def test_fused_decode_identical_for_every_thread_count(smollm2, monkeypatch, dtype):
    # The real default model, 3 rows at different positions (batch kernels, attention
    # loops): logits bit for bit the same whatever the thread count.
    model = build_model(smollm2, dtype=dtype)
    prompts = torch.tensor([[1, 4093, 28, 253, 9, 77, 5, 1033],
                            [1, 506, 3117, 314, 2, 2, 2, 2],
                            [1, 23, 99, 2, 2, 2, 2, 2]])
    lengths = torch.tensor([8, 4, 3])
    want = None
    for threads in THREAD_COUNTS:
        monkeypatch.setenv(native.THREADS_ENV, str(threads))
        model.setup_caches(3, 16)
        tok, pos = model.prefill(prompts, lengths).argmax(-1), lengths.clone()
        steps = []
        for _ in range(4):
            logits = model.decode_step(tok, pos)
            steps.append(logits)
            tok, pos = logits.argmax(-1), pos + 1
        assert model._fused_decoder(3) is not None, "the fused native step must run"
        got = torch.stack(steps)
        if want is None:
            want = got
        assert torch.equal(got, want), f"{dtype}: {threads} threads differ from 1"


def test_concurrent_callers_each_get_their_own_result(monkeypatch):
    # ctypes releases the GIL, so two Python threads can be inside the kernels at once:
    # one drives the pool, the other computes on its own thread; both results exact.
    monkeypatch.setenv(native.THREADS_ENV, "2")
    mats = _mats()
    A = mats["Q4_1"][0]
    xs = [torch.randn(m % 3 + 1, 576) for m in range(8)]
    want = [native.gemv(A, x) for x in xs]
    errors: list[str] = []

    def worker() -> None:
        for _ in range(10):
            for x, w in zip(xs, want, strict=True):
                if not torch.equal(native.gemv(A, x), w):
                    errors.append("mismatch")

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a kernel call hung"
    assert not errors


def test_many_loops_of_changing_sizes_neither_hang_nor_differ(monkeypatch):
    # Loops of different sizes back to back, threads oversubscribed so they are preempted
    # at random points: a worker that read the last loop's state while the next loop's
    # larger size was being published once claimed past the last loop's end and left the
    # caller waiting forever (1 run in 3 of 40000 calls hung before the fix).
    monkeypatch.setenv(native.THREADS_ENV, "7")
    weights = [torch.randn(n, 64) for n in (600, 4800, 1200, 9600)]
    mats = [native.mat("F32", w) for w in weights]
    x = torch.randn(1, 64)
    want = [native.gemv(A, x) for A in mats]
    bad: list[int] = []

    def calls() -> None:
        for i in range(20000):
            if not torch.equal(native.gemv(mats[i % 4], x), want[i % 4]):
                bad.append(i)

    t = threading.Thread(target=calls, daemon=True)  # daemon: a hang must not block exit
    t.start()
    t.join(timeout=300)
    assert not t.is_alive(), "a kernel call hung"
    assert not bad


def _child_gemv(w, bias, x, want, q) -> None:
    A = native.mat("F32", w, bias=bias)
    q.put(torch.equal(native.gemv(A, x), want))


def test_forked_child_computes_with_its_own_pool(monkeypatch):
    # The parent's workers do not exist in a forked child (DataLoader workers, servers
    # that fork): the child must still compute, and not wait for them.
    monkeypatch.setenv(native.THREADS_ENV, "3")
    w, b, x = torch.randn(1001, 576), torch.randn(1001), torch.randn(2, 576)
    want = native.gemv(native.mat("F32", w, bias=b), x)  # the parent's pool is running
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_gemv, args=(w, b, x, want, q))
    p.start()
    p.join(timeout=120)
    if p.is_alive():
        p.kill()
        pytest.fail("the forked child's kernel call hung")
    assert p.exitcode == 0 and q.get(timeout=10)


def _threads_started_by_one_gemv(setting: str | None, torch_threads: int | None) -> int:
    """Threads a fresh Python process gains from one native.gemv call, with
    LLMOS_NUM_THREADS=setting (None: unset) and torch.set_num_threads(torch_threads)."""
    code = textwrap.dedent(f"""
        import os, torch
        from llmos_jupyter.model import native
        if {torch_threads!r}:
            torch.set_num_threads({torch_threads!r})
        native.lib()
        w, x = torch.ones(1001, 576), torch.ones(1, 576)
        A = native.mat("F32", w)
        before = len(os.listdir("/proc/self/task"))
        native.gemv(A, x)
        print(len(os.listdir("/proc/self/task")) - before)
    """)
    env = {k: v for k, v in os.environ.items() if k != native.THREADS_ENV}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{REPO / 'kernels'}"
    if setting is not None:
        env[native.THREADS_ENV] = setting
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_thread_count_is_honoured():
    # The pool starts threads - 1 workers (the caller is the first thread).
    assert _threads_started_by_one_gemv("5", None) == 4
    assert _threads_started_by_one_gemv("1", 4) == 0
    assert _threads_started_by_one_gemv(None, 3) == 2  # unset: torch's setting


@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_library_links_no_openmp_runtime():
    # torch brings its own OpenMP runtime; a second one (the system libgomp) in the same
    # process is what the pool replaced.
    deps = subprocess.run(["ldd", str(native.build())], capture_output=True, text=True,
                          check=True).stdout
    assert "libstdc++" in deps  # the listing is real
    for runtime in ("libgomp", "libomp", "libiomp"):
        assert runtime not in deps, deps
