"""engine/training.py: gradient checkpointing gives the same loss and gradients as the
plain backward with a lower peak memory."""

from __future__ import annotations

import pytest
import torch

from llmos_jupyter.engine.lora import apply_lora
from llmos_jupyter.engine.loss import lm_loss
from llmos_jupyter.engine.training import TrainConfig, Trainer
from llmos_jupyter.errors import ConfigError
from tests.engine.peak_memory import PeakMemory
from tests.model.helpers import rel_err, tiny_model


def _step(checkpointing: bool, method: str):
    """Loss, gradients and peak tensor bytes of one forward + backward."""
    model = tiny_model(seed=3, max_seq_len=256).train()
    torch.manual_seed(7)
    if method == "lora":
        apply_lora(model, 4, 8.0, "all-linear")
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05)
    model.gradient_checkpointing = checkpointing
    ids = torch.randint(0, 256, (4, 200), generator=torch.Generator().manual_seed(1))
    targets = torch.roll(ids, -1, dims=1)
    targets[:, :50] = -100  # a prompt
    with PeakMemory() as pm:
        loss = lm_loss(model, ids, targets)
        loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, pm.peak


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_checkpointing_same_loss_and_grads_less_memory(method):
    loss, grads, peak = _step(True, method)
    ref_loss, ref_grads, ref_peak = _step(False, method)
    assert abs(loss - ref_loss) <= 1e-6 * abs(ref_loss)
    assert grads.keys() == ref_grads.keys()
    for n, g in ref_grads.items():
        assert rel_err(grads[n], g) < 1e-5, n
    assert peak < 0.75 * ref_peak, (peak, ref_peak)


def test_trainer_turns_it_on_and_the_option_is_checked():
    model = tiny_model(seed=0)
    examples = [([1, 2, 3, 4], [2, 3, 4, 5])] * 4
    cfg = TrainConfig(steps=1, batch_size=2, seq_len=8, gradient_checkpointing=True)
    trainer = Trainer(model, examples, cfg, pad_id=0)
    assert model.gradient_checkpointing
    assert trainer.train_step()["loss"] > 0
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        TrainConfig(gradient_checkpointing="yes").validate()


def _losses(device: str, method: str, steps: int) -> list[float]:
    """Per-step losses of a short run on a fixed, learnable set: each example counts up
    from its own start (x, x+1, ...), with its first 8 positions a masked prompt."""
    model = tiny_model(seed=3, max_seq_len=256).to(device)
    examples = []
    for start in range(0, 400, 50):
        seq = [(start + i) % 500 + 1 for i in range(49)]
        examples.append((seq[:-1], [-100] * 8 + seq[9:]))
    cfg = TrainConfig(method=method, steps=steps, batch_size=4, seq_len=64, seed=0,
                      lr=3e-2 if method == "lora" else 5e-3, warmup_steps=0,
                      lora_targets=["all-linear"] if method == "lora" else None)
    trainer = Trainer(model, examples, cfg, pad_id=0)
    return [trainer.train_step()["loss"] for _ in range(steps)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["lora", "full"])
def test_cuda_training_matches_cpu_and_learns(method):
    # On CUDA a step runs under bf16 autocast with our Triton attention and cross-entropy:
    # its first loss is the CPU float32 one to bf16's precision, and the loss falls alike.
    cpu, cuda = _losses("cpu", method, 30), _losses("cuda", method, 30)
    assert abs(cuda[0] - cpu[0]) <= 1e-2 * cpu[0], (cuda[0], cpu[0])
    assert cuda[-1] < 0.75 * cuda[0], cuda
    assert abs(cuda[-1] - cpu[-1]) <= 0.15 * cpu[-1], (cuda[-1], cpu[-1])


@pytest.mark.parametrize("field, value, message", [
    ("steps", True, "steps must be a positive integer, got True"),
    ("batch_size", 2.0, "batch_size must be a positive integer, got 2.0"),
    ("grad_accum", 0, "grad_accum must be a positive integer, got 0"),
    ("lora_rank", "8", "lora_rank must be a positive integer, got '8'"),
    ("seq_len", 1, "seq_len must be an integer >= 2, got 1"),
    ("seq_len", False, "seq_len must be an integer >= 2, got False"),
])
def test_counts_must_be_whole_numbers_in_range(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value}).validate()
