"""The one GPU script: compiled kernel tests (bf16 included), then every benchmark.

    python kernels/benchmarks/run_all.py --out "$OUT"

Writes gpu_tests.log and one CSV per kernel under the output dir ($OUT, or --out, or
kernels/benchmarks/results), and prints a summary with ratios against torch and the
design targets. Sized to finish in under 5 minutes on one H100/H200. Exits 2 with a
message when CUDA is absent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BENCHES = ("attention", "softmax", "decode", "cross_entropy")

# Targets to design for (ratio > 1 is faster than torch; memory is ours / torch).
TARGETS = {
    "attention fwd vs SDPA": 1.0,
    "attention fwd+bwd vs SDPA": 0.8,
    "softmax fraction of copy bandwidth": 0.8,
    "decode vs SDPA": 1.0,
    "cross_entropy speed vs torch": 1.0,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="output dir for CSVs and logs (default: $OUT or "
                        "kernels/benchmarks/results)")
    p.add_argument("--skip-tests", action="store_true", help="skip pytest -m gpu")
    p.add_argument("--only", choices=BENCHES, action="append",
                   help="run only these benchmarks (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help="smallest shapes only (a smoke run of the script itself)")
    p.add_argument("--test-timeout", type=int, default=170,
                   help="seconds allowed for the GPU tests (default 170)")
    return p.parse_args(argv)


def _run_gpu_tests(out: Path, timeout: int) -> str:
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    cmd = [sys.executable, "-m", "pytest", "tests/kernels", "-m", "gpu", "-q", "-p",
           "no:cacheprovider"]
    log = out / "gpu_tests.log"
    try:
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=timeout)
        log.write_text(res.stdout + res.stderr)
        tail = (res.stdout.strip().splitlines() or ["(no output)"])[-1]
        return f"{'PASS' if res.returncode == 0 else 'FAIL'}: {tail}"
    except subprocess.TimeoutExpired as e:
        log.write_text(str(e.stdout or "") + str(e.stderr or ""))
        return f"TIMEOUT after {timeout}s (see {log})"


def _summary(results: dict[str, list[dict]]) -> list[str]:
    lines = []

    def worst(rows, key):
        return min((r[key] for r in rows), default=float("nan"))

    if rows := results.get("attention"):
        lines.append(f"attention fwd vs SDPA: worst x{worst(rows, 'fwd_ratio'):.2f} "
                     f"(target >= {TARGETS['attention fwd vs SDPA']})")
        lines.append(f"attention fwd+bwd vs SDPA: worst x{worst(rows, 'fwdbwd_ratio'):.2f} "
                     f"(target >= {TARGETS['attention fwd+bwd vs SDPA']})")
    if rows := results.get("softmax"):
        lines.append(f"softmax fraction of copy bandwidth: worst "
                     f"{worst(rows, 'fraction_of_copy'):.0%} (target >= 80%); vs torch worst "
                     f"x{worst(rows, 'ratio'):.2f}")
    if rows := results.get("decode"):
        lines.append(f"decode vs SDPA: worst x{worst(rows, 'ratio'):.2f} (target >= 1.0)")
    if rows := results.get("cross_entropy"):
        mem = max(r["memory_ratio"] for r in rows)
        lines.append(f"cross_entropy speed vs torch: worst x{worst(rows, 'speed_ratio'):.2f} "
                     f"(target >= 1.0); peak memory {mem:.2f} of torch (target <= 0.33)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    if not torch.cuda.is_available():
        print("run_all: CUDA is not available on this machine; the GPU tests and benchmarks "
              "need an NVIDIA GPU. (CPU checks: TRITON_INTERPRET=1 pytest tests/kernels)",
              file=sys.stderr)
        return 2
    # Compiled kernels: must be decided before llmos_kernels (and its @triton.jit) loads.
    os.environ["TRITON_INTERPRET"] = "0"
    sys.path[:0] = [str(REPO / "kernels"), str(HERE)]

    out = args.out or Path(os.environ.get("OUT") or HERE / "results")
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}", flush=True)

    test_status = "skipped"
    if not args.skip_tests:
        print("GPU tests (pytest tests/kernels -m gpu) ...", flush=True)
        test_status = _run_gpu_tests(out, args.test_timeout)
        print(f"  {test_status}  [{time.time() - start:.0f}s]", flush=True)

    import bench_attention
    import bench_cross_entropy
    import bench_decode
    import bench_softmax
    from measure import write_csv

    plans = {
        "attention": lambda: bench_attention.run(
            seq_lens=(1024,) if args.quick else bench_attention.SEQ_LENS,
            head_dims=(64,) if args.quick else bench_attention.HEAD_DIMS),
        "softmax": lambda: bench_softmax.run(
            shapes=bench_softmax.SHAPES[:1] if args.quick else bench_softmax.SHAPES),
        "decode": lambda: bench_decode.run(head_dims=(64,) if args.quick else (64, 128)),
        "cross_entropy": lambda: bench_cross_entropy.run(
            n_tokens=(1024,) if args.quick else (4096, 8192)),
    }
    results: dict[str, list[dict]] = {}
    for name in args.only or BENCHES:
        print(f"benchmark {name} ...", flush=True)
        try:
            results[name] = plans[name]()
            write_csv(results[name], out / f"{name}.csv")
        except Exception as e:  # one broken benchmark must not hide the others' numbers
            print(f"  {name} FAILED: {type(e).__name__}: {e}", flush=True)
        torch.cuda.empty_cache()
        print(f"  [{time.time() - start:.0f}s]", flush=True)

    lines = [f"GPU tests: {test_status}", *_summary(results),
             f"total time {time.time() - start:.0f}s; CSVs in {out}"]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n== summary ==\n" + "\n".join(lines))
    return 0 if test_status.startswith(("PASS", "skipped")) and results else 1


if __name__ == "__main__":
    sys.exit(main())
