"""A multi-turn chat: each turn continuing the previous turn's KV cache, against a full
prefill of the whole conversation, side by side.

Loads the default model (SmolLM2-135M-Instruct Q4_1 GGUF) and holds a --turns long chat,
each turn a greedy answer of --max-tokens. Every turn runs twice back to back: first as
a chat runs (engine/prompt_cache.py continues the cache the last turn left: only the new
tokens are prefilled), then after dropping that cache (the whole conversation
prefilled). Prints each turn's prompt tokens, tokens taken from the cache, time to the
first token of both and their ratio, and whether the two answers are identical. Where
llama-cpp-python is installed, the same prompts go through its `Llama.generate`, which also
continues the longest prefix it holds (our answer is fed to it after its first token, so
it holds the same conversation as ours), side by side.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_chat.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GGUF = (Path(os.environ.get("LLMOS_TEST_CACHE", REPO / ".cache"))
                / "models/SmolLM2-135M-Instruct.Q4_1.gguf")
QUESTIONS = ["Tell me about the sea.", "What lives in it?", "Which of those is the largest?",
             "How long does it live?", "What does it eat?", "Is it in danger?",
             "What can people do to help?", "Summarize our conversation in one sentence."]


def llama_cpp(gguf: Path, threads: int):
    """A llama.cpp model on the same GGUF, or None where llama-cpp-python is missing."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    return Llama(model_path=str(gguf), n_threads=threads, n_ctx=2048, verbose=False)


def llama_cpp_ttft(llm, ids: list[int], answer: list[int]) -> float:
    """Seconds to llama.cpp's first token of `ids` (it reuses the prefix it holds); then
    feed it `answer` (all but its last token, as a decode would have) untimed."""
    t = time.perf_counter()
    for _ in llm.generate(ids, temp=0.0):
        break
    ttft = time.perf_counter() - t
    llm.eval(answer[:-1])
    return ttft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--turns", type=int, default=len(QUESTIONS))
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from llmos_jupyter.engine import GenerationParams, generate, prompt_cache
    from llmos_jupyter.formats.gguf import read_gguf
    from llmos_jupyter.model.loading import build_model
    from llmos_jupyter.tokenizer import Tokenizer

    ckpt = read_gguf(args.gguf)
    model, tok = build_model(ckpt, "cpu", "auto"), Tokenizer.from_spec(ckpt.tokenizer)
    params = GenerationParams(temperature=0, max_tokens=args.max_tokens)
    generate(model, tok, [tok.encode("Hello")], params.replace(max_tokens=2))  # warm-up
    prompt_cache.forget(model)
    llm = llama_cpp(args.gguf, args.threads)

    print(f"{'turn':>4} {'prompt':>6} {'cached':>6} {'TTFT cached':>12} {'TTFT full':>10} "
          f"{'ratio':>6}  identical" + ("  llama.cpp TTFT" if llm else ""))
    messages: list[dict] = []
    totals = [0.0, 0.0, 0.0]
    same = 0
    for turn in range(args.turns):
        messages.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
        ids = tok.encode(tok.apply_chat_template(messages), allow_special=True)
        cont = generate(model, tok, [ids], params)[0]
        prompt_cache.forget(model)
        full = generate(model, tok, [ids], params)[0]
        a, b = cont.timings["prefill_s"], full.timings["prefill_s"]
        totals[0] += a
        totals[1] += b
        same += cont.token_ids == full.token_ids
        peer = ""
        if llm is not None:
            c = llama_cpp_ttft(llm, ids, cont.token_ids)
            totals[2] += c
            peer = f"  {c * 1e3:>11.0f} ms"
        print(f"{turn + 1:>4} {len(ids):>6} {cont.usage['cached_tokens']:>6} "
              f"{a * 1e3:>9.0f} ms {b * 1e3:>7.0f} ms {b / a:>5.1f}x  "
              f"{str(cont.token_ids == full.token_ids):<9}{peer}")
        messages.append({"role": "assistant", "content": cont.text})
    print(f"all turns: time to first token {totals[0]:.2f} s continuing the cache, "
          f"{totals[1]:.2f} s prefilling everything ({totals[1] / totals[0]:.1f}x); "
          f"{same}/{args.turns} answers identical")
    if llm is not None:
        print(f"llama.cpp, continuing the prefix it holds: time to first token {totals[2]:.2f} s "
              f"over the turns ({totals[2] / totals[0]:.2f}x ours)")


if __name__ == "__main__":
    main()
