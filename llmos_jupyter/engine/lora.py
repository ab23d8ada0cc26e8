"""LoRA: low-rank adapters on our Transformer's projections, merged in at the end.

For a frozen weight W [out, in], LoRA trains A [r, in] and B [out, r] and computes
y = x W^T + (alpha / r) * x A^T B^T. B starts at zero, so step 0 is the base model;
A starts as peft initializes it (Kaiming-uniform with a = sqrt(5)).

Our projections are fused (`wqkv` holds q, k, v rows; `w_in` holds gate, up rows), while
target names follow Hugging Face's (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
down_proj), as peft users know them. A target that is a slice of a fused weight gets its
own A and B on those rows only, exactly as peft's separate adapter on the separate
projection would; the A's of one fused weight run as one matmul.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmos_jupyter.errors import ConfigError
from llmos_jupyter.model.training_ops import wants_training_ops

# Hugging Face projection name -> (our module attribute, slice name within it).
TARGETS = {
    "q_proj": ("attn.wqkv", "q"), "k_proj": ("attn.wqkv", "k"), "v_proj": ("attn.wqkv", "v"),
    "o_proj": ("attn.wo", None),
    "gate_proj": ("ffn.w_in", "gate"), "up_proj": ("ffn.w_in", "up"),
    "down_proj": ("ffn.w_out", None),
}
ALL_LINEAR = tuple(TARGETS)
# peft's default for Llama models: query and value projections.
DEFAULT_TARGETS = ("q_proj", "v_proj")


def _slices(config, module: str) -> dict[str | None, tuple[int, int]]:
    """Row ranges of each named slice of one of our projection weights."""
    if module == "attn.wqkv":
        q = config.n_heads * config.head_dim
        kv = config.n_kv_heads * config.head_dim
        return {"q": (0, q), "k": (q, q + kv), "v": (q + kv, q + 2 * kv)}
    if module == "ffn.w_in" and config.arch != "gpt2":
        return {"gate": (0, config.ffn_dim), "up": (config.ffn_dim, 2 * config.ffn_dim)}
    return {}


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus low-rank updates on some of its output rows.

    `parts` lists (start, stop) row ranges, each with its own A [r, in] and B [stop-start, r];
    [(0, out)] is plain LoRA on the whole weight.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float,
                 parts: list[tuple[int, int]]) -> None:
        super().__init__()
        self.base = base
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        self.parts = list(parts)
        self.out_features, self.in_features = base.weight.shape
        dev, dtype = base.weight.device, base.weight.dtype
        a = torch.empty(len(parts) * rank, self.in_features, device=dev, dtype=dtype)
        for i in range(len(parts)):  # each A as peft initializes its own
            nn.init.kaiming_uniform_(a[i * rank:(i + 1) * rank], a=math.sqrt(5))
        self.lora_A = nn.Parameter(a)  # (parts * r, in): all A's of this weight, stacked
        self.lora_B = nn.ParameterList(
            nn.Parameter(torch.zeros(stop - start, rank, device=dev, dtype=dtype))
            for start, stop in parts
        )

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def _scaled_b(self) -> torch.Tensor:
        """scale * every B placed at its rows and its A's columns: [out, parts * r], zero
        elsewhere. Small (out x 16 for two parts of rank 8), so one matmul applies every
        part without building [..., out] zeros for the rows no adapter touches."""
        if len(self.parts) == 1 and self.parts[0] == (0, self.out_features):
            return self.lora_B[0] * self.scale
        r = self.rank
        b = self.lora_B[0].new_zeros(self.out_features, len(self.parts) * r)
        for i, (start, stop) in enumerate(self.parts):
            b[start:stop, i * r:(i + 1) * r] = self.lora_B[i]
        return b * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.base.weight.requires_grad and wants_training_ops(x, self.lora_A):
            return LoRAFunction.apply(x, self.base.weight, self.base.bias, self.lora_A,
                                      self.scale, self.parts, *self.lora_B)
        y = self.base(x)  # (..., out)
        low = F.linear(x, self.lora_A)  # (..., parts * r): every A in one matmul
        # y + low @ (scale * B)^T in one addmm over the flattened rows.
        out = torch.addmm(y.reshape(-1, self.out_features), low.reshape(-1, low.shape[-1]),
                          self._scaled_b().t())
        return out.view(y.shape)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """The base Linear with W[rows] += scale * B A for each part (a new weight)."""
        w = self.base.weight.detach().clone()
        r = self.rank
        for i, (start, stop) in enumerate(self.parts):
            w[start:stop] += self.scale * (self.lora_B[i] @ self.lora_A[i * r:(i + 1) * r])
        out = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None,
                        device=w.device, dtype=w.dtype)
        out.weight = nn.Parameter(w, requires_grad=False)
        if self.base.bias is not None:
            out.bias = nn.Parameter(self.base.bias.detach().clone(), requires_grad=False)
        return out


class LoRAFunction(torch.autograd.Function):
    """LoRALinear's training forward with the base weight frozen: y = x W^T (+ bias), then
    each part's rows += scale * (x A_i^T) B_i^T, in place; the backward computes only the
    gradients of x, A and the B's.

    Autograd of the plain ops multiplies by every B placed in an [out, parts * r] zero
    matrix (a third of it zeros for q_proj + v_proj on a fused qkv), writes a second
    [tokens, out] tensor for the sum, and adds the two input gradients; here each part
    touches its own rows only, and the input gradient is one product plus one update.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, scale, parts, *lora_b):
        x2 = x.reshape(-1, x.shape[-1])  # (N, in)
        out = x2 @ weight.t() if bias is None else torch.addmm(bias, x2, weight.t())
        low = x2 @ lora_a.t()  # (N, parts * r): every A in one product
        r = lora_a.shape[0] // len(parts)
        for i, (start, stop) in enumerate(parts):
            out[:, start:stop].addmm_(low[:, i * r:(i + 1) * r], lora_b[i].t(), alpha=scale)
        ctx.save_for_backward(x2, weight, lora_a, low, *lora_b)
        ctx.scale, ctx.parts, ctx.shape = scale, parts, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, weight, lora_a, low, *lora_b = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1])  # (N, out)
        r = lora_a.shape[0] // len(ctx.parts)
        grad_low = g.new_empty(low.shape)  # d loss / d (x A^T)
        # Every part's B gradient from one product (its rows of the others' are unused):
        # per part, g[:, rows]^T @ low_i ran at ~20 GFLOP/s on the strided slice.
        grad_b_all = (low.t() @ g).mul_(ctx.scale)  # (parts * r, out)
        grad_b = []
        for i, (start, stop) in enumerate(ctx.parts):
            torch.mm(g[:, start:stop], lora_b[i], out=grad_low[:, i * r:(i + 1) * r])
            grad_b.append(grad_b_all[i * r:(i + 1) * r, start:stop].t())
        grad_low.mul_(ctx.scale)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ weight).addmm_(grad_low, lora_a).view(ctx.shape)
        grad_a = grad_low.t() @ x2
        return (grad_x, None, None, grad_a, None, None, *grad_b)


def resolve_targets(targets: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Target names as given ("q_proj,v_proj", a list, "all-linear" or None for the
    default) -> a tuple of names in TARGETS. ConfigError for an unknown name."""
    if targets is None:
        return DEFAULT_TARGETS
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if list(targets) in (["all-linear"], ["all"]):
        return ALL_LINEAR
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise ConfigError(f"unknown LoRA target module(s) {unknown}; choose from "
                          f"{list(TARGETS)} or 'all-linear'")
    return tuple(dict.fromkeys(targets))


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0,
               targets: str | list[str] | tuple[str, ...] | None = None) -> list[nn.Parameter]:
    """Freeze `model` and wrap the target projections of every block in LoRALinear.

    Returns the trainable parameters (the A's and B's). Raises ConfigError for a bad rank
    or alpha, an unknown target, or a projection without a float nn.Linear weight (a
    model loaded in a quantized mode: load it in float32 to train).
    """
    if not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"LoRA rank must be a positive integer, got {rank!r}")
    if not alpha or alpha <= 0:
        raise ConfigError(f"LoRA alpha must be positive, got {alpha!r}")
    names = resolve_targets(targets)
    for p in model.parameters():
        p.requires_grad_(False)
    wanted: dict[str, list[str | None]] = {}
    for t in names:
        module, part = TARGETS[t]
        wanted.setdefault(module, []).append(part)
    trainable: list[nn.Parameter] = []
    for i, block in enumerate(model.layers):
        for module, parts in wanted.items():
            parent_name, attr = module.split(".")
            parent = getattr(block, parent_name)
            base = getattr(parent, attr)
            if not isinstance(base, nn.Linear) or not base.weight.is_floating_point():
                raise ConfigError(
                    f"layers.{i}.{module} is a {type(base).__name__}, not a float Linear: the "
                    "model was loaded in a quantized weight mode; train on dtype='float32'"
                )
            slices = _slices(model.config, module)
            absent = [p for p in parts if p is not None and p not in slices]
            if absent:
                raise ConfigError(f"LoRA target {absent[0]!r} of {module} does not exist in a "
                                  f"{model.config.arch} model; pick other target modules")
            rows = sorted(slices[p] if p is not None else (0, base.out_features) for p in parts)
            wrapped = LoRALinear(base, rank, alpha, rows)
            setattr(parent, attr, wrapped)
            trainable += [wrapped.lora_A, *wrapped.lora_B]
    return trainable


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear in `model` by its merged nn.Linear (in place); returns it."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged())
    return model
