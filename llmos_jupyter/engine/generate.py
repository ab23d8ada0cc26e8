"""Batched text generation on the KV cache: prefill once, then one decode step per token.

The shape of it follows gpt-fast's generate.py: `prefill` and `decode_step` are separate
small functions around the model's own `prefill` / `decode_step`, and the loop between them
does as little Python as possible - one `.tolist()` of B token ids per step (needed anyway
to stream text and check stop tokens), no per-row tensor work.

Batching: prompts are right-padded into one [B, T] prefill; each row then decodes at its
own position. When rows finish, the batch shrinks: the last running rows move into the
finished rows' cache slots (`model.move_rows`, one row copy each), so every step computes
running sequences only — a step's cost grows with its rows, and the answers of a batch
differ in length. Models without `move_rows` keep finished rows riding along instead
(position frozen, tokens ignored).

Context: the prompt plus its completion never exceeds `model.config.max_seq_len`. A prompt
that leaves no room for even one new token is a PromptError; when the prompt fits but
prompt + max_tokens does not, max_tokens is clamped to the room left and the row ends with
finish_reason "length".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from llmos_jupyter.core.params import GenerationParams
from llmos_jupyter.engine import prompt_cache
from llmos_jupyter.engine.sampling import make_generators, sample
from llmos_jupyter.engine.stops import StopText
from llmos_jupyter.errors import PromptError

OnPiece = Callable[[int, str], None]
ShouldStop = Callable[[], bool]


@dataclass
class GenerationResult:
    """One prompt's completion.

    `text` is cut before any stop string and never contains the end-of-sequence token's
    text; `token_ids` are all sampled tokens of the completion, including a final stop
    token (so they can be appended to the conversation as generated); with ignore_eos the
    end tokens are ordinary tokens and their text is kept. finish_reason is
    "stop" (stop token or stop string), "length" (max_tokens or the context is full) or
    "cancelled" (should_stop returned True). Timings are of the whole batch: the
    per-second rates are batch throughput (prompt tokens of all rows / prefill_s, tokens
    made by decode steps of all rows / decode_s).
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    params: GenerationParams,
    on_piece: OnPiece | None = None,
    should_stop: ShouldStop | None = None,
) -> list[GenerationResult]:
    """Complete every prompt (token ids), batched; one GenerationResult per prompt.

    on_piece(row, text) receives each row's text as it is produced: whole characters only,
    never any part of a stop string; the pieces of a row concatenate to its result's text.
    should_stop() is polled once per decode step, and before each layer of a prefill of
    PREFILL_POLL_TOKENS or more; when it returns True every unfinished row ends with
    finish_reason "cancelled" and its partial text (empty when the prefill was stopped).
    A KeyboardInterrupt propagates as usual; the model stays usable (the next call sets
    up its caches afresh).

    Prompts whose KV cache would pass KV_BUDGET_BYTES run as several batches one after
    the other (same results: rows never affect each other, and row b is seeded seed + b).

    Raises ConfigError for invalid params, PromptError for an empty prompt list, an empty
    prompt, token ids outside the vocabulary, or a prompt that does not fit the context.
    """
    params.validate()
    prompts = _as_lists(prompts)
    max_new = _plan(model, prompts, params)
    chunks = kv_chunks(model, prompts, max_new)
    if len(chunks) > 1 and not params.greedy and params.seed is None:
        params = params.replace(seed=int(torch.randint(0, 2**62, ()).item()))  # one for all
    results: list[GenerationResult] = []
    for lo, hi in chunks:
        if results and should_stop is not None and should_stop():
            results += [_cancelled(p) for p in prompts[lo:]]
            break
        steps = _generation(model, tokenizer, prompts[lo:hi], max_new[lo:hi], params,
                            should_stop, on_piece is not None, seed_offset=lo)
        while True:
            try:
                row, piece = next(steps)
            except StopIteration as done:
                results += done.value
                break
            on_piece(lo + row, piece)  # type: ignore[misc]  # yielded only when set
    return results


# The most KV cache one batch may take; more prompts than fit run as successive batches.
# (A 32-row batch of SmolLM2 at 350 tokens each; 11 rows of 1000.)
KV_BUDGET_BYTES = 512 * 2**20


def kv_chunks(model: Any, prompts: list[list[int]], max_new: list[int]) -> list[tuple[int, int]]:
    """Consecutive [lo, hi) ranges of prompts whose caches each fit KV_BUDGET_BYTES (a
    range holds at least one prompt, however long)."""
    c = getattr(model, "config", None)
    if c is None or not hasattr(model, "dtype"):
        return [(0, len(prompts))]
    per_token = 2 * c.n_layers * c.n_kv_heads * c.head_dim * model.dtype.itemsize
    chunks, lo, longest = [], 0, 0
    for i, (p, m) in enumerate(zip(prompts, max_new, strict=True)):
        need = max(longest, len(p) + m)
        if i > lo and (i - lo + 1) * need * per_token > KV_BUDGET_BYTES:
            chunks.append((lo, i))
            lo, need = i, len(p) + m
        longest = need
    chunks.append((lo, len(prompts)))
    return chunks


def _cancelled(prompt: list[int]) -> GenerationResult:
    """The result of a prompt that was never started because generation was stopped."""
    n = len(prompt)
    return GenerationResult("", [], "cancelled",
                            {"prompt_tokens": n, "completion_tokens": 0, "total_tokens": n})


def stream(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    params: GenerationParams,
    should_stop: ShouldStop | None = None,
) -> Generator[str, None, GenerationResult]:
    """Yield the completion of one prompt as text pieces (same rules as `generate`).

    Closing the generator (or breaking out of a for loop over it) stops generation. The
    generator's return value (via `yield from` or StopIteration.value) is the
    GenerationResult. Validation errors are raised on the first `next()`.
    """
    def validated() -> Generator[tuple[int, str], None, list[GenerationResult]]:
        params.validate()
        prompts = _as_lists([prompt_ids])
        return (yield from _generation(model, tokenizer, prompts, _plan(model, prompts, params),
                                       params, should_stop, True))

    steps = validated()
    try:
        while True:
            try:
                _, piece = next(steps)
            except StopIteration as done:
                return done.value[0]
            yield piece
    finally:
        steps.close()


def prefill(model: Any, prompts: list[list[int]], chunk: int | None = None, start: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run all prompts through the model in one right-padded batch.

    Returns (logits [B, V] float32 at each row's last prompt token, ids [B, T]). Each row is
    padded with its own last token, so the padding adds no new token to the row's
    repetition-penalty set; the padded cache slots are overwritten by decode before any
    step attends to them. With `chunk`, positions go through the model `chunk` at a time
    (each continuing the cache), so a caller polling between layers waits for at most
    one layer of one chunk. With `start` > 0 (one prompt) the cache already holds the
    prompt's positions [0, start) and only the rest is prefilled.
    """
    T = max(len(p) for p in prompts)
    padded = [p + [p[-1]] * (T - len(p)) for p in prompts]
    ids = torch.tensor(padded, dtype=torch.long, device=model.device)  # (B, T)
    lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=model.device)
    if start:
        return _prefill_span(model, ids, lengths, start, chunk), ids
    P = shared_prefix_length(prompts)
    if P < MIN_SHARED_PREFIX or not hasattr(model, "share_prefix"):
        return _prefill_span(model, ids, lengths, 0, chunk), ids
    # The batch's common prefix (a task's chat template, system prompt and instructions)
    # is computed once on row 0 and copied to every row; each row then prefills only its
    # own suffix. Prefill dominates short-answer batches, so this is most of their cost.
    _prefill_span(model, ids[:1, :P], lengths[:1].clamp(max=P), 0, chunk)
    model.share_prefix(len(prompts), P)
    return _prefill_span(model, ids, lengths, P, chunk), ids


def _prefill_span(model: Any, ids: torch.Tensor, lengths: torch.Tensor, start: int,
                  chunk: int | None) -> torch.Tensor:
    """Prefill positions [start, T) of ids [B, T] (rows valid up to lengths [B]), in
    chunks of `chunk` positions when given; logits [B, V] at each row's last token."""
    T = ids.shape[1]
    if chunk is None or T - start <= chunk:
        return model.prefill(ids[:, start:], lengths - start, start=start)
    logits = None
    for lo in range(start, T, chunk):
        hi = min(lo + chunk, T)
        # Rows whose last token is in [lo, hi) take this chunk's logits; the others get
        # some position's (clamped into the chunk), replaced by their own chunk's.
        out = model.prefill(ids[:, lo:hi], (lengths - lo).clamp(1, hi - lo), start=lo)
        ends_here = ((lengths > lo) & (lengths <= hi))[:, None]  # (B, 1)
        logits = out if logits is None else torch.where(ends_here, out, logits)
    return logits


# Below this many shared tokens the extra prefill call costs more than it saves.
MIN_SHARED_PREFIX = 16


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens all prompts share at the start, leaving each at least one token of its own
    (the logits of a row's last prompt token come from its own prefill)."""
    if len(prompts) < 2:
        return 0
    limit = min(len(p) for p in prompts) - 1
    return min(limit, *(prompt_cache.common_prefix(prompts[0], p) for p in prompts[1:]))


def decode_step(
    model: Any, tokens: torch.Tensor, positions: torch.Tensor, advance: torch.Tensor
) -> torch.Tensor:
    """Feed one token per row at its position; advance the positions of unfinished rows.

    tokens, positions, advance: LongTensor [B]; `advance` is 1 for running rows, 0 for
    finished ones, whose position stays put so it can never run past the cache.
    Returns logits [B, V] for the next token.
    """
    logits = model.decode_step(tokens, positions)
    positions.add_(advance)
    return logits


class _Row:
    """Bookkeeping of one prompt while the batch decodes."""

    def __init__(self, prompt_len: int, max_new: int, decoder: Any, stops: list[str]):
        self.prompt_len = prompt_len
        self.max_new = max_new
        self.token_ids: list[int] = []
        self.decoder = decoder  # None when nobody needs text before the end
        self.text = StopText(stops) if decoder is not None else None
        self.finish_reason: str | None = None

    def push(self, token: int, stop_ids: frozenset[int]) -> str:
        """Take one sampled token; return the text it makes showable (maybe "")."""
        self.token_ids.append(token)
        if token in stop_ids:
            return self.finish("stop")
        piece = ""
        if self.text is not None:
            piece = self.text.feed(self.decoder.push(token))
            if self.text.stopped:
                return piece + self.finish("stop")
        if len(self.token_ids) >= self.max_new:
            return piece + self.finish("length")
        return piece

    def finish(self, reason: str) -> str:
        """End the row; return the text still held back (released unless cut by a stop)."""
        self.finish_reason = reason
        if self.text is None:
            return ""
        tail = "" if self.text.stopped else self.decoder.flush()
        out = self.text.finish(tail)
        if self.text.stopped:
            self.finish_reason = "stop"  # the flushed tail completed a stop string
        return out

    def final_text(self, tokenizer: Any, stop_ids: frozenset[int]) -> str:
        if self.text is not None:
            return self.text.text
        ids = self.token_ids
        if ids and ids[-1] in stop_ids and self.finish_reason == "stop":
            ids = ids[:-1]
        return tokenizer.decode(ids)


def _generation(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    max_new: list[int],
    params: GenerationParams,
    should_stop: ShouldStop | None,
    want_pieces: bool,
    seed_offset: int = 0,
) -> Generator[tuple[int, str], None, list[GenerationResult]]:
    """The generation loop over checked prompts (see _plan) as a generator of (row,
    piece); returns the results. Row b samples with seed + seed_offset + b.

    Torch work runs in short inference_mode blocks that never span a `yield`, so the
    caller's code between pieces does not run under inference mode.
    """
    B = len(prompts)
    stop_ids = frozenset() if params.ignore_eos else frozenset(tokenizer.stop_ids)
    need_text = want_pieces or bool(params.stop)
    rows = [
        _Row(len(p), m, _stream_decoder(tokenizer) if need_text else None, params.stop)
        for p, m in zip(prompts, max_new, strict=True)
    ]
    device = torch.device(model.device)

    t_start = time.perf_counter()
    with torch.inference_mode():
        need = max(len(p) + m for p, m in zip(prompts, max_new, strict=True))
        # One prompt may continue what the last single-prompt generation left in the cache.
        # The weights' fingerprint is taken once: they cannot change within this call.
        fingerprint = (prompt_cache.weights(model)
                       if B == 1 and prompt_cache.tracks(model) else None)
        cached = (prompt_cache.reusable(model, prompts[0], fingerprint)
                  if fingerprint is not None else 0)
        prompt_cache.forget(model)
        if cached and not model.caches_fit(1, need):
            model.resize_caches(1, need, 1, cached)
        else:
            model.setup_caches(B, need)
        long_prefill = B * (max(len(p) for p in prompts) - cached) >= PREFILL_POLL_TOKENS
        polled = should_stop is not None and long_prefill
        try:
            with _stop_between_layers(model, should_stop if polled else None):
                logits, ids = prefill(
                    model, prompts, max(16, PREFILL_CHUNK_TOKENS // B) if polled else None,
                    start=cached)
        except _PrefillCancelled:  # the caches are set up afresh by the next call
            return [_cancelled(p) for p in prompts]
        # A prefill polled between layers ran the torch path, not the row-exact one.
        record = (prompt_cache.remember(model, prompts[0], fingerprint)
                  if fingerprint is not None and not polled else None)
        positions = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=device)
        advance = torch.ones(B, dtype=torch.long, device=device)
        # Seen tokens for the repetition penalty: prompt and completion ids in one buffer,
        # unfilled columns holding the row's own last prompt token (a harmless repeat).
        seen = None
        if params.repetition_penalty != 1.0:
            T = ids.shape[1]
            seen = torch.cat([ids, ids[:, -1:].expand(B, max(max_new))], dim=1)
        counts = None  # completion token counts for the presence/frequency penalties
        if params.counts_tokens:
            counts = torch.zeros(B, model.config.vocab_size, device=device)
        generators = None if params.greedy else make_generators(
            None if params.seed is None else params.seed + seed_offset, B, device)
        _synchronize(device)
    t_prefilled = time.perf_counter()

    # slots[i] is the row whose sequence is in cache row i (and at index i of tokens,
    # positions, ...); compaction permutes it, and rows past len(slots) are gone.
    slots = list(range(B))
    compact = B > 1 and hasattr(model, "move_rows")
    running = list(range(B))
    just_finished: list[int] = []
    tokens = None
    token_list: list[int] = []  # the tokens last sampled, fed by the next decode step
    step = -1  # index of the token being sampled, counted from 0
    while True:
        step += 1
        # One inference_mode block per step: the decode of the previous step's tokens
        # (none on the first step, which samples from the prefill logits) and the sampling.
        with torch.inference_mode():
            if tokens is not None:
                if seen is not None:
                    seen[:, T + step - 1] = tokens  # sampled at the previous step
                if just_finished and compact:
                    keep = _compact(model, slots, [rows[b].finish_reason is None for b in slots],
                                    int(positions.max()) + 1)
                    slots = [slots[i] for i in keep]
                    index = torch.tensor(keep, device=device)
                    tokens, positions, advance = tokens[index], positions[index], advance[index]
                    if seen is not None:
                        seen = seen[index]
                    if counts is not None:
                        counts = counts[index]
                    if generators is not None:
                        generators = [generators[i] for i in keep]
                elif just_finished:
                    advance[[slots.index(b) for b in just_finished]] = 0
                logits = decode_step(model, tokens, positions, advance)
                if record is not None:
                    record.fed(model, token_list[0])
            tokens = sample(logits, params, generators, seen, counts)  # (len(slots),)
            if counts is not None:
                counts[torch.arange(len(tokens), device=device), tokens] += 1
            token_list = tokens.tolist()
        pieces: list[tuple[int, str]] = []
        for i, b in enumerate(slots):
            if rows[b].finish_reason is not None:
                continue  # riding along (no compaction)
            piece = rows[b].push(token_list[i], stop_ids)
            if piece and want_pieces:
                pieces.append((b, piece))
        just_finished = [b for b in running if rows[b].finish_reason is not None]
        if just_finished:
            running = [b for b in running if rows[b].finish_reason is None]
        if running and should_stop is not None and should_stop():
            for b in running:
                piece = rows[b].finish("cancelled")
                rows[b].finish_reason = "cancelled"
                if piece and want_pieces:
                    pieces.append((b, piece))
            running = []
        yield from pieces
        if not running:
            break
    t_end = time.perf_counter()

    return _results(rows, tokenizer, stop_ids, t_prefilled - t_start, t_end - t_prefilled,
                    cached)


# A prefill of at least this many (padded) tokens, when it can be cancelled, polls
# should_stop between its layers and runs PREFILL_CHUNK_TOKENS (over the batch) at a time:
# 32 prompts of 500 tokens took ~20 s to prefill as one block on 2 busy cores, and one
# layer of it ~5 s; a chunk's layer is ~1/8 of that. Shorter prefills end sooner than a
# poll would help. (Chunks continue the cache, as a shared prefix does: the same math.)
PREFILL_POLL_TOKENS = 1024
PREFILL_CHUNK_TOKENS = 2048


class _PrefillCancelled(Exception):
    """should_stop() answered True between two layers of a prefill."""


@contextmanager
def _stop_between_layers(model: Any, should_stop: ShouldStop | None) -> Iterator[None]:
    """Poll `should_stop` before each layer while a prefill runs, and abort it on True.

    A prefill of a whole batch of long prompts takes seconds to tens of seconds on a CPU;
    without this a cancel waited for it to end, then for one decode step. Forward
    pre-hooks on the model's layers check between layers, so nothing of the model's own
    code changes and the numbers are the same; they are removed when the prefill ends.
    """
    layers = getattr(model, "layers", None)
    if should_stop is None or not isinstance(layers, torch.nn.ModuleList):
        yield
        return

    def check(module: torch.nn.Module, args: Any) -> None:
        if should_stop():
            raise _PrefillCancelled

    handles = [layer.register_forward_pre_hook(check) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _compact(model: Any, slots: list[int], alive: list[bool], length: int) -> list[int]:
    """Move running rows from past the new end of the batch into the cache rows of
    finished ones before it (positions [0, length)), one copy each; return the old
    indices of the rows kept, in their new order."""
    n = sum(alive)
    holes = [i for i in range(n) if not alive[i]]
    movers = [i for i in range(n, len(slots)) if alive[i]]  # as many as holes
    if movers:
        model.move_rows(movers, holes, length)
    order = list(range(n))
    for hole, mover in zip(holes, movers, strict=True):
        order[hole] = mover
    return order


def _as_lists(prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """Prompts as lists of Python ints (tensors and numpy arrays are accepted too)."""
    if hasattr(prompts, "tolist"):
        prompts = prompts.tolist()
    out = []
    for i, p in enumerate(prompts):
        if isinstance(p, int):
            raise PromptError(
                "prompts must be a list of prompts, each a list of token ids; "
                "wrap a single prompt as [ids]"
            )
        ids = p.tolist() if hasattr(p, "tolist") else list(p)
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise PromptError(f"prompt {i} must be a list of token ids (ints), got {p!r:.80}")
        out.append(ids)
    return out


def _plan(model: Any, prompts: list[list[int]], params: GenerationParams) -> list[int]:
    """Check the prompts; return each row's max new tokens (clamped to the context)."""
    if not prompts:
        raise PromptError("no prompts given; pass a list with at least one list of token ids")
    context = model.config.max_seq_len
    vocab = model.config.vocab_size
    max_new = []
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise PromptError(
                f"prompt {i} is empty (no tokens); give at least one token, e.g. the BOS token"
            )
        if min(p) < 0 or max(p) >= vocab:
            bad = next(t for t in p if not 0 <= t < vocab)
            raise PromptError(
                f"prompt {i} has token id {bad}, outside the vocabulary [0, {vocab}); "
                "was it encoded with this model's tokenizer?"
            )
        room = context - len(p)
        if room < 1:
            raise PromptError(
                f"prompt {i} has {len(p)} tokens, but the model's context is {context} tokens "
                f"and max_tokens={params.max_tokens} more were asked for; shorten the prompt to "
                f"at most {context - 1} tokens (or {max(1, context - params.max_tokens)} to "
                "get every requested token), or use a smaller max_tokens"
            )
        max_new.append(min(params.max_tokens, room))
    return max_new


def _results(
    rows: list[_Row], tokenizer: Any, stop_ids: frozenset[int], prefill_s: float, decode_s: float,
    cached: int = 0,
) -> list[GenerationResult]:
    """One result per row; `cached`: prompt tokens of row 0 taken from the cache (a batch
    of one only), which the prefill rate does not count."""
    prompt_total = sum(r.prompt_len for r in rows) - cached
    # The first token of each row comes from the prefill logits; the rest from decode steps.
    decoded_total = sum(max(len(r.token_ids) - 1, 0) for r in rows)
    timings = {
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "prefill_tokens_per_s": prompt_total / prefill_s if prefill_s > 0 else 0.0,
        "decode_tokens_per_s": decoded_total / decode_s if decode_s > 0 else 0.0,
    }
    return [
        GenerationResult(
            text=r.final_text(tokenizer, stop_ids),
            token_ids=r.token_ids,
            finish_reason=r.finish_reason or "length",
            usage={
                "prompt_tokens": r.prompt_len,
                "completion_tokens": len(r.token_ids),
                "total_tokens": r.prompt_len + len(r.token_ids),
                "cached_tokens": cached if i == 0 else 0,
            },
            timings=dict(timings),
        )
        for i, r in enumerate(rows)
    ]


def _stream_decoder(tokenizer: Any) -> Any:
    """A fresh incremental UTF-8 decoder for one row."""
    # jinja2: imported on first use, not with this module
    from llmos_jupyter.tokenizer import StreamDecoder

    return StreamDecoder(tokenizer)


def _synchronize(device: torch.device) -> None:
    # Timings must cover the work, not just its launch, on asynchronous devices.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
