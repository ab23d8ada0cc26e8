"""The training loop: data -> forward -> fused loss -> backward -> clip -> AdamW step.

One readable loop in the manner of nanoGPT's train.py, with the knobs in `TrainConfig`.
A checkpoint holds what makes a resume exact: the trained tensors (LoRA A/B, or every
weight for full fine-tuning), the optimizer's and scheduler's state, the RNG states and
the data position; restored, the run continues with the very batches and updates an
uninterrupted one would have made.

Under torchrun (world > 1) every rank builds the same data order and takes its own
micro-batches of each step: micro-batch m of rank r is slice m * world + r of the step's
examples, so N ranks with accumulation A see exactly what one process sees with
accumulation N * A. DistributedDataParallel averages the gradients; rank 0 writes.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmos_jupyter.core.config import check_count
from llmos_jupyter.engine.lora import apply_lora, merge_lora, resolve_targets
from llmos_jupyter.engine.loss import (
    IGNORE_INDEX,
    lm_loss,
)
from llmos_jupyter.engine.train_data import DataOrder, Example, collate
from llmos_jupyter.errors import ConfigError

METHODS = ("lora", "full")


@dataclass
class TrainConfig:
    """Every knob of a training run; defaults suit a LoRA fine-tune of a small model."""

    method: str = "lora"  # "lora" (adapters, merged at the end) or "full" (every weight)
    steps: int = 100  # optimizer steps
    batch_size: int = 4  # examples per micro-batch (per process)
    seq_len: int = 512  # longest example; packed chunk length for text data
    lr: float = 1e-4  # peak learning rate (LoRA usually wants ~1e-4..1e-3)
    warmup_steps: int | None = None  # linear warmup; None = 10% of steps
    min_lr_ratio: float = 0.1  # cosine decays to lr * this at the last step
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float = 1.0  # clip the global gradient norm; 0 turns clipping off
    grad_accum: int = 1  # micro-batches per optimizer step
    seed: int = 0  # LoRA init and data order
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: list[str] | None = None  # HF names (q_proj, ...); None = q_proj, v_proj
    checkpoint_every: int = 50  # steps between checkpoints (0: only when stopping)
    eval_every: int = 0  # steps between validation losses (0: only at the end)
    # Recompute each block's activations in the backward: less memory, ~1/3 more compute.
    gradient_checkpointing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # recorded, not used by the loop

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad value; returns self."""
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {list(METHODS)}, not {self.method!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0 or math.isinf(self.lr):
            raise ConfigError(f"learning rate must be a positive number, got lr={self.lr!r}")
        for name in ("steps", "batch_size", "grad_accum", "lora_rank"):
            check_count(name, getattr(self, name))
        check_count("seq_len", self.seq_len, 2)  # an input and a target
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.max_grad_norm < 0 or self.weight_decay < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("max_grad_norm and weight_decay must be >= 0, min_lr_ratio in [0, 1]")
        if self.checkpoint_every < 0 or self.eval_every < 0:
            raise ConfigError("checkpoint_every and eval_every must be >= 0")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ConfigError("gradient_checkpointing must be true or false, got "
                              f"{self.gradient_checkpointing!r}")
        if self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha must be positive, got {self.lora_alpha!r}")
        if self.method == "lora":
            self.lora_targets = list(resolve_targets(self.lora_targets))
        self.betas = tuple(self.betas)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """From a dict (YAML, a run record); ConfigError for an unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr at optimizer step `step` (0-based): linear warmup to 1, then
    cosine down to min_lr_ratio at the last step."""
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else cfg.steps // 10
    if step < warmup:
        return (step + 1) / (warmup + 1)
    span = max(cfg.steps - warmup - 1, 1)
    progress = min((step - warmup) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class LossModule(nn.Module):
    """forward(ids, targets) -> loss, so DistributedDataParallel can wrap the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if ids.device.type == "cuda":  # bf16 matmuls, float32 weights and loss
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return lm_loss(self.model, ids, targets)
        return lm_loss(self.model, ids, targets)


class Stopped(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Training stopped early (interrupt or cancel); the last checkpoint is on disk."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"stopped at step {step} ({reason})")
        self.step, self.reason = step, reason


class Trainer:
    """Trains `model` (our Transformer, float weights) on `examples` per `config`."""

    def __init__(
        self, model: nn.Module, examples: list[Example], config: TrainConfig, pad_id: int,
        val_examples: list[Example] | None = None, rank: int = 0, world: int = 1,
    ) -> None:
        self.config = config.validate()
        self.model, self.examples, self.pad_id = model, examples, pad_id
        self.val_examples = val_examples or []
        self.rank, self.world = rank, world
        self.device = model.device
        if config.seq_len > model.config.max_seq_len:
            raise ConfigError(f"seq_len {config.seq_len} exceeds the model's context of "
                              f"{model.config.max_seq_len} tokens; lower seq_len")
        torch.manual_seed(config.seed)  # the LoRA A init
        if config.method == "lora":
            self.params = apply_lora(model, config.lora_rank, config.lora_alpha,
                                     config.lora_targets)
        else:
            self.params = _full_params(model)
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        model.gradient_checkpointing = config.gradient_checkpointing
        self.loss_module: nn.Module = LossModule(model)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.loss_module = DistributedDataParallel(self.loss_module)
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay, eps=1e-8)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config))
        self.order = DataOrder(len(examples), config.seed)
        self.step = 0
        self.metrics: list[dict[str, Any]] = []
        self.tokens_seen = 0
        self.seconds = 0.0  # training time over all sessions (for tokens/s and ETA)
        self._interrupt_pending = False

    # -- one step ----------------------------------------------------------------------

    def _micro_batches(self, indices: list[int]) -> list[list[int]]:
        B, W = self.config.batch_size, self.world
        return [indices[(m * W + self.rank) * B:(m * W + self.rank + 1) * B]
                for m in range(self.config.grad_accum)]

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over batch_size x grad_accum x world examples."""
        cfg = self.config
        before = self.order.state_dict()
        t0 = time.perf_counter()
        self.model.train()
        try:
            indices = self.order.take(cfg.batch_size * cfg.grad_accum * self.world)
            total, tokens = torch.zeros((), dtype=torch.float64), 0
            micro = self._micro_batches(indices)
            for m, idx in enumerate(micro):
                batch = [self.examples[i] for i in idx]
                ids, targets = collate(batch, self.pad_id)
                tokens += sum(len(x) for x, _ in batch)
                sync = m == len(micro) - 1 or self.world == 1
                ctx = self.loss_module.no_sync() if not sync else _nullcontext()
                with ctx:
                    loss = self.loss_module(ids.to(self.device), targets.to(self.device))
                    (loss / cfg.grad_accum).backward()
                total += loss.detach().double().cpu() / cfg.grad_accum
        except BaseException:
            # Nothing was applied: put the data position back so the step is redone.
            self.optimizer.zero_grad(set_to_none=True)
            self.order.load_state_dict(before)
            raise
        grad_norm = None
        lr = self.scheduler.get_last_lr()[0]
        with _deferred_interrupt() as caught:  # an update is applied whole or not at all
            if cfg.max_grad_norm:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
        self._interrupt_pending = bool(caught)
        if self.world > 1:  # the logged loss and tokens are the whole step's
            import torch.distributed as dist

            both = torch.tensor([float(total), float(tokens)], dtype=torch.float64)
            dist.all_reduce(both)
            total, tokens = both[0] / self.world, int(both[1])
        dt = time.perf_counter() - t0
        self.seconds += dt
        self.tokens_seen += tokens
        left = cfg.steps - self.step
        return {"step": self.step, "loss": float(total), "lr": lr,
                "grad_norm": grad_norm, "tokens": tokens,
                "tokens_per_s": round(tokens / dt, 1) if dt > 0 else None,
                "elapsed_s": round(self.seconds, 3),
                "eta_s": round(self.seconds / self.step * left, 1)}

    @torch.no_grad()
    def evaluate(self, examples: list[Example] | None = None) -> float | None:
        """Mean loss per counted token over `examples` (default: the validation set)."""
        examples = self.val_examples if examples is None else examples
        return mean_loss(self.model, examples, self.config.batch_size, self.pad_id)

    # -- the loop ----------------------------------------------------------------------

    def fit(
        self, checkpoint_path: str | Path | None = None,
        on_metrics: Callable[[dict[str, Any]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Run until config.steps; return the metrics (one dict per step).

        Checkpoints every checkpoint_every steps (rank 0 writes). When should_stop() turns
        true, or on KeyboardInterrupt, writes a checkpoint at the last finished step and
        raises Stopped.
        """
        cfg = self.config
        while self.step < cfg.steps:
            try:
                m = self.train_step()
                last = self.step == cfg.steps
                if self.val_examples and (last or (cfg.eval_every
                                                   and self.step % cfg.eval_every == 0)):
                    m["val_loss"] = self.evaluate()
                self.metrics.append(m)
                if on_metrics is not None:
                    on_metrics(m)
                if self._interrupt_pending:  # Ctrl-C arrived during the update
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                # train_step rolls back an unfinished step, so the state is that of the
                # last finished step, whose metrics are recorded.
                if len(self.metrics) < self.step:
                    self.metrics.append(m)
                self._save_if(checkpoint_path)
                raise Stopped(self.step, "interrupted") from None
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and not last:
                self._save_if(checkpoint_path)
            if should_stop is not None and not last and should_stop():
                self._save_if(checkpoint_path)
                raise Stopped(self.step, "cancelled")
        return self.metrics

    def _save_if(self, path: str | Path | None) -> None:
        if path is not None and self.rank == 0:
            self.save_checkpoint(path)

    # -- checkpoints -------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        named = dict(self.model.named_parameters())
        return {
            "step": self.step,
            "trained": {n: named[n].detach().cpu().clone() for n in self.names},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data": self.order.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "metrics": list(self.metrics),
            "tokens_seen": self.tokens_seen,
            "seconds": self.seconds,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        named = dict(self.model.named_parameters())
        missing = [n for n in self.names if n not in state["trained"]]
        if missing:
            raise ConfigError(f"the checkpoint lacks trained tensors {missing[:3]}; it was "
                              "written with other LoRA settings")
        with torch.no_grad():
            for n in self.names:
                named[n].copy_(state["trained"][n])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order.load_state_dict(state["data"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        self.step = state["step"]
        self.metrics = list(state["metrics"])
        self.tokens_seen, self.seconds = state["tokens_seen"], state["seconds"]

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the state atomically (temp file + rename): a kill never leaves half."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))

    def merged_model(self) -> nn.Module:
        """The trained model with LoRA merged into its weights (plain Linears again)."""
        self.model.eval()
        return merge_lora(self.model)


def _full_params(model: nn.Module) -> list[nn.Parameter]:
    params = []
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            raise ConfigError(f"parameter {name} is not a float tensor: the model was loaded "
                              "in a quantized weight mode; train on dtype='float32'")
        p.requires_grad_(True)
        params.append(p)
    bad = [n for n, m in model.named_modules()
           if type(m).__name__ in ("GGMLLinear", "Int4Linear", "Int8Linear", "CastLinear")]
    if bad:
        raise ConfigError(f"{bad[0]} holds quantized weights that cannot train; load the "
                          "model with dtype='float32' to fine-tune it")
    return params


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[list[Any]]:
    """Hold Ctrl-C (SIGINT) back during the block; the yielded list is non-empty after
    if one arrived. Only the main thread receives signals (and may set handlers)."""
    caught: list[Any] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = signal.signal(signal.SIGINT, lambda *a: caught.append(a))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None
                      else signal.default_int_handler)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


@torch.no_grad()
def mean_loss(model: nn.Module, examples: list[Example], batch_size: int,
              pad_id: int) -> float | None:
    """Mean next-token loss per counted target over `examples` (None when there are none)."""
    if not examples:
        return None
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), batch_size):
        ids, targets = collate(examples[start:start + batch_size], pad_id)
        n = int((targets != IGNORE_INDEX).sum())
        if n == 0:
            continue
        loss = lm_loss(model, ids.to(model.device), targets)
        total += float(loss) * n
        count += n
    return total / count if count else None
