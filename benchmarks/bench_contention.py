"""Batch-1 decode speed while other processes keep cores busy: does it degrade, or collapse?

Users run us beside a browser, a build, a second notebook. This measures greedy decode
tokens/s of the default model (SmolLM2-135M-Instruct) with 0, 1 and 2 other processes
each keeping one core busy (`while True: pass`, spawned here, bounded in time and always
killed at the end), for
  ours dtype="auto" and dtype="float32" (loaded through the public API, `llmos.load`, from
  a temporary LLMOS_HOME holding the default model pulled from the cached GGUF), and
  llama.cpp on the same GGUF where `llama-cpp-python` is importable (else a note),
and prints them side by side with the fraction of the quiet speed each keeps. With
2 busy processes on 2 cores our process's fair share is a third of the machine; the
target is to keep at least 25% of the quiet speed.

The levels are measured in rounds (0, 1, 2 busy, then again) and each figure is the
median over rounds, so drift on a shared machine spreads over all columns alike.

    PYTHONPATH=.:kernels .venv/bin/python benchmarks/bench_contention.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("LLMOS_TEST_CACHE", REPO / ".cache"))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = (
    "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
# Each busy process ends by itself after this long even if this script is killed hard.
BUSY_LIFETIME_S = 900
BUSY_CODE = f"import time\nend = time.time() + {BUSY_LIFETIME_S}\nwhile time.time() < end: pass"


def start_busy(n: int) -> list[subprocess.Popen]:
    """n processes that each keep one core busy until stopped (or BUSY_LIFETIME_S)."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_CODE]) for _ in range(n)]
    time.sleep(0.5)  # let them start spinning before anything is timed
    return procs


def stop_busy(procs: list[subprocess.Popen]) -> None:
    """Kill the busy processes and reap them."""
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def ours_decoder(model: torch.nn.Module, prompt: list[int]) -> Callable[[int, float], float]:
    """A function (n, max_s) -> greedy decode tok/s of up to n tokens after `prompt`,
    stopping early after max_s seconds (a collapsed decoder must not stall the script)."""

    @torch.inference_mode()
    def decode(n: int, max_s: float) -> float:
        model.setup_caches(1, len(prompt) + n + 1)
        logits = model.prefill(torch.tensor([prompt]), torch.tensor([len(prompt)]))
        tok, pos = logits.argmax(-1), torch.tensor([len(prompt)])
        t0 = time.perf_counter()
        done = 0
        while done < n and time.perf_counter() - t0 < max_s:
            tok = model.decode_step(tok, pos).argmax(-1)
            pos += 1
            done += 1
        return done / (time.perf_counter() - t0)

    return decode


def llama_cpp_decoder(path: Path, prompt: list[int],
                      threads: int) -> Callable[[int, float], float] | None:
    """The same measurement with llama-cpp-python, or None when it is not importable."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(path), n_threads=threads, n_ctx=1024, verbose=False)

    def decode(n: int, max_s: float) -> float:
        llm.reset()
        llm.eval(prompt)
        t0 = time.perf_counter()
        done = 0
        while done < n and time.perf_counter() - t0 < max_s:
            llm.eval([llm.sample(temp=0.0)])
            done += 1
        return done / (time.perf_counter() - t0)

    return decode


def prepare_home(gguf: Path) -> Path:
    """A temporary LLMOS_HOME whose pull of the default model finds `gguf` already fetched
    (the pull itself runs for real: checksum, conversion, catalog row)."""
    home = Path(tempfile.mkdtemp(prefix="llmos-bench-contention-"))
    os.environ["LLMOS_HOME"] = str(home)
    from llmos_jupyter.runtime.services import services
    from llmos_jupyter.store.sources import DEFAULT_MODEL

    dest = services().models.download_path(DEFAULT_MODEL)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gguf, dest)
    return home


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64, help="greedy tokens per measurement")
    ap.add_argument("--max-seconds", type=float, default=15.0,
                    help="cap on one measurement (a collapsed decoder stops early)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over the busy levels")
    ap.add_argument("--busy", default="0,1,2", help="busy-process counts to measure")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (our kernels follow it); llama.cpp gets the "
                         "same count")
    ap.add_argument("--gguf", type=Path, default=CACHE / "models" / GGUF_NAME)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    levels = [int(b) for b in args.busy.split(",")]

    home = prepare_home(args.gguf)
    try:
        import llmos
        from llmos_jupyter.model import native
        from llmos_jupyter.store.sources import DEFAULT_MODEL

        llmos.pull(DEFAULT_MODEL, progress=False)
        runs: dict[str, Callable[[int, float], float]] = {}
        for dtype in ("auto", "float32"):
            loaded = llmos.load(device="cpu", dtype=dtype)
            prompt = loaded.tokenizer.encode(PROMPT)
            runs[f"ours {dtype} ({loaded.mode})"] = ours_decoder(loaded.model, prompt)
        lc = llama_cpp_decoder(args.gguf, prompt, threads)
        if lc is not None:
            runs["llama.cpp"] = lc
        print(f"threads: {threads} (native kernels: {native.threads()}), cores: "
              f"{os.cpu_count()}, tokens per measurement: {args.tokens}, rounds: {args.rounds}, "
              f"load average before: {os.getloadavg()[0]:.1f}")
        if lc is None:
            print("llama.cpp: llama-cpp-python is not importable here; its column is skipped")
        for decode in runs.values():
            decode(8, args.max_seconds)  # warm up: kernel build, thread pools, allocations

        speeds: dict[str, dict[int, list[float]]] = {r: {b: [] for b in levels} for r in runs}
        for rnd in range(args.rounds):
            for b in levels:
                procs = start_busy(b)
                try:
                    for name, decode in runs.items():
                        tps = decode(args.tokens, args.max_seconds)
                        speeds[name][b].append(tps)
                        print(f"round {rnd + 1}, {b} busy: {name:28s} {tps:7.1f} tok/s   "
                              f"(load average {os.getloadavg()[0]:.1f})", flush=True)
                finally:
                    stop_busy(procs)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    med = {r: {b: statistics.median(v) for b, v in per.items()} for r, per in speeds.items()}
    head = f"{'decode tok/s (median)':28s}" + "".join(f"{f'{b} busy':>18s}" for b in levels)
    print("\n" + head)
    for name, per in med.items():
        quiet = per.get(0)
        cells = []
        for b in levels:
            frac = f" ({per[b] / quiet:4.0%})" if quiet and b else ""
            cells.append(f"{per[b]:9.1f}{frac:>9s}")
        print(f"{name:28s}" + "".join(f"{c:>18s}" for c in cells))
    if 0 in levels and 2 in levels:
        for name, per in med.items():
            if name.startswith("ours"):
                frac = per[2] / per[0]
                print(f"{name}: keeps {frac:.0%} of its quiet speed with 2 busy processes "
                      f"(target >= 25%; fair share 33%): {'met' if frac >= 0.25 else 'NOT met'}")


if __name__ == "__main__":
    main()
