"""LoRA fine-tuning speed and memory: our training step vs transformers + peft.

SmolLM2-135M-Instruct (the default model's Q4_1 GGUF, dequantized to float32 by both),
LoRA rank 8 / alpha 16 on --targets (peft's names), AdamW, batch 4 x 128 tokens of the
same fixed random token ids, the same starting adapters (peft's A's copied into ours; the
B's are zero on both). Each side runs in its own process, alternately (ours, theirs,
ours, theirs), so timings drift alike and memory is not shared:

  step 1   under a storage counter (tests/engine/peak_memory.py: every aten allocation,
           forward + backward + optimizer state) -> peak tensor bytes, and its loss
  steps    --steps more, timed -> tokens/s (the better of the two rounds counts)
  RSS      the process's peak resident memory over the training steps (VmHWM after
           resetting it with /proc/self/clear_refs once the model is loaded)

Prints tokens/s, peak memory and step-1 loss side by side with the ratios we are held
to (tokens/s >= 1.3x theirs, peak memory <= theirs, step-1 losses within 1%).

    PYTHONPATH=.:kernels .venv/bin/python benchmarks/bench_train.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# The default model's GGUF where `make test` caches it (LLMOS_TEST_CACHE overrides .cache).
DEFAULT_GGUF = (Path(os.environ.get("LLMOS_TEST_CACHE", REPO / ".cache"))
                / "models/SmolLM2-135M-Instruct.Q4_1.gguf")
RANK, ALPHA = 8, 16.0


def batch(vocab: int, B: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random ids [B, T] and next-token targets (the last position masked)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab - 1, (B, T + 1), generator=g)
    targets = ids[:, 1:].clone()
    return ids[:, :-1].contiguous(), targets


def adapters(n_layers: int, targets: list[str], shapes: dict[str, int], dim: int):
    """Seeded A's [RANK, in] per (layer, target), as peft would draw them."""
    import math

    g = torch.Generator().manual_seed(1)
    out = {}
    for i in range(n_layers):
        for t in targets:
            a = torch.empty(RANK, shapes[t])
            bound = 1 / math.sqrt(shapes[t])  # kaiming_uniform(a=sqrt(5)) bound
            out[(i, t)] = a.uniform_(-bound, bound, generator=g)
    return out


def in_features(config) -> dict[str, int]:
    d = config.dim
    return {"q_proj": d, "k_proj": d, "v_proj": d, "gate_proj": d, "up_proj": d,
            "o_proj": config.n_heads * config.head_dim, "down_proj": config.ffn_dim}


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def build_ours(gguf: Path, targets: list[str]):
    from llmos_jupyter.engine.lora import LoRALinear, apply_lora
    from llmos_jupyter.engine.loss import lm_loss
    from llmos_jupyter.formats.gguf import read_gguf
    from llmos_jupyter.model.loading import build_model

    model = build_model(read_gguf(gguf), dtype="float32")
    params = apply_lora(model, RANK, ALPHA, targets)
    a = adapters(model.config.n_layers, targets, in_features(model.config), model.config.dim)
    order = {"attn.wqkv": ["q_proj", "k_proj", "v_proj"], "attn.wo": ["o_proj"],
             "ffn.w_in": ["gate_proj", "up_proj"], "ffn.w_out": ["down_proj"]}
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            for mod_name, names in order.items():
                parent, attr = mod_name.split(".")
                mod = getattr(getattr(layer, parent), attr)
                if isinstance(mod, LoRALinear):
                    chosen = [n for n in names if n in targets]
                    for k, n in enumerate(chosen):
                        mod.lora_A[k * RANK:(k + 1) * RANK].copy_(a[(i, n)])
    model.train()
    return model, params, lambda ids, t: lm_loss(model, ids, t), model.config.vocab_size


def build_theirs(gguf: Path, targets: list[str]):
    import peft
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                              dtype=torch.float32)
    model = peft.get_peft_model(hf, peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                                    target_modules=targets))
    cfg = hf.config

    class C:  # the fields in_features() reads
        dim, n_heads, ffn_dim = cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size
        head_dim = cfg.hidden_size // cfg.num_attention_heads

    a = adapters(cfg.num_hidden_layers, targets, in_features(C), cfg.hidden_size)
    mods = dict(model.named_modules())
    with torch.no_grad():
        for (i, n), t in a.items():
            group = "mlp" if n in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            mods[f"base_model.model.model.layers.{i}.{group}.{n}"].lora_A["default"].weight.copy_(t)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_fn(ids, t):
        logits = model(input_ids=ids).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), t.flatten(), ignore_index=-100)

    return model, params, loss_fn, cfg.vocab_size


def run_side(side: str, gguf: Path, targets: list[str], steps: int, B: int, T: int) -> dict:
    """One side's measurements (runs in its own process)."""
    sys.path.insert(0, str(REPO))
    from tests.engine.peak_memory import PeakMemory

    build = build_ours if side == "ours" else build_theirs
    model, params, loss_fn, vocab = build(gguf, targets)
    ids, t = batch(vocab, B, T)
    opt = torch.optim.AdamW(params, lr=1e-3)

    def step() -> float:
        loss = loss_fn(ids, t)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    reset_peak_rss()
    with PeakMemory() as pm:
        loss1 = step()
    t0 = time.perf_counter()
    losses = [step() for _ in range(steps)]
    dt = time.perf_counter() - t0
    return {"side": side, "loss_step1": loss1, "losses": losses, "peak_tensor_bytes": pm.peak,
            "peak_rss_bytes": peak_rss(), "tokens_per_s": B * T * steps / dt,
            "trainable": sum(p.numel() for p in params)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--targets", default="q_proj,v_proj", help="peft target modules")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--side", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    targets = [t.strip() for t in args.targets.split(",")]
    if args.side:
        print(json.dumps(run_side(args.side, args.gguf, targets, args.steps, args.batch,
                                  args.seq_len)))
        return
    results: dict[str, list[dict]] = {"ours": [], "theirs": []}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "kernels"),
                                                        os.environ.get("PYTHONPATH", "")])}
    for r in range(args.rounds):
        for side in ("ours", "theirs"):
            out = subprocess.run(
                [sys.executable, __file__, "--side", side, "--gguf", str(args.gguf),
                 "--targets", args.targets, "--steps", str(args.steps), "--batch",
                 str(args.batch), "--seq-len", str(args.seq_len), "--threads",
                 str(args.threads)], env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[side].append(res)
            print(f"round {r + 1} {side:6s}: {res['tokens_per_s']:7.1f} tok/s  peak tensors "
                  f"{res['peak_tensor_bytes'] / 2**20:7.1f} MiB  peak RSS "
                  f"{res['peak_rss_bytes'] / 2**20:7.1f} MiB  step-1 loss "
                  f"{res['loss_step1']:.5f}", flush=True)
    best = {s: max(rs, key=lambda x: x["tokens_per_s"]) for s, rs in results.items()}
    o, h = best["ours"], best["theirs"]
    mem = {s: min(x["peak_tensor_bytes"] for x in rs) for s, rs in results.items()}
    rss = {s: min(x["peak_rss_bytes"] for x in rs) for s, rs in results.items()}
    print(f"\nLoRA r={RANK} alpha={ALPHA:g} on {','.join(targets)}; batch {args.batch} x "
          f"{args.seq_len}; trainable params ours {o['trainable']}, theirs {h['trainable']}")
    print(f"tokens/s      ours {o['tokens_per_s']:8.1f}  theirs {h['tokens_per_s']:8.1f}  "
          f"ratio {o['tokens_per_s'] / h['tokens_per_s']:.2f}x (need >= 1.3x)")
    print(f"peak tensors  ours {mem['ours'] / 2**20:8.1f}  theirs {mem['theirs'] / 2**20:8.1f} "
          f"MiB  ratio {mem['ours'] / mem['theirs']:.2f} (need <= 1)")
    print(f"peak RSS      ours {rss['ours'] / 2**20:8.1f}  theirs {rss['theirs'] / 2**20:8.1f} "
          f"MiB  ratio {rss['ours'] / rss['theirs']:.2f}")
    rel = abs(o["loss_step1"] - h["loss_step1"]) / abs(h["loss_step1"])
    print(f"step-1 loss   ours {o['loss_step1']:.6f}  theirs {h['loss_step1']:.6f}  "
          f"relative difference {rel:.2e} (need <= 1e-2)")
    print(f"loss after {args.steps + 1} steps: ours {o['losses'][-1]:.6f}  "
          f"theirs {h['losses'][-1]:.6f}")


if __name__ == "__main__":
    main()
