"""The one GPU script: compiled kernel tests (bf16 included), training on CUDA, then
every benchmark.

    python kernels/benchmarks/run_all.py --out "$OUT"

Runs, most telling first: the whole Transformer on the triton backend against sdpa and
the training loop's GPU tests (bf16 autocast, Triton attention and cross-entropy); the
kernels' GPU tests, compiled (bf16, float16, float32); benchmarks/bench_train.py on CUDA
against transformers + peft (SmolLM2-135M's shapes; random weights where the GGUF is not
at hand); then the kernel benchmarks. Writes gpu_tests.log, train.txt and one CSV per
kernel under the output dir ($OUT, or --out, or kernels/benchmarks/results), and prints a
summary with ratios against torch and the design targets. On one H200 (2026-11-30) the
parts took: model and training tests ~40 s, other kernel tests ~30 s, attention tests over
110 s (autotuning compiles each config per shape), bench_train ~125 s, benchmarks ~75 s:
about 6-7 minutes. Exits 2 with a message when CUDA is absent.

On a GPU machine without PyPI, run it with the python that holds CUDA torch, triton,
transformers and peft: `python3 kernels/benchmarks/run_all.py --out "$OUT"`.
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
# pytest runs, each with its share of --test-timeout: the model on CUDA (whole Transformer
# on the triton backend, the training loop under bf16 autocast), then the kernels' GPU
# tests; attention's last, its autotuning compiles a dozen configs per shape.
TEST_RUNS = (
    (["tests/kernels/test_transformer_backend.py", "tests/engine/test_training.py", "-m",
      "gpu or not slow", "-k", "bfloat16 or cuda or equal"], 0.2),
    (["tests/kernels", "-m", "gpu", "-k", "not test_attention"], 0.2),
    (["tests/kernels/test_attention.py", "-m", "gpu"], 0.6),
)

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
    p.add_argument("--skip-tests", action="store_true", help="skip the GPU tests")
    p.add_argument("--skip-train", action="store_true", help="skip bench_train on CUDA")
    p.add_argument("--skip-benchmarks", action="store_true", help="skip the kernel benchmarks")
    p.add_argument("--only", choices=BENCHES, action="append",
                   help="run only these benchmarks (repeatable)")
    p.add_argument("--quick", action="store_true",
                   help="smallest shapes only (a smoke run of the script itself)")
    p.add_argument("--test-timeout", type=int, default=300,
                   help="seconds allowed for the GPU tests (default 300)")
    return p.parse_args(argv)


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(REPO / "kernels"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": path}


def _run_gpu_tests(out: Path, timeout: int) -> str:
    log = out / "gpu_tests.log"
    statuses, text = [], ""
    for args, share in TEST_RUNS:
        cmd = [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider"]
        try:
            res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True,
                                 timeout=timeout * share)
            text += f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}\n"
            tail = (res.stdout.strip().splitlines() or ["(no output)"])[-1]
            statuses.append(f"{'PASS' if res.returncode == 0 else 'FAIL'} {args[0]}: {tail}")
        except subprocess.TimeoutExpired as e:
            text += f"$ {' '.join(cmd)}\n{e.stdout or ''}{e.stderr or ''}\n"
            statuses.append(f"TIMEOUT {args[0]} after {timeout * share:.0f}s (see {log})")
        log.write_text(text)
    return "; ".join(statuses)


def _run_bench_train(out: Path, timeout: int) -> str:
    """benchmarks/bench_train.py on CUDA; its summary lines (all its output in train.txt)."""
    gguf = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    cmd = [sys.executable, str(REPO / "benchmarks/bench_train.py"), "--device", "cuda",
           "--pairs", "16", *([] if gguf.is_file() else ["--random-weights"])]
    try:
        res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True,
                             timeout=timeout)
        (out / "train.txt").write_text(res.stdout + res.stderr)
        if res.returncode:
            return f"FAILED (rc {res.returncode}; see train.txt)"
        keep = ("==", "tokens/s", "peak tensors", "step-1 loss")
        return "\n".join(line for line in res.stdout.splitlines() if line.startswith(keep))
    except subprocess.TimeoutExpired as e:
        (out / "train.txt").write_text(str(e.stdout or "") + str(e.stderr or ""))
        return f"TIMEOUT after {timeout}s"


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
        print("GPU tests (the model and training on CUDA, then the kernels) ...", flush=True)
        test_status = _run_gpu_tests(out, args.test_timeout)
        print(f"  {test_status}  [{time.time() - start:.0f}s]", flush=True)

    train_status = "skipped"
    if not args.skip_train:
        print("bench_train on CUDA (ours vs transformers + peft) ...", flush=True)
        train_status = _run_bench_train(out, timeout=150)
        print(f"{train_status}\n  [{time.time() - start:.0f}s]", flush=True)

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
    for name in [] if args.skip_benchmarks else args.only or BENCHES:
        print(f"benchmark {name} ...", flush=True)
        try:
            results[name] = plans[name]()
            write_csv(results[name], out / f"{name}.csv")
        except Exception as e:  # one broken benchmark must not hide the others' numbers
            print(f"  {name} FAILED: {type(e).__name__}: {e}", flush=True)
        torch.cuda.empty_cache()
        print(f"  [{time.time() - start:.0f}s]", flush=True)

    lines = [f"GPU tests: {test_status}", f"bench_train (cuda):\n{train_status}",
             *_summary(results),
             f"total time {time.time() - start:.0f}s; CSVs in {out}"]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n== summary ==\n" + "\n".join(lines))
    tests_ok = all(part.startswith(("PASS", "skipped")) for part in test_status.split("; "))
    return 0 if tests_ok and (results or args.skip_benchmarks) else 1


if __name__ == "__main__":
    sys.exit(main())
