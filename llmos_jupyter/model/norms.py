"""The Transformer's norms: RMSNorm (Llama family) through the kernel backend switch,
torch's LayerNorm for GPT-2. Apart from transformer.py so the fused decode step can
recognise an RMSNorm without importing the model that uses it."""

from __future__ import annotations

import torch
from torch import nn

from llmos_jupyter.core.config import ModelConfig
from llmos_jupyter.model import backend
from llmos_jupyter.model.training_ops import rms_norm, wants_training_ops


class RMSNorm(nn.Module):
    """RMSNorm with a learned scale, computed by the selected kernel backend."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize the last dimension and scale it by the learned weight."""
        if (x.dtype == torch.float32 and wants_training_ops(x, self.weight)
                and backend.get_backend(x.device) == "sdpa"):
            return rms_norm(x, self.weight, self.eps)  # a leaner backward (training_ops)
        return backend.rms_norm(x, self.weight, self.eps)


def make_norm(config: ModelConfig) -> nn.Module:
    """The norm a config's family uses: LayerNorm for GPT-2, RMSNorm for Llama."""
    if config.arch == "gpt2":
        return nn.LayerNorm(config.dim, eps=config.norm_eps)
    return RMSNorm(config.dim, config.norm_eps)
