"""Batched task runs vs one item at a time: tokens/s of a summarize run over 64 documents.

Both sides go through the public API and record runs in the store: the batched side is
one `llmos.run("summarize", data=...)` (items batched through the engine), the other
side is `llmos.run("summarize", text=...)` once per document. Greedy decoding, so the
outputs should agree; the script reports how many do.

    .venv/bin/python benchmarks/bench_batch.py [--docs 64] [--max-tokens 32] [--dtype auto]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

SUBJECTS = ["river", "library", "market", "robot", "garden", "storm", "train", "bakery"]
EVENTS = ["opened early", "was flooded", "won a prize", "moved downtown",
          "hired new staff", "closed for repairs", "got a new roof", "raised its prices"]


def documents(n: int) -> list[dict[str, str]]:
    """n short, distinct news-like documents (deterministic)."""
    docs = []
    for i in range(n):
        s, e = SUBJECTS[i % len(SUBJECTS)], EVENTS[(i * 3 + i // 8) % len(EVENTS)]
        docs.append({"text": f"Report {i}: the {s} on street {i + 1} {e} this week. "
                             f"Residents said the change was expected and welcome."})
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--home", help="LLMOS_HOME to use (default: a temporary copy-free store)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.home:
        os.environ["LLMOS_HOME"] = args.home
    elif "LLMOS_HOME" not in os.environ:
        os.environ["LLMOS_HOME"] = tempfile.mkdtemp(prefix="llmos-bench-")

    import llmos

    model = llmos.load("smollm2-135m-instruct", device="cpu", dtype=args.dtype)
    docs = documents(args.docs)
    name = f"bench-docs-{int(time.time())}"
    llmos.datasets.add(name, docs)
    params = {"max_tokens": args.max_tokens, "temperature": 0.0}
    llmos.run("summarize", text=docs[0]["text"], params=params)  # warm-up

    t0 = time.perf_counter()
    single = [llmos.run("summarize", text=d["text"], params=params) for d in docs]
    t_single = time.perf_counter() - t0
    tok_single = sum(r.usage["completion_tokens"] for r in single)

    t0 = time.perf_counter()
    handle = llmos.run("summarize", data=name, params=params, background=False)
    t_batch = time.perf_counter() - t0
    items = handle.results()
    tok_batch = sum(it["tokens"] or 0 for it in items)

    same = sum(a.output == b["output"] for a, b in zip(single, items, strict=True))
    rate_single, rate_batch = tok_single / t_single, tok_batch / t_batch
    print(f"model {model.name} mode={model.mode} threads={torch.get_num_threads()}")
    print(f"{'one at a time':>16}: {tok_single:5d} tokens in {t_single:6.1f} s = "
          f"{rate_single:6.1f} tok/s")
    print(f"{'batched':>16}: {tok_batch:5d} tokens in {t_batch:6.1f} s = {rate_batch:6.1f} tok/s")
    print(f"ratio batched / one-at-a-time: {rate_batch / rate_single:.2f}x "
          f"(items/s ratio {t_single / t_batch:.2f}x)")
    print(f"identical outputs: {same}/{len(docs)}")


if __name__ == "__main__":
    main()
