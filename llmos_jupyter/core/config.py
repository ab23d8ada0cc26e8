"""ModelConfig: every shape and switch of our one decoder-only Transformer.

One dataclass drives both families we run: the Llama family (RMSNorm, RoPE, SwiGLU,
grouped-query attention, optional q/k/v bias as in Qwen2) and GPT-2 (LayerNorm, learned
positions, GELU, fused qkv with bias). Named configs live in CONFIGS.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal

from llmos_jupyter.errors import ConfigError, suggest

Arch = Literal["llama", "gpt2"]
ACTIVATIONS = ("silu", "gelu_tanh", "gelu")

# Upper bounds on a checkpoint's integer hyper-parameters, checked when a ModelConfig is
# made (so at import, before anything is copied). Far past every released model (Llama
# 3.1 405B: dim 16384, 126 layers, 128 heads, ffn 53248; Gemma: 262k tokens; Qwen2.5-1M:
# 1,010,000 positions), yet small enough that a hostile file cannot make a load allocate
# gigabytes from a number alone: tensors are checked against these shapes and the file.
LIMITS = {
    "vocab_size": 1 << 21,
    "dim": 1 << 16,
    "n_layers": 1024,
    "n_heads": 1024,
    "n_kv_heads": 1024,
    "head_dim": 1024,
    "ffn_dim": 1 << 18,
    "max_seq_len": 1 << 20,
}
# RoPE tables are float32 [max_seq_len, head_dim] (cos and sin, see rope.py), built for
# the whole context at load, with ~4 more of that size while they are computed: at most
# 128 MiB each (~0.6 GB at the peak). That admits Llama 3.1's 128k context at head_dim 128
# (and 256k); a context of 2^32 - 1 would otherwise ask for 17+ GB.
MAX_ROPE_TABLE = 1 << 25


@dataclass
class ModelConfig:
    # Which family: decides norm (RMSNorm vs LayerNorm), positions (RoPE vs learned),
    # MLP (SwiGLU vs GELU) and which biases exist.
    arch: Arch = "llama"
    # 49152 is SmolLM2's vocabulary; every named config overrides it.
    vocab_size: int = 49152
    # Model width (d_model).
    dim: int = 576
    n_layers: int = 30
    n_heads: int = 9
    # Fewer KV heads than query heads = grouped-query attention; None means n_heads.
    n_kv_heads: int | None = 3
    # None means dim // n_heads; some checkpoints decouple it.
    head_dim: int | None = None
    # Hidden width of the MLP (SwiGLU's gate/up width for llama, 4*dim for gpt2).
    ffn_dim: int = 1536
    # Longest sequence the model was trained for: sizes RoPE tables and learned positions.
    max_seq_len: int = 8192
    # RMSNorm / LayerNorm epsilon as the checkpoint was trained with.
    norm_eps: float = 1e-5
    # RoPE base; SmolLM2 uses 100000, Llama-2 10000, Llama-3 500000.
    rope_theta: float = 10000.0
    # RoPE frequency scaling for contexts past the trained one, or None: {"type": "linear",
    # "factor"}, {"type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    # "original_max_position_embeddings"} (Llama 3.1+), or {"type": "factors", "factors":
    # [head_dim / 2 divisors of the frequencies]} (GGUF's rope_freqs). See rope.py.
    rope_scaling: dict[str, Any] | None = None
    # Output projection shares the embedding matrix (SmolLM2, GPT-2) or has its own.
    tie_embeddings: bool = True
    # Qwen2-style bias on q/k/v projections (GPT-2 always has biases everywhere).
    qkv_bias: bool = False
    # GPT-2 uses tanh-approximated GELU ("gelu_new"); llama uses SiLU in SwiGLU.
    activation: Literal["silu", "gelu_tanh", "gelu"] = "silu"
    # Free-form facts carried from the checkpoint (name, source, quantization) for `show`.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        for name in LIMITS:
            if name != "head_dim" or self.head_dim is not None:
                setattr(self, name, _bounded_int(name, getattr(self, name), LIMITS[name]))
        if self.head_dim is None:
            if self.dim % self.n_heads:
                raise ConfigError(f"dim={self.dim} is not divisible by n_heads={self.n_heads}")
            self.head_dim = self.dim // self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}"
            )
        if self.arch not in ("llama", "gpt2"):
            raise ConfigError(f"unsupported arch {self.arch!r}; use 'llama' or 'gpt2'")
        if self.n_kv_heads > self.n_heads:
            raise ConfigError(f"n_kv_heads={self.n_kv_heads} exceeds n_heads={self.n_heads}")
        if self.arch == "llama" and self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even (RoPE rotates pairs)")
        if self.arch == "llama" and self.max_seq_len * self.head_dim > MAX_ROPE_TABLE:
            raise ConfigError(
                f"max_seq_len={self.max_seq_len} x head_dim={self.head_dim} needs RoPE tables "
                f"of more than {MAX_ROPE_TABLE} floats each, more than LLMOS builds (its "
                f"tables cover the whole context): at most {MAX_ROPE_TABLE // self.head_dim} "
                f"positions at this head_dim")
        self.norm_eps = _positive_float("norm_eps", self.norm_eps, below=1.0)
        self.rope_theta = _positive_float("rope_theta", self.rope_theta, at_least=1.0)
        for name in ("tie_embeddings", "qkv_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, not {getattr(self, name)!r}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra must be a dict, not {type(self.extra).__name__}")
        if self.rope_scaling is not None:
            if not isinstance(self.rope_scaling, dict):
                raise ConfigError(f"rope_scaling must be a dict or None, not {self.rope_scaling!r}")
            check_rope_scaling(self.rope_scaling, self.head_dim)

    @property
    def qkv_dim(self) -> int:
        """Output width of the fused q/k/v projection."""
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown ModelConfig fields {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelConfig:
        if name not in CONFIGS:
            raise ConfigError(
                f"unknown config {name!r}{suggest(name, CONFIGS)}; known: {sorted(CONFIGS)}"
            )
        return cls(**{**CONFIGS[name], **overrides})


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """`value` as an int >= minimum (a count of steps, rows, tokens, ...); ConfigError
    naming it for True, 2.0, "8" or anything smaller."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        want = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}")
        raise ConfigError(f"{name} must be {want}, got {value!r}")
    return int(value)


def _bounded_int(name: str, value: Any, limit: int) -> int:
    """`value` as an int in [1, limit]; ConfigError for 512.0, True, "8", 0, -5 or 1e12."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    if not 1 <= value <= limit:
        raise ConfigError(f"{name}={value} is outside the plausible range 1..{limit}")
    return int(value)


def _positive_float(name: str, value: Any, *, below: float = math.inf,
                    at_least: float | None = None) -> float:
    """`value` as a finite float > 0 (>= at_least, < below); ConfigError for NaN, 0, -1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, not {value!r}")
    x = float(value)
    low_ok = x >= at_least if at_least is not None else x > 0
    if not (math.isfinite(x) and low_ok and x < below):
        low = f">= {at_least}" if at_least is not None else "> 0"
        high = f" and < {below}" if math.isfinite(below) else ""
        raise ConfigError(f"{name}={value!r} must be finite, {low}{high}")
    return x


ROPE_SCALING_KEYS = {
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor",
               "original_max_position_embeddings"),
    "factors": ("factors",),
}


def check_rope_scaling(scaling: dict[str, Any], head_dim: int) -> None:
    """Raise ConfigError unless `scaling` is a RoPE scaling rope.py applies."""
    kind = scaling.get("type")
    if not isinstance(kind, str) or kind not in ROPE_SCALING_KEYS:
        raise ConfigError(f"RoPE scaling type {kind!r} is not supported; supported: "
                          f"{sorted(ROPE_SCALING_KEYS)}")
    missing = [k for k in ROPE_SCALING_KEYS[kind] if k not in scaling]
    if missing:
        raise ConfigError(f"{kind} RoPE scaling lacks {missing}")
    for key in ("factor", "low_freq_factor", "high_freq_factor"):
        if key in scaling:
            scaling[key] = _positive_float(f"RoPE scaling {key}", scaling[key])
    if "original_max_position_embeddings" in scaling:
        scaling["original_max_position_embeddings"] = _bounded_int(
            "RoPE scaling original_max_position_embeddings",
            scaling["original_max_position_embeddings"], LIMITS["max_seq_len"])
    if kind == "factors":
        if not isinstance(scaling["factors"], list | tuple):
            raise ConfigError("RoPE frequency factors must be a list of numbers")
        scaling["factors"] = [_positive_float("RoPE frequency factor", f)
                              for f in scaling["factors"]]
    if kind == "factors" and len(scaling["factors"]) != head_dim // 2:
        raise ConfigError(f"RoPE frequency factors: {len(scaling['factors'])} given, "
                          f"head_dim / 2 = {head_dim // 2} expected")
    if kind == "llama3" and scaling["high_freq_factor"] <= scaling["low_freq_factor"]:
        raise ConfigError("llama3 RoPE scaling needs high_freq_factor > low_freq_factor")


CONFIGS: dict[str, dict[str, Any]] = {
    "smollm2-135m": dict(
        arch="llama", vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3,
        ffn_dim=1536, max_seq_len=8192, norm_eps=1e-5, rope_theta=100000.0,
        tie_embeddings=True,
    ),
    "gpt2": dict(
        arch="gpt2", vocab_size=50257, dim=768, n_layers=12, n_heads=12, n_kv_heads=12,
        ffn_dim=3072, max_seq_len=1024, norm_eps=1e-5, tie_embeddings=True,
        qkv_bias=True, activation="gelu_tanh",
    ),
    # Small enough that a test builds, saves and reloads it in milliseconds, yet has
    # GQA (4 query heads over 2 KV heads) so grouped attention paths are exercised.
    "tiny": dict(
        arch="llama", vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
        ffn_dim=128, max_seq_len=256, norm_eps=1e-5, rope_theta=10000.0,
        tie_embeddings=False,
    ),
    "tiny-gpt2": dict(
        arch="gpt2", vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=4,
        ffn_dim=256, max_seq_len=256, norm_eps=1e-5, tie_embeddings=True,
        qkv_bias=True, activation="gelu_tanh",
    ),
}
