"""Choosing the next token from logits: penalties, temperature, top-k, top-p, min-p.

Everything is vectorized over the batch. Randomness comes from one torch.Generator per
row: a row draws one uniform number per step and picks its token by inverse CDF, so a
row's samples depend only on its own seed and logits - the same prompt gives the same
tokens alone or inside any batch.

Order of the filters follows Hugging Face's `generate`: repetition penalty on the raw
logits, then temperature, top-k, top-p, min-p on the scaled distribution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from llmos_jupyter.core.params import GenerationParams

Generators = torch.Generator | Sequence[torch.Generator] | None


def make_generators(
    seed: int | None, batch_size: int, device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One generator per row, row b seeded with `seed + b`.

    With seed None the base seed comes from torch's global generator, so
    `torch.manual_seed(...)` before a call makes it reproducible too.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    device = torch.device(device)
    return [torch.Generator(device=device).manual_seed(seed + b) for b in range(batch_size)]


def seen_mask(prev_tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Bool [B, V] mask of tokens present in `prev_tokens` ([B, L] ids; negatives = padding)."""
    B = prev_tokens.shape[0]
    mask = torch.zeros(B, vocab_size + 1, dtype=torch.bool, device=prev_tokens.device)
    # Padding (negative ids) goes to an extra column that is dropped afterwards.
    idx = torch.where(prev_tokens < 0, vocab_size, prev_tokens)
    mask.scatter_(1, idx, True)
    return mask[:, :vocab_size]


def apply_repetition_penalty(
    logits: torch.Tensor, prev_tokens: torch.Tensor, penalty: float
) -> torch.Tensor:
    """HF repetition penalty: for seen tokens, positive logits / penalty, negative * penalty.

    logits: float [B, V]. prev_tokens: bool [B, V] mask of seen tokens, or LongTensor [B, L]
    of seen ids (repeats are fine; negative ids are padding). Returns a new tensor.
    """
    if prev_tokens.dtype == torch.bool:
        penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
        return torch.where(prev_tokens, penalized, logits)
    if (prev_tokens < 0).any():
        return apply_repetition_penalty(logits, seen_mask(prev_tokens, logits.shape[-1]), penalty)
    # Touch only the L seen columns (HF's gather/scatter): cheaper than a pass over V when
    # L << V. A repeated id scatters the same value twice, which is harmless.
    seen = logits.gather(1, prev_tokens)  # (B, L)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, prev_tokens, seen)


def apply_presence_frequency(logits: torch.Tensor, counts: torch.Tensor, presence: float,
                             frequency: float) -> torch.Tensor:
    """OpenAI's penalties: logits - frequency * count - presence * (count > 0), where
    count [B, V] is how often each token already occurs in the completion."""
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def sample(
    logits: torch.Tensor,
    params: GenerationParams,
    generator: Generators = None,
    prev_tokens: torch.Tensor | None = None,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pick one token per row.

    logits: float [B, V] (next-token logits). generator: one torch.Generator shared by all
    rows, a sequence of B generators (one per row, see make_generators), or None for torch's
    global generator; unused when greedy. prev_tokens: tokens already seen, for the
    repetition penalty - either a bool [B, V] mask (what `generate` keeps up to date) or
    LongTensor [B, L] ids with negative padding. counts: float [B, V] occurrences of each
    token in the completion so far, for the presence/frequency penalties.
    Returns LongTensor [B].
    """
    logits = logits.float()
    if params.repetition_penalty != 1.0 and prev_tokens is not None:
        logits = apply_repetition_penalty(logits, prev_tokens, params.repetition_penalty)
    if params.counts_tokens and counts is not None:
        logits = apply_presence_frequency(logits, counts, params.presence_penalty,
                                          params.frequency_penalty)
    if params.temperature == 0:
        return logits.argmax(dim=-1)

    B, V = logits.shape
    scaled = logits / params.temperature
    # Work on the candidates only, sorted by probability; `index` maps a candidate column
    # back to its token id (None: the columns are the token ids themselves).
    index: torch.Tensor | None = None
    if 0 < params.top_k < V:
        scaled, index = scaled.topk(params.top_k, dim=-1)  # (B, k), descending
        probs = torch.softmax(scaled, dim=-1)  # renormalized over the k, as HF does
    else:
        probs = torch.softmax(scaled, dim=-1)  # (B, V)
        if params.top_p < 1.0:
            probs, index = _nucleus_candidates(probs, params.top_p)

    if params.top_p < 1.0:
        # Keep the smallest prefix whose mass reaches top_p: drop a candidate when the mass
        # strictly before it already does. The top candidate is always kept.
        mass_before = probs.cumsum(dim=-1) - probs
        probs = probs.masked_fill(mass_before >= params.top_p, 0.0)
    if params.min_p > 0.0:
        threshold = params.min_p * probs.amax(dim=-1, keepdim=True)
        probs = probs.masked_fill(probs < threshold, 0.0)

    choice = _inverse_cdf(probs, _uniforms(B, generator, logits.device))  # (B,)
    if index is None:
        return choice
    return index.gather(1, choice[:, None]).squeeze(1)


def _nucleus_candidates(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The most likely tokens, sorted, enough of them to hold the top_p nucleus of every row.

    A full sort of a 49k vocabulary costs ~6 ms on one CPU core, as much as a decode step
    of a small model; the nucleus is usually a few dozen tokens, so take the top 256 and
    widen only when some row's nucleus is larger. Exact: the nucleus is a prefix of the
    sorted order, and everything past it is dropped anyway.
    """
    V = probs.shape[-1]
    k = min(256, V)
    while True:
        values, index = probs.topk(k, dim=-1)  # (B, k), descending
        if k == V or bool((values.sum(dim=-1) >= top_p).all()):
            return values, index
        k = min(V, k * 8)


def _uniforms(B: int, generator: Generators, device: torch.device) -> torch.Tensor:
    """B uniform numbers in [0, 1), float64, one per row from that row's generator."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(B, generator=generator, dtype=torch.float64, device=device)
    if len(generator) != B:
        raise ValueError(f"got {len(generator)} generators for a batch of {B} rows")
    return torch.stack(
        [torch.rand((), generator=g, dtype=torch.float64, device=device) for g in generator]
    )


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Sample column indices of unnormalized `probs` [B, N] with uniforms `u` [B].

    `right=True` returns the first column whose cumulative mass exceeds the draw, which is
    never a zero-probability column. float64 sums make a draw that rounds up to the total
    (no column exceeds it) all but impossible; the guard below handles it anyway.
    """
    cdf = probs.double().cumsum(dim=-1)  # (B, N)
    target = (u * cdf[:, -1])[:, None]  # (B, 1)
    choice = torch.searchsorted(cdf, target, right=True).squeeze(1)
    # Guard the float edge where the draw equals the total: fall back to the top column.
    overflow = choice >= probs.shape[-1]
    return torch.where(overflow, probs.argmax(dim=-1), choice)
