"""`llmos serve` under load: 32 concurrent streaming chat clients against one client alone.

Starts a real `llmos serve` on a free loopback port over a temporary store holding the
default model, then
  1. solo: each of the N chat prompts alone, one after another (its output is the
     reference, its tokens/s the single-client speed);
  2. concurrent: all N at once, each a streaming client;
--rounds times, alternating which goes first, and prints aggregate tokens/s of both, the
median of the rounds' ratios, how many concurrent answers equal their solo answer,
failures, and p50/p99 time-to-first-token and inter-token latency.
Greedy, `ignore_eos` so every answer is --max-tokens long. Where llama-cpp-python's
server is installed (`llama_cpp.server`), the same load runs against it on the same GGUF
(2 threads; requests queued rather than interrupting each other). It serves one request
at a time, so its concurrent column shows the queue, not batching.

    .venv/bin/python benchmarks/bench_serve.py [--clients 32] [--max-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = "smollm2-135m-instruct"
TOPICS = ["the sea", "a library", "winter", "robots", "bread", "trains", "the moon", "bees",
          "mountains", "coffee", "rain", "music", "chess", "gardens", "bridges", "owls"]


def prompts(n: int) -> list[str]:
    """n distinct chat questions (deterministic)."""
    kinds = ["Tell me a fact about {}.", "Write two sentences about {}."]
    return [kinds[i // len(TOPICS) % 2].format(TOPICS[i % len(TOPICS)]) for i in range(n)]


def start_llmos(home: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "LLMOS_HOME": home}
    proc = subprocess.Popen([sys.executable, "-m", "llmos_jupyter.server.standalone",
                             "--port", "0", "--max-batch", "32"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, found.group(1)
    raise RuntimeError("llmos serve did not start")


async def one_client(client: httpx.AsyncClient, url: str, model: str, question: str,
                     max_tokens: int) -> dict:
    """Stream one greedy chat completion; return its text, tokens and latencies."""
    body = {"model": model, "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    stamps, text, usage = [], [], None
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                return {"error": r.status_code}
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    usage = chunk["usage"]
                for c in chunk.get("choices", []):
                    piece = c.get("delta", {}).get("content")
                    if piece:
                        stamps.append(time.perf_counter())
                        text.append(piece)
    except httpx.HTTPError as e:  # a server that drops the stream: a failed request
        return {"error": type(e).__name__}
    tokens = usage["completion_tokens"] if usage else len(text)
    return {"text": "".join(text), "tokens": tokens,
            "ttft": stamps[0] - t0 if stamps else None,
            "itl": [b - a for a, b in zip(stamps, stamps[1:], strict=False)],
            "wall": time.perf_counter() - t0}


async def run_load(url: str, model: str, questions: list[str], max_tokens: int,
                   concurrent: bool) -> tuple[list[dict], float]:
    limits = httpx.Limits(max_connections=len(questions) + 4)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as client:
        await one_client(client, url, model, questions[0], 4)  # warm-up (model load)
        t0 = time.perf_counter()
        if concurrent:
            results = await asyncio.gather(*(one_client(client, url, model, q, max_tokens)
                                             for q in questions))
        else:
            results = [await one_client(client, url, model, q, max_tokens) for q in questions]
        return list(results), time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def measure(name: str, url: str, model: str, questions: list[str], max_tokens: int,
            rounds: int) -> None:
    """`rounds` pairs of runs, one client at a time and all at once (which goes first
    alternates): a machine whose speed drifts (another process, a busy host) then weighs on
    both sides of a pair alike, and the median of the pairs' ratios is the figure."""
    print(f"\n{name}: {len(questions)} clients, {max_tokens} tokens each, greedy, "
          f"{rounds} round(s)")
    reference: list[dict] | None = None
    ratios, solo_rates, conc_rates, ttft, itl = [], [], [], [], []
    same = failed = 0
    for r in range(rounds):
        runs = {}
        for concurrent in ((False, True) if r % 2 == 0 else (True, False)):
            runs[concurrent] = asyncio.run(run_load(url, model, questions, max_tokens,
                                                    concurrent))
        (solo, solo_wall), (conc, conc_wall) = runs[False], runs[True]
        reference = reference or solo  # every answer is compared with the first solo run
        ok = [x for x in conc if "error" not in x]
        failed += len(conc) - len(ok) + sum("error" in x for x in solo)
        same += sum(1 for a, b in zip(reference, conc, strict=True)
                    if "error" not in b and a.get("text") == b["text"])
        solo_rates.append(sum(x.get("tokens", 0) for x in solo) / solo_wall)
        conc_rates.append(sum(x["tokens"] for x in ok) / conc_wall)
        ratios.append(conc_rates[-1] / solo_rates[-1])
        ttft += [x["ttft"] for x in ok if x["ttft"] is not None]
        itl += [t for x in ok for t in x["itl"]]
        print(f"  round {r + 1}: one at a time {solo_rates[-1]:6.1f} tok/s ({solo_wall:.1f} s), "
              f"all at once {conc_rates[-1]:6.1f} tok/s ({conc_wall:.1f} s), "
              f"ratio {ratios[-1]:.2f}x")
    med = statistics.median
    print(f"  one client at a time : {med(solo_rates):7.1f} tok/s  (median)")
    print(f"  all concurrent       : {med(conc_rates):7.1f} tok/s  (median)")
    print(f"  ratio                : {med(ratios):7.2f}x  (median of the rounds' ratios, "
          f"range {min(ratios):.2f}..{max(ratios):.2f})")
    print(f"  identical to solo    : {same}/{len(questions) * rounds}   failed requests: {failed}")
    print(f"  time to first token  : p50 {pct(ttft, .5) * 1000:7.0f} ms   "
          f"p99 {pct(ttft, .99) * 1000:7.0f} ms")
    print(f"  inter-token latency  : p50 {pct(itl, .5) * 1000:7.1f} ms   "
          f"p99 {pct(itl, .99) * 1000:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3,
                    help="pairs of solo and concurrent runs (default 3)")
    args = ap.parse_args()
    from tests.seed_home import cached_gguf, seed_default_model

    home = tempfile.mkdtemp(prefix="llmos-bench-serve-")
    seed_default_model(Path(home))
    questions = prompts(args.clients)
    proc, url = start_llmos(home)
    try:
        measure("llmos serve", url, MODEL, questions, args.max_tokens, args.rounds)
    finally:
        proc.terminate()
        proc.wait(120)
    if importlib.util.find_spec("llama_cpp") is None:
        print("\nllama.cpp: llama-cpp-python is not installed here; no side-by-side column")
        return
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model",
                             str(cached_gguf()), "--port", str(port), "--n_threads", "2",
                             "--n_ctx", "8192", "--model_alias", MODEL,
                             # Its default drops a running stream when another request
                             # arrives; queueing them is the fair comparison.
                             "--interrupt_requests", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                httpx.get(f"{url}/v1/models", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        measure("llama.cpp server", url, MODEL, questions, args.max_tokens, args.rounds)
    finally:
        proc.terminate()
        proc.wait(60)


if __name__ == "__main__":
    main()
